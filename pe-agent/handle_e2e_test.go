package peagent

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// TestE2EHostilePoolHandles registers pool handles that are not text, one
// from the command line and one from a TOML file, both in the escaped form
// of wire.PoolHandle, and checks every text sink on the way: the agent's
// metric labels, its /status JSON and its log, and `ctl resolve`'s text and
// JSON output. The registrar allows 64-byte handles; one handle has that
// length.
func TestE2EHostilePoolHandles(t *testing.T) {
	needBinary(t, "registrar", "ctl resolve", "pe-agent")
	reg, _ := startRegistrar(t, "[limits]\nmax_handle_length = 64\n")
	flagHandle := wire.PoolHandle("nul\x00\xff\"q\\")
	fileHandle := wire.PoolHandle(strings.Repeat("\x01\xe2\x80\xae", 16)) // 64 bytes: controls and U+202E
	b1, b2 := startBackend(t), startBackend(t)
	dir := t.TempDir()

	// One element from the command line.
	ready1 := filepath.Join(dir, "ready1.json")
	a1 := startProc(t, "pe-agent", "-registrar", reg, "-pool", flagHandle.String(), "-backend", b1.addr,
		"-admin", "127.0.0.1:0", "-ready-file", ready1)
	// One from a TOML file: a literal string keeps the backslashes for the
	// handle's own escapes.
	cfg := filepath.Join(dir, "pe-agent.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
registrars = [%q]
[admin]
listen = "127.0.0.1:0"
[[element]]
pool = '%s'
backend = %q
%s`, reg, fileHandle.String(), b2.addr, healthTOML)), 0o644)
	ready2 := filepath.Join(dir, "ready2.json")
	a2 := startProc(t, "pe-agent", "-config", cfg, "-ready-file", ready2)

	for _, c := range []struct {
		h     wire.PoolHandle
		agent *proc
		ready string
		port  uint16
	}{{flagHandle, a1, ready1, b1.port}, {fileHandle, a2, ready2, b2.port}} {
		var r struct{ Admin string }
		c.agent.readyFile(t, c.ready, &r)
		waitPool(t, reg, c.h.String(), "registered", 10*time.Second, func(p []pe) bool {
			return len(p) == 1 && p[0].Port == c.port
		})
		metrics := httpGet(t, "http://"+r.Admin+"/metrics")
		label := strings.ReplaceAll(c.h.String(), `\`, `\\`) // the exposition format escapes backslashes
		if want := `rserpool_pe_registered{pool="` + label + `"} 1`; !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
		var st []struct {
			Pool       wire.PoolHandle `json:"pool"`
			Registered bool            `json:"registered"`
		}
		if err := json.Unmarshal([]byte(httpGet(t, "http://"+r.Admin+"/status")), &st); err != nil {
			t.Fatal(err)
		}
		if len(st) != 1 || st[0].Pool != c.h || !st[0].Registered {
			t.Errorf("/status = %+v, want pool %q registered", st, c.h)
		}

		// ctl resolve prints the handle the same way.
		out, err := exec.Command(rserpoolBin, "ctl", "resolve", "-registrar", reg, c.h.String()).Output()
		if err != nil {
			t.Fatalf("ctl resolve: %v", err)
		}
		if want := fmt.Sprintf("pool %q ", c.h); !strings.HasPrefix(string(out), want) {
			t.Errorf("ctl resolve output %q does not start with %s", out, want)
		}
	}
	for _, a := range []*proc{a1, a2} {
		if s := a.stderr.String(); strings.ContainsRune(s, '\uFFFD') || strings.ContainsAny(s, "\x00\x01") {
			t.Errorf("agent log is not clean text:\n%q", s)
		}
	}
	if !strings.Contains(a1.stderr.String(), " pool="+flagHandle.String()+" ") { // logfmt quotes only values with spaces
		t.Errorf("agent log does not show the escaped handle:\n%s", a1.stderr.String())
	}

	// A bad escape is a clear error on the command line.
	out, err := exec.Command(rserpoolBin, "pe-agent", "-registrar", reg, "-pool", `bad\q`, "-backend", b1.addr).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad escape") {
		t.Errorf("-pool with a bad escape: %v %s", err, out)
	}
}
