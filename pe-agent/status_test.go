package peagent

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestStatusPage: the page at / shows each element's registration, home
// registrar, backend health with its recent checks, and load; a pool
// handle that is not printable in its escaped form; rserpool_pe_elements
// counts the configured elements per pool.
func TestStatusPage(t *testing.T) {
	needBinary(t, "registrar")
	reg, _ := startRegistrar(t)
	up, down := startBackend(t), startBackend(t)
	down.stop()
	cfg := fastAgentConfig(reg)
	cfg.Admin = "127.0.0.1:0"
	cfg.Drain = -1
	cfg.Elements = []ElementConfig{
		{Pool: "EchoPool", Backend: up.addr, Policy: "least-used", Health: fastHealth(),
			Load: LoadReporting{Source: LoadFixed, Value: 25}},
		{Pool: "B\x00\xff<i>", Backend: down.addr, Health: fastHealth()},
	}
	a, err := New(cfg, Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdownAgent(t, a)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	get := func(path string) string {
		resp, err := http.Get("http://" + a.AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	// Registered with a home registrar known, and three checks of each.
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for {
		body = get("/")
		if strings.Contains(body, `<span class="badge ok">registered</span>`) && !strings.Contains(body, "not known yet") &&
			strings.Count(body, `<i class="f"`) >= 3 && strings.Count(body, "<i title=") >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status page never showed a registered element with its checks:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{
		"<title>2 elements · rserpool</title>",
		`<code class="handle">EchoPool</code>`, `<code class="handle">B\x00\xff&lt;i&gt;</code>`,
		`<span class="badge ok">up</span>`, `<span class="badge bad">down</span>`,
		"not registered: backend down", "connection refused",
		"<td>least-used<br>", "load 25.0% (fixed)", "load not reported",
		"<b class=\"warn\">1/2</b><span>elements registered</span>", "<b class=\"bad\">1/2</b><span>backends up</span>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(body, "<i>") {
		t.Error("status page holds the handle's raw bytes")
	}
	if !regexp.MustCompile(`<td><code>0x[0-9a-f]{8}</code><br><span class="muted small">at <code>tcp://127\.0\.0\.1:[0-9]+</code>`).MatchString(body) {
		t.Error("status page lacks the home registrar's ID and address")
	}
	metrics := get("/metrics")
	for _, want := range []string{`rserpool_pe_elements{pool="EchoPool"} 1`, `rserpool_pe_elements{pool="B\\x00\\xff<i>"} 1`,
		`rserpool_pe_backend_up{pool="EchoPool"} 1`, `rserpool_pe_backend_up{pool="B\\x00\\xff<i>"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestHealthHistory(t *testing.T) {
	var h healthHistory
	if got, since := h.get(); len(got) != 0 || !since.IsZero() {
		t.Fatalf("empty history: %v %v", got, since)
	}
	t0 := time.Now()
	for i := range historyLen + 5 {
		var err error
		if i%2 == 1 {
			err = io.EOF
		}
		h.add(t0.Add(time.Duration(i)*time.Second), err)
	}
	h.changed(t0)
	got, since := h.get()
	if len(got) != historyLen || !since.Equal(t0) {
		t.Fatalf("history holds %d, since %v", len(got), since)
	}
	for i, r := range got {
		n := i + 5 // the five oldest were dropped
		if !r.At.Equal(t0.Add(time.Duration(n)*time.Second)) || r.OK != (n%2 == 0) || (r.Err == "EOF") == r.OK {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
	h.add(t0, errorString(strings.Repeat("é", 200)))
	got, _ = h.get()
	if last := got[len(got)-1].Err; len(last) > maxCheckErr+len("…") || !strings.HasSuffix(last, "…") {
		t.Fatalf("long error kept as %d bytes", len(last))
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
