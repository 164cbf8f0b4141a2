package peagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rserpool/rserpool/internal/sdnotify"
	"github.com/rserpool/rserpool/transport"
	"go.uber.org/goleak"
)

// rserpoolBin is the rserpool binary for the end-to-end tests, built once
// in binDir by the first test that needs it (so fuzz workers and -run
// filters without end-to-end tests do not build it).
var (
	binDir      string
	rserpoolBin string
	buildOnce   sync.Once
	buildErr    error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "peagent-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// needBinary fails on a build error and skips when the binary lacks a
// subcommand the test needs.
func needBinary(t *testing.T, sub ...string) {
	t.Helper()
	buildOnce.Do(func() {
		rserpoolBin = filepath.Join(binDir, "rserpool")
		if out, err := exec.Command("go", "build", "-o", rserpoolBin, "../cmd/rserpool").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/rserpool: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	for _, s := range sub {
		out, _ := exec.Command(rserpoolBin, append(strings.Fields(s), "-h")...).CombinedOutput()
		if bytes.Contains(out, []byte("unknown command")) {
			t.Skipf("rserpool %s is not available yet", s)
		}
	}
}

// proc is a started rserpool process; Cleanup kills it and waits.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // valid after exited is closed
	stderr *lockedBuffer
	notify *sdnotify.Listener
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProc starts rserpool with its own $NOTIFY_SOCKET (see ready).
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	notify, err := sdnotify.Listen(filepath.Join(t.TempDir(), "notify"))
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(rserpoolBin, args...), exited: make(chan struct{}), stderr: &lockedBuffer{}, notify: notify}
	p.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify.Path())
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		notify.Close()
		if t.Failed() {
			t.Logf("rserpool %s stderr:\n%s", args[0], p.stderr.String())
		}
	})
	return p
}

// ready waits for the process's READY=1 on its notify socket and returns
// the datagram's variables.
func (p *proc) ready(t *testing.T) map[string]string {
	t.Helper()
	vars, err := p.notify.WaitReadyOr(15*time.Second, p.exited)
	if err != nil {
		t.Fatalf("%v: %v\n%s", err, p.err, p.stderr.String())
	}
	return vars
}

// readyFile awaits READY=1 and decodes the ready file, written before it.
func (p *proc) readyFile(t *testing.T, path string, v any) {
	t.Helper()
	p.ready(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// startRegistrar runs `rserpool registrar` with fast keep-alive timers and
// returns its ASAP address.
func startRegistrar(t *testing.T, extraTOML ...string) (string, *proc) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "registrar.toml")
	os.WriteFile(cfg, []byte(`
[asap]
listen = ["tcp://127.0.0.1:0"]
[timers]
keepalive_interval = "300ms"
keepalive_timeout = "2s"
`+strings.Join(extraTOML, "\n")), 0o644)
	p := startProc(t, "registrar", "-config", cfg)
	asap := strings.Fields(p.ready(t)["ASAP"])
	if len(asap) == 0 {
		t.Fatal("registrar has no ASAP address")
	}
	a := asap[0]
	if !strings.Contains(a, "://") {
		a = "tcp://" + a
	}
	return a, p
}

// pe is one element of `rserpool ctl resolve -json`.
type pe struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
	Port  uint16   `json:"port"`
	Load  uint32   `json:"load"`
}

// resolve runs `rserpool ctl resolve`; an unknown pool gives no elements.
func resolve(t *testing.T, registrar, pool string, items int) []pe {
	t.Helper()
	cmd := exec.Command(rserpoolBin, "ctl", "resolve", "-registrar", registrar, "-json", "-items", strconv.Itoa(items), pool)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, _ := cmd.Output()
	var r struct {
		Error    string `json:"error"`
		Elements []pe   `json:"elements"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("ctl resolve: %v; stdout %q stderr %q", err, out, stderr.String())
	}
	return r.Elements
}

func ports(pes []pe) map[uint16]bool {
	m := map[uint16]bool{}
	for _, p := range pes {
		m[p.Port] = true
	}
	return m
}

// waitPool resolves repeatedly until cond holds and returns the elements.
func waitPool(t *testing.T, registrar, pool, what string, within time.Duration, cond func([]pe) bool) []pe {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		pes := resolve(t, registrar, pool, 20)
		if cond(pes) {
			return pes
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; pool %s at %s: %+v", what, within, pool, registrar, pes)
		}
		time.Sleep(50 * time.Millisecond) // the registrar has no change feed to await; poll it
	}
}

// backend is a TCP server that can stop and start listening on its port.
type backend struct {
	t    *testing.T
	addr string
	port uint16
	mu   sync.Mutex
	ln   net.Listener
	wg   sync.WaitGroup
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{t: t, addr: "127.0.0.1:0"}
	b.start()
	b.addr = b.ln.Addr().String()
	b.port = uint16(b.ln.Addr().(*net.TCPAddr).Port)
	t.Cleanup(b.stop)
	return b
}

func (b *backend) start() {
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		b.t.Fatal(err)
	}
	b.mu.Lock()
	b.ln = ln
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func (b *backend) stop() {
	b.mu.Lock()
	if b.ln != nil {
		b.ln.Close()
		b.ln = nil
	}
	b.mu.Unlock()
	b.wg.Wait()
}

const healthTOML = `
[element.health]
interval = "200ms"
timeout = "200ms"
rise = 2
fall = 2
`

func TestE2EAgentProcess(t *testing.T) {
	needBinary(t, "registrar", "ctl resolve", "pe-agent")
	reg, _ := startRegistrar(t)
	b1, b2 := startBackend(t), startBackend(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pe-agent.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
registrars = [%q]
reregistration_interval = "5s"
drain = "1500ms"
[admin]
listen = "127.0.0.1:0"
[[element]]
pool = "E2EPool"
backend = %q
%s
[[element]]
pool = "E2EPool"
backend = %q
%s`, reg, b1.addr, healthTOML, b2.addr, healthTOML)), 0o644)
	ready := filepath.Join(dir, "ready.json")
	agent := startProc(t, "pe-agent", "-config", cfg, "-ready-file", ready)
	var r struct{ Admin string }
	agent.readyFile(t, ready, &r)

	// Both backends registered.
	waitPool(t, reg, "E2EPool", "two PEs", 10*time.Second, func(p []pe) bool {
		return len(p) == 2 && ports(p)[b1.port] && ports(p)[b2.port]
	})
	metrics := httpGet(t, "http://"+r.Admin+"/metrics")
	for _, want := range []string{`rserpool_pe_registered{pool="E2EPool"} 2`, `rserpool_pe_backend_up{pool="E2EPool"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if s := httpGet(t, "http://"+r.Admin+"/healthz"); !strings.Contains(s, "ok") {
		t.Errorf("/healthz: %q", s)
	}

	// A backend stops listening: deregistered within fall × interval (plus
	// one check timeout and the resolution round trip).
	b1.stop()
	t0 := time.Now()
	waitPool(t, reg, "E2EPool", "b1 deregistered", 5*time.Second, func(p []pe) bool {
		return len(p) == 1 && ports(p)[b2.port]
	})
	if d := time.Since(t0); d > 2*200*time.Millisecond+2*time.Second {
		t.Errorf("deregistration took %v", d)
	}
	// It comes back: registered again.
	b1.start()
	waitPool(t, reg, "E2EPool", "b1 registered again", 5*time.Second, func(p []pe) bool {
		return len(p) == 2 && ports(p)[b1.port]
	})

	// SIGTERM: the PEs leave the registrar while the agent still drains.
	agent.cmd.Process.Signal(syscall.SIGTERM)
	waitPool(t, reg, "E2EPool", "deregistration on SIGTERM", 5*time.Second, func(p []pe) bool { return len(p) == 0 })
	select {
	case <-agent.exited:
		t.Fatal("agent exited before the PEs were gone from the registrar")
	default:
	}
	select {
	case <-agent.exited:
		if agent.err != nil {
			t.Errorf("agent exit: %v", agent.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit after the drain period")
	}
}

func TestE2EAgentKilled(t *testing.T) {
	needBinary(t, "registrar", "ctl resolve", "pe-agent")
	// The registrar keeps PEs of closed connections, so only the missing
	// keep-alive acks remove the PE.
	reg, _ := startRegistrar(t, "[registration]\nremove_on_connection_loss = false\n")
	b := startBackend(t)
	agent := startProc(t, "pe-agent", "-registrar", reg, "-pool", "KillPool", "-backend", b.addr)
	waitPool(t, reg, "KillPool", "registered", 10*time.Second, func(p []pe) bool { return len(p) == 1 })
	agent.cmd.Process.Kill()
	<-agent.exited
	// Keep-alive interval 300 ms + timeout 2 s (or a failed keep-alive send).
	t0 := time.Now()
	waitPool(t, reg, "KillPool", "removed after SIGKILL", 8*time.Second, func(p []pe) bool { return len(p) == 0 })
	t.Logf("PE removed %v after SIGKILL", time.Since(t0))
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func fastAgentConfig(registrars ...string) AgentConfig {
	addrs, err := transport.ParseAddrs(registrars)
	if err != nil {
		panic(err)
	}
	return AgentConfig{
		Registrars:             addrs,
		ReregistrationInterval: 5 * time.Second,
		ResponseTimeout:        time.Second,
		ConnectTimeout:         time.Second,
		RetryInterval:          100 * time.Millisecond,
	}
}

func fastHealth() HealthConfig {
	return HealthConfig{Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 2}
}

func shutdownAgent(t *testing.T, a *Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.Shutdown(ctx)
}

func TestE2ELoadChangesLeastUsedSelection(t *testing.T) {
	needBinary(t, "registrar", "ctl resolve")
	reg, _ := startRegistrar(t)
	b1, b2 := startBackend(t), startBackend(t)
	dir := t.TempDir()
	f1, f2 := filepath.Join(dir, "load1"), filepath.Join(dir, "load2")
	os.WriteFile(f1, []byte("10\n"), 0o644)
	os.WriteFile(f2, []byte("60\n"), 0o644)
	cfg := fastAgentConfig(reg)
	for _, e := range []struct{ addr, file string }{{b1.addr, f1}, {b2.addr, f2}} {
		cfg.Elements = append(cfg.Elements, ElementConfig{
			Pool: "LoadPool", Backend: e.addr, Policy: "least-used", Health: fastHealth(),
			Load: LoadReporting{Source: LoadCommand, Command: "cat " + e.file, Interval: 100 * time.Millisecond, MinInterval: 100 * time.Millisecond},
		})
	}
	promReg := prometheus.NewRegistry()
	a, err := New(cfg, Options{Registerer: promReg})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdownAgent(t, a)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	first := func(p []pe) uint16 { return p[0].Port }
	waitPool(t, reg, "LoadPool", "b1 least used", 10*time.Second, func(p []pe) bool {
		return len(p) == 2 && first(p) == b1.port && p[0].Load == ScaleLoad(10, 100) && p[1].Load == ScaleLoad(60, 100)
	})
	if got := resolve(t, reg, "LoadPool", 1); len(got) != 1 || got[0].Port != b1.port {
		t.Fatalf("least-used selection with items=1: %+v, want port %d", got, b1.port)
	}
	// b1 gets busy: its load reaches the registrar and b2 is selected.
	os.WriteFile(f1, []byte("90\n"), 0o644)
	waitPool(t, reg, "LoadPool", "b2 least used", 5*time.Second, func(p []pe) bool {
		return len(p) == 2 && first(p) == b2.port && p[1].Load == ScaleLoad(90, 100)
	})
	if got := resolve(t, reg, "LoadPool", 1); len(got) != 1 || got[0].Port != b2.port {
		t.Fatalf("least-used selection with items=1: %+v, want port %d", got, b2.port)
	}
	// A change below the step (5 %) is not sent.
	os.WriteFile(f1, []byte("92\n"), 0o644)
	loadUpdates := testutil.ToFloat64(a.metrics.loadReports.WithLabelValues("LoadPool"))
	time.Sleep(500 * time.Millisecond) // asserting that nothing happens needs a bounded wait
	if got := testutil.ToFloat64(a.metrics.loadReports.WithLabelValues("LoadPool")); got != loadUpdates {
		t.Errorf("load updates %v → %v for a change below the step", loadUpdates, got)
	}
	if got := testutil.ToFloat64(a.metrics.registered.WithLabelValues("LoadPool")); got != 2 {
		t.Errorf("rserpool_pe_registered = %v, want 2", got)
	}
	if got := testutil.ToFloat64(a.metrics.keepAlives.WithLabelValues("LoadPool")); got == 0 {
		t.Error("no keep-alive acks counted (the registrar sends keep-alives every 300 ms)")
	}
	if got := testutil.ToFloat64(a.metrics.registrations.WithLabelValues("LoadPool", "accepted")); got < 3 {
		t.Errorf("accepted registrations = %v, want at least 3 (two registrations and a load update)", got)
	}
}

func TestE2EHomeRegistrarDies(t *testing.T) {
	needBinary(t, "registrar", "ctl resolve")
	r1, p1 := startRegistrar(t)
	r2, p2 := startRegistrar(t)
	b := startBackend(t)
	cfg := fastAgentConfig(r1, r2)
	cfg.Elements = []ElementConfig{{Pool: "HomePool", Backend: b.addr, Health: fastHealth()}}
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdownAgent(t, a)
	a.Start()
	// The hunt tries both at once: either may become home.
	st := waitStatus(t, a, "registered", func(s ElementStatus) bool { return s.Registered })
	if st.HomeAddr.String() == r2 {
		r1, r2, p1, p2 = r2, r1, p2, p1
	}
	_ = p2
	pes := waitPool(t, r1, "HomePool", "registered at the home registrar", 10*time.Second, func(p []pe) bool { return len(p) == 1 })
	p1.cmd.Process.Kill()
	<-p1.exited
	pes2 := waitPool(t, r2, "HomePool", "registered at the other registrar", 10*time.Second, func(p []pe) bool { return len(p) == 1 })
	if pes2[0].ID != pes[0].ID {
		t.Errorf("PE ID changed from %s to %s", pes[0].ID, pes2[0].ID)
	}
	waitStatus(t, a, "home moved", func(s ElementStatus) bool { return s.Registered && s.HomeAddr.String() == r2 })
}

// waitStatus waits until the agent's only element satisfies cond,
// re-checking on every state change of the element.
func waitStatus(t *testing.T, a *Agent, what string, cond func(ElementStatus) bool) ElementStatus {
	t.Helper()
	var changes <-chan struct{}
	a.mu.Lock()
	for _, mb := range a.members {
		changes = mb.el.Changes()
	}
	a.mu.Unlock()
	deadline := time.After(10 * time.Second)
	for {
		st := a.Status()
		if len(st) == 1 && cond(st[0]) {
			return st[0]
		}
		select {
		case <-changes:
		case <-deadline:
			t.Fatalf("timed out waiting for %s: %+v", what, st)
		}
	}
}

func TestE2EAgentReload(t *testing.T) {
	needBinary(t, "registrar", "ctl resolve")
	reg, _ := startRegistrar(t)
	b1, b2 := startBackend(t), startBackend(t)
	e1 := ElementConfig{Pool: "ReloadPool", Backend: b1.addr, Health: fastHealth()}
	e2 := ElementConfig{Pool: "ReloadPool", Backend: b2.addr, Health: fastHealth()}
	cfg := fastAgentConfig(reg)
	cfg.Elements = []ElementConfig{e1}
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdownAgent(t, a)
	a.Start()
	p := waitPool(t, reg, "ReloadPool", "b1", 10*time.Second, func(p []pe) bool { return len(p) == 1 })
	id1 := p[0].ID

	cfg.Elements = []ElementConfig{e1, e2}
	if err := a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	p = waitPool(t, reg, "ReloadPool", "b1 and b2", 10*time.Second, func(p []pe) bool { return len(p) == 2 })
	var id2 string
	for _, x := range p {
		if x.Port == b1.port && x.ID != id1 {
			t.Errorf("unchanged element re-created: ID %s → %s", id1, x.ID)
		}
		if x.Port == b2.port {
			id2 = x.ID
		}
	}
	cfg.Elements = []ElementConfig{e2}
	if err := a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	// Reload deregisters before it returns.
	p = resolve(t, reg, "ReloadPool", 20)
	if len(p) != 1 || p[0].Port != b2.port || p[0].ID != id2 {
		t.Errorf("after removing b1: %+v (b2 ID %s)", p, id2)
	}
	bad := cfg
	bad.Elements = []ElementConfig{{Pool: "", Backend: "x"}}
	if err := a.Reload(bad); err == nil {
		t.Error("Reload accepted an invalid config")
	}
}

func TestE2EAgentSIGHUP(t *testing.T) {
	needBinary(t, "registrar", "ctl resolve", "pe-agent")
	reg, _ := startRegistrar(t)
	b1, b2 := startBackend(t), startBackend(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pe-agent.toml")
	write := func(backends ...*backend) {
		var s strings.Builder
		fmt.Fprintf(&s, "registrars = [%q]\ndrain = \"-1s\"\n", reg)
		for _, b := range backends {
			fmt.Fprintf(&s, "[[element]]\npool = \"HupPool\"\nbackend = %q\n%s\n", b.addr, healthTOML)
		}
		if err := os.WriteFile(cfg, []byte(s.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(b1)
	agent := startProc(t, "pe-agent", "-config", cfg)
	p := waitPool(t, reg, "HupPool", "b1", 10*time.Second, func(p []pe) bool { return len(p) == 1 })
	id1 := p[0].ID

	write(b1, b2)
	agent.cmd.Process.Signal(syscall.SIGHUP)
	p = waitPool(t, reg, "HupPool", "b1 and b2 after SIGHUP", 10*time.Second, func(p []pe) bool { return len(p) == 2 })
	for _, x := range p {
		if x.Port == b1.port && x.ID != id1 {
			t.Errorf("unchanged element touched by reload: ID %s → %s", id1, x.ID)
		}
	}
	// A broken file is refused and the running configuration stays.
	os.WriteFile(cfg, []byte("registrars = [\n"), 0o644)
	agent.cmd.Process.Signal(syscall.SIGHUP)
	write(b2)
	agent.cmd.Process.Signal(syscall.SIGHUP)
	waitPool(t, reg, "HupPool", "only b2 after SIGHUP", 10*time.Second, func(p []pe) bool { return len(p) == 1 && p[0].Port == b2.port })
	agent.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-agent.exited:
		if agent.err != nil {
			t.Errorf("agent exit: %v", agent.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit")
	}
}

func TestE2EAgentBadInvocation(t *testing.T) {
	needBinary(t, "pe-agent")
	dir := t.TempDir()
	badKey := filepath.Join(dir, "bad.toml")
	os.WriteFile(badKey, []byte("registrars = [\"127.0.0.1:1\"]\n[[element]]\npool = \"P\"\nbackend = \"127.0.0.1:1\"\nwieght = 2\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"pool without backend", []string{"-registrar", "127.0.0.1:1", "-pool", "P"}, "-pool and -backend"},
		{"unknown key", []string{"-config", badKey}, "wieght"},
		{"bad policy", []string{"-registrar", "127.0.0.1:1", "-pool", "P", "-backend", "127.0.0.1:1", "-policy", "fastest"}, "policy"},
		{"nothing to do", nil, "registrars"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(rserpoolBin, append([]string{"pe-agent"}, tt.args...)...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tt.want) {
				t.Errorf("exit %v, output %q; want exit 2 naming %q", err, out, tt.want)
			}
		})
	}
}
