package deploy

import (
	"bytes"
	"context"
	"html"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chromiumFlags run headless Chromium as root in a container, quietly,
// with none of the requests it makes on its own (updates, sync, safe
// browsing, metrics, translation): the pages on 127.0.0.1 are all it
// talks to.
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
	"--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
	"--disable-client-side-phishing-detection", "--disable-domain-reliability", "--no-pings",
	"--metrics-recording-only", "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
	"--hide-scrollbars", "--mute-audio", "--disable-extensions", "--disable-default-apps",
	"--enable-logging=stderr", "--v=0"}

// chrome runs Chromium with args (and a fresh profile) and returns its
// standard output and error.
func chrome(t *testing.T, prog string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append(append(append([]string{}, chromiumFlags...), "--user-data-dir="+t.TempDir()), args...)
	cmd := exec.CommandContext(ctx, prog, all...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

// checkStatusPages opens the status page of each daemon in headless
// Chromium, checks what it shows (after the page's script ran) and saves
// a screenshot of each, plus one of the proxy's page at a phone's width.
func checkStatusPages(t *testing.T, s *stack) {
	prog := need(t, "chromium", "chromium")
	dir := *screenshots
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r1, r2 := s.home, s.regs[0] // the registrar that owns the PEs, and its peer
	if r2 == r1 {
		r2 = s.regs[1]
	}
	for _, pg := range []struct {
		file          string
		url           string
		width, height int
		want          []string
	}{
		{"registrar.png", "http://" + r1.admin + "/", 1280, 1100, []string{
			"rserpool registrar", r1.id, r2.id, "active", "match", "this registrar",
			"EchoPool", "WebPool", legacyPool, "least-used", "weighted-round-robin", "weight 2", "35.0%",
			"registrations (",
		}},
		{"proxy.png", "http://" + s.proxyAdm + "/", 1280, 960, []string{
			"rserpool proxy", "3 listeners", "echo", "web", "legacy", s.listeners["echo"], "fresh",
			"EchoPool", legacyPool, "not cached", "connection refused", "by <code>tcp://127.0.0.1:",
		}},
		{"pe-agent.png", "http://" + s.agentAdm + "/", 1280, 600, []string{
			"rserpool pe-agent", "6 elements", "5/6", "registered", "not registered: backend down", "connection refused",
			r1.id, "load 10.0% (fixed)", "load 35.0% (fixed)", legacyPool, "weighted-round-robin · weight 2",
		}},
		{"proxy-phone.png", "http://" + s.proxyAdm + "/", 390, 1560, nil},
	} {
		// A virtual 12 s: the page's script refreshes its content twice.
		dom, log := chrome(t, prog, "--dump-dom", "--virtual-time-budget=12000", pg.url)
		text := html.UnescapeString(dom)
		for _, w := range pg.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s in Chromium lacks %q", pg.url, w)
			}
		}
		if !strings.Contains(dom, `id="autorefresh"`) || !strings.Contains(dom, "</main>") {
			t.Errorf("%s: Chromium's DOM is not the status page:\n%s", pg.url, dom)
		}
		if !strings.Contains(dom, `data-refreshed="`) {
			t.Errorf("%s: the page's script did not refresh the content in 12 s", pg.url)
		}
		// The page's own stylesheet and script load; nothing is refused.
		for _, bad := range []string{"Content Security Policy", "Refused to", "Uncaught", "Failed to load resource"} {
			if strings.Contains(log, bad) {
				t.Errorf("%s: Chromium reports %q:\n%s", pg.url, bad, log)
			}
		}
		file := filepath.Join(dir, pg.file)
		chrome(t, prog, "--screenshot="+file, "--window-size="+strconv.Itoa(pg.width)+","+strconv.Itoa(pg.height), pg.url)
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if b := img.Bounds(); b.Dx() != pg.width || b.Dy() != pg.height {
			t.Errorf("%s is %v, want %dx%d", file, b, pg.width, pg.height)
		}
		t.Logf("screenshot %s", file)
	}
}
