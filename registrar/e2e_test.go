package registrar

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rserpool/rserpool/wire"
)

var (
	longTests = flag.Bool("long", false, "run the 10,000 idle connection test")
	binOnce   sync.Once
	binDir    string
	binPath   string
	binErr    error
)

// backendEnv makes the test binary a plain TCP server (accept and close) on
// the address it names, instead of running tests: the namespace tests use it
// as the backend behind their pe-agents.
const backendEnv = "RSERPOOL_TEST_BACKEND"

func TestMain(m *testing.M) {
	if addr := os.Getenv(backendEnv); addr != "" {
		serveTestBackend(addr)
		return
	}
	if spec := os.Getenv(connGenEnv); spec != "" {
		os.Exit(runConnGen(spec))
	}
	flag.Parse()
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// rserpoolBin builds cmd/rserpool once per test run.
func rserpoolBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "rserpool-e2e")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "rserpool")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/rserpool").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a registrar process.
type proc struct {
	t     testing.TB
	cmd   *exec.Cmd
	asap  string
	admin string
	enrp  string // first ENRP listener, "" without ENRP
	id    uint32
	pid   int
	lines chan string // stderr lines after start-up
	wg    sync.WaitGroup
	cfg   string
}

type readyInfo struct {
	ID    string   `json:"id"`
	ASAP  []string `json:"asap"`
	Admin string   `json:"admin"`
	PID   int      `json:"pid"`
	ENRP  []string `json:"enrp"`
}

// startProc runs "rserpool registrar" with the given TOML and waits until
// it reports that it serves.
func startProc(t testing.TB, toml string, extra ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "registrar.toml")
	if err := os.WriteFile(cfgPath, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready.json")
	args := append([]string{"registrar", "-config", cfgPath, "-asap", "tcp://127.0.0.1:0",
		"-admin", "127.0.0.1:0", "-ready-file", ready}, extra...)
	cmd := exec.Command(rserpoolBin(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, lines: make(chan string, 1024), cfg: cfgPath}
	servingCh := make(chan bool, 1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			if testing.Verbose() {
				t.Log("registrar:", line)
			}
			if !signalled && strings.Contains(line, "registrar serving") {
				signalled = true
				servingCh <- true
			}
			select {
			case p.lines <- line:
			default:
			}
		}
		if !signalled {
			servingCh <- false
		}
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
		p.wg.Wait()
	})
	select {
	case ok := <-servingCh:
		if !ok {
			t.Fatal("registrar exited before serving")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("registrar did not start")
	}
	b, err := os.ReadFile(ready)
	if err != nil {
		t.Fatal(err)
	}
	var ri readyInfo
	if err := json.Unmarshal(b, &ri); err != nil || len(ri.ASAP) != 1 {
		t.Fatalf("ready file %s: %v", b, err)
	}
	p.asap, p.admin, p.pid = ri.ASAP[0], ri.Admin, ri.PID
	if len(ri.ENRP) > 0 {
		p.enrp = ri.ENRP[0]
	}
	if id, err := strconv.ParseUint(strings.TrimPrefix(ri.ID, "0x"), 16, 32); err == nil {
		p.id = uint32(id)
	}
	return p
}

// waitLog waits for a stderr line containing s.
func (p *proc) waitLog(s string, d time.Duration) {
	p.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case l := <-p.lines:
			if strings.Contains(l, s) {
				return
			}
		case <-deadline:
			p.t.Fatalf("no log line %q within %v", s, d)
		}
	}
}

func (p *proc) stop() int {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-done
		p.t.Fatal("registrar did not stop on SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode()
}

// rssKB reads VmRSS of a process.
func rssKB(t testing.TB, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}

const e2eConfig = `
[timers]
keepalive_interval = "300ms"
keepalive_timeout = "1s" # a PE answering keep-alives on a loaded machine must not miss one
[limits]
max_handle_length = 32
[[pool]]
handle = "Remote"
allow = ["10.0.0.0/8"]
`

// resolveUntil resolves until cond holds or d passes.
func resolveUntil(t *testing.T, pu *client, handle string, d time.Duration, cond func(*wire.HandleResolutionResponse) bool) *wire.HandleResolutionResponse {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		hr := pu.resolve(handle, 0)
		if cond(hr) {
			return hr
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached within %v: last %+v", d, hr)
		}
		time.Sleep(20 * time.Millisecond) // polling the registrar from outside its process
	}
}

func TestE2ELifecycle(t *testing.T) {
	p := startProc(t, e2eConfig)
	pe := dial(t, p.asap)
	pu := dial(t, p.asap)

	// Until the keep-alive part below, the PE answers keep-alives on its
	// own: the ctl commands are process starts, each longer than the
	// keep-alive interval plus timeout (600 ms) on a loaded machine.
	pe.autoAck.Store(true)
	if r := pe.register(regMsg("EchoPool", 0x51, 7001, wire.PolicyRoundRobin)); r.Reject {
		t.Fatalf("register: %+v", r.Error)
	}
	hr := pu.resolve("EchoPool", 0)
	if len(hr.Elements) != 1 || hr.Elements[0].ID != 0x51 || hr.Policy == nil {
		t.Fatalf("resolve: %+v", hr)
	}

	// ctl resolve, text and JSON.
	out, err := exec.Command(rserpoolBin(t), "ctl", "resolve", "-registrar", p.asap, "EchoPool").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "0x00000051") || !strings.Contains(string(out), "127.0.0.1") {
		t.Fatalf("ctl resolve: %v\n%s", err, out)
	}
	out, err = exec.Command(rserpoolBin(t), "ctl", "resolve", "-json", "-registrar", p.asap, "EchoPool").Output()
	var js struct {
		Policy   string `json:"policy"`
		Elements []struct {
			ID    string   `json:"id"`
			Addrs []string `json:"addrs"`
			Port  int      `json:"port"`
		} `json:"elements"`
	}
	if err != nil || json.Unmarshal(out, &js) != nil || len(js.Elements) != 1 || js.Elements[0].Port != 7001 ||
		js.Policy != "round-robin" {
		t.Fatalf("ctl resolve -json: %v\n%s", err, out)
	}
	out, err = exec.Command(rserpoolBin(t), "ctl", "resolve", "-registrar", p.asap, "NoSuchPool").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Unknown Pool Handle") {
		t.Errorf("ctl resolve of an unknown pool: %v\n%s", err, out)
	}

	// Keep-alives answered twice; then silence removes the PE.
	pe.autoAck.Store(false)
	for i := 0; i < 2; i++ {
		ka := expect[*wire.EndpointKeepAlive](t, pe)
		pe.send(&wire.EndpointKeepAliveAck{PoolHandle: ka.PoolHandle, ID: ka.ID})
	}
	if hr := pu.resolve("EchoPool", 0); len(hr.Elements) != 1 {
		t.Fatal("PE answering keep-alives was removed")
	}
	expect[*wire.EndpointKeepAlive](t, pe)
	t0 := time.Now()
	resolveUntil(t, pu, "EchoPool", 5*time.Second, func(hr *wire.HandleResolutionResponse) bool {
		return cause(hr.Error) == wire.CauseUnknownPoolHandle
	})
	if d := time.Since(t0); d > time.Second+2*time.Second { // slack for a loaded CI machine
		t.Errorf("removal took %v after the unanswered keep-alive (timeout 1s)", d)
	}
	t.Logf("PE removed %v after its unanswered keep-alive (timeout 1s)", time.Since(t0).Round(time.Millisecond))

	// Unreachable reports reaching the threshold (3) remove a PE.
	pe.autoAck.Store(true)
	pe.register(regMsg("U", 1, 7001, wire.PolicyRoundRobin))
	pe.register(regMsg("U", 2, 7002, wire.PolicyRoundRobin))
	for i := 0; i < 3; i++ {
		pu.send(&wire.EndpointUnreachable{PoolHandle: "U", ID: 1})
	}
	hr = pu.resolve("U", 10)
	if len(hr.Elements) != 1 || hr.Elements[0].ID != 2 {
		t.Fatalf("after 3 unreachable reports: %+v", hr.Elements)
	}

	// Per-pool CIDR authorization from the config file.
	if r := pe.register(regMsg("Remote", 1, 7001, wire.PolicyRoundRobin)); !r.Reject || cause(r.Error) != wire.CauseRejectedSecurity {
		t.Fatalf("CIDR: %+v", r)
	}

	// SIGHUP reloads limits.
	long := strings.Repeat("h", 20)
	if r := pe.register(regMsg(long, 1, 7001, wire.PolicyRoundRobin)); r.Reject {
		t.Fatalf("20-byte handle before reload: %+v", r.Error)
	}
	if err := os.WriteFile(p.cfg, []byte(strings.Replace(e2eConfig, "max_handle_length = 32", "max_handle_length = 16", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog("configuration reloaded", 5*time.Second)
	if r := pe.register(regMsg(long, 2, 7001, wire.PolicyRoundRobin)); !r.Reject || cause(r.Error) != wire.CauseInvalidValues {
		t.Fatalf("20-byte handle after reload to 16: %+v", r)
	}

	if code := p.stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// TestE2EIdleConnections opens many idle connections (2,000; 10,000 with
// -long) while a well-behaved client keeps getting answers, and reports the
// registrar's RSS.
func TestE2EIdleConnections(t *testing.T) {
	n := 2000
	if *longTests {
		n = 10000
	}
	if testing.Short() {
		n = 200
	}
	p := startProc(t, "[limits]\nmax_connections = 20000\nmax_source_connections = 20000\n") // all from 127.0.0.1
	good := dial(t, p.asap)
	good.autoAck.Store(true)
	good.register(regMsg("Live", 1, 7001, wire.PolicyRoundRobin))
	before := rssKB(t, p.pid)
	conns := make([]*client, 0, n)
	for i := 0; i < n; i++ {
		conns = append(conns, dial(t, p.asap))
		if i%500 == 0 {
			if hr := good.resolve("Live", 0); len(hr.Elements) != 1 {
				t.Fatalf("well-behaved client not served with %d idle connections", i)
			}
		}
	}
	// Every idle connection is still served.
	for _, i := range []int{0, n / 2, n - 1} {
		if hr := conns[i].resolve("Live", 0); len(hr.Elements) != 1 {
			t.Fatalf("idle connection %d not served", i)
		}
	}
	after := rssKB(t, p.pid)
	t.Logf("registrar RSS: %d KiB before, %d KiB with %d idle connections (%.1f KiB per connection)",
		before, after, n, float64(after-before)/float64(n))
	if per := float64(after-before) / float64(n); per > 64 {
		t.Errorf("%.1f KiB RSS per idle connection", per)
	}
	for _, c := range conns {
		c.close()
	}
	if code := p.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

func TestE2EBadConfig(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "bad.toml")
	os.WriteFile(cfgPath, []byte("[limits]\nmax_pools = -1\nbogus = 1\n"), 0o644)
	var stderr bytes.Buffer
	cmd := exec.Command(rserpoolBin(t), "registrar", "-config", cfgPath)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil || !strings.Contains(stderr.String(), "limits.bogus") {
		t.Fatalf("bad config: %v %q", err, stderr.String())
	}
	_ = io.Discard
}

// serveTestBackend accepts connections on addr and closes them, until the
// process is killed.
func serveTestBackend(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test backend:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Close()
	}
}
