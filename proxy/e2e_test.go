package proxy_test

// End-to-end tests with real processes on 127.0.0.1: the rserpool binary
// (registrar, proxy, and pe-agent where that command exists), and backend
// processes (this test binary re-executed) that can be SIGKILLed.

import (
	"bufio"
	"context"
	"encoding/json"
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

	"github.com/rserpool/rserpool/internal/sdnotify"
	"github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

const (
	backendEnv = "RSERPOOL_TEST_BACKEND"
)

// runBackendProcess is the backend mode of the test binary: a line service
// answering "<name>:<line>", until killed. It says READY=1 with ADDR= on
// $NOTIFY_SOCKET, as the daemons do.
func runBackendProcess(name string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := sdnotify.Notify(sdnotify.Ready, "ADDR="+ln.Addr().String()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if _, err := io.WriteString(c, name+":"+sc.Text()+"\n"); err != nil {
					return
				}
			}
		}()
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// rserpoolBin builds the rserpool binary once per test run.
func rserpoolBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rserpool-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "rserpool")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/rserpool").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a child process, killed and waited for at cleanup.
type proc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	out    *strings.Builder
	notify *sdnotify.Listener
}

// startProc starts a process with its own $NOTIFY_SOCKET (see ready).
func startProc(t *testing.T, name string, args []string, env ...string) *proc {
	t.Helper()
	notify, err := sdnotify.Listen(filepath.Join(t.TempDir(), "notify"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(append(os.Environ(), env...), "NOTIFY_SOCKET="+notify.Path())
	out := &strings.Builder{}
	var mu sync.Mutex
	w := writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(b) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), out: out, notify: notify}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		notify.Close()
		if t.Failed() {
			mu.Lock()
			t.Logf("%s %v output:\n%s", filepath.Base(name), args, out.String())
			mu.Unlock()
		}
	})
	return p
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// ready waits for the process's next READY=1 on its notify socket (60 s: a
// loaded CI machine) and returns the datagram's variables.
func (p *proc) ready(t *testing.T) map[string]string {
	t.Helper()
	vars, err := p.notify.WaitReadyOr(60*time.Second, p.done)
	if err != nil {
		t.Fatalf("%v: %v\n%s", err, p.err, p.out.String())
	}
	return vars
}

func startRegistrarProc(t *testing.T) (addr string, p *proc) {
	return startRegistrarProcAt(t, "tcp://127.0.0.1:0")
}

// startRegistrarProcAt starts a registrar process listening on asap.
func startRegistrarProcAt(t *testing.T, asap string) (addr string, p *proc) {
	p = startProc(t, rserpoolBin(t), []string{"registrar", "-asap", asap, "-log-level", "warn"})
	addrs := strings.Fields(p.ready(t)["ASAP"])
	if len(addrs) == 0 {
		t.Fatal("registrar: no ASAP= in its READY=1")
	}
	return addrs[0], p
}

func startBackendProc(t *testing.T, name string) (addr string, p *proc) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p = startProc(t, exe, []string{"-test.run=^$"}, backendEnv+"="+name)
	return p.ready(t)["ADDR"], p
}

// hasPEAgentCommand reports whether the binary has "pe-agent".
func hasPEAgentCommand(t *testing.T) bool {
	out, _ := exec.Command(rserpoolBin(t), "pe-agent", "-h").CombinedOutput()
	return !strings.Contains(string(out), "unknown command")
}

// startAgent registers backend into pool: an "rserpool pe-agent" process
// when the binary has that command, else the peagent library in-process.
func startAgent(t *testing.T, registrars []string, pool, backend, policy string, weight int) {
	t.Helper()
	if hasPEAgentCommand(t) {
		args := []string{"pe-agent", "-pool", pool, "-backend", backend, "-policy", policy, "-weight", strconv.Itoa(weight)}
		for _, r := range registrars {
			args = append(args, "-registrar", r)
		}
		startProc(t, rserpoolBin(t), args)
		return
	}
	a, err := peagent.New(peagent.AgentConfig{
		Registrars: mustAddrs(t, registrars), Drain: -1, RetryInterval: 200 * time.Millisecond, ResponseTimeout: time.Second,
		Elements: []peagent.ElementConfig{{Pool: wire.PoolHandle(pool), Backend: backend, Policy: policy, Weight: uint32(weight),
			Health: peagent.HealthConfig{Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 1, Fall: 1}}},
	}, peagent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Shutdown(ctx)
	})
}

// waitPool waits until a registrar lists want PEs in pool.
func waitPool(t *testing.T, registrars []string, pool string, want int) {
	t.Helper()
	c, err := pucache.New(pucache.Config{Registrars: mustAddrs(t, registrars), RequestTimeout: time.Second}, pucache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p := c.Pool(wire.PoolHandle(pool))
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := p.Refresh(ctx)
		cancel()
		if err == nil && len(p.Elements()) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool %s: want %d PEs, have %d (%v)", pool, want, len(p.Elements()), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type proxyProc struct {
	*proc
	cfgPath, readyFile string
	Listeners          map[string]string
	Admin              string
}

func startProxyProc(t *testing.T, cfg string) *proxyProc {
	t.Helper()
	dir := t.TempDir()
	pp := &proxyProc{cfgPath: filepath.Join(dir, "proxy.toml"), readyFile: filepath.Join(dir, "ready.json")}
	if err := os.WriteFile(pp.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	pp.proc = startProc(t, rserpoolBin(t), []string{"proxy", "-config", pp.cfgPath, "-ready-file", pp.readyFile, "-log-level", "warn"})
	pp.readReady(t)
	return pp
}

// readReady awaits the proxy's READY=1 (after the start or a reload) and
// reads its ready file, written before it.
func (pp *proxyProc) readReady(t *testing.T) {
	t.Helper()
	vars := pp.ready(t)
	b, err := os.ReadFile(pp.readyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, pp); err != nil {
		t.Fatal(err)
	}
	if vars["ADMIN"] != pp.Admin || len(strings.Fields(vars["LISTENERS"])) != len(pp.Listeners) {
		t.Fatalf("READY=1 %v disagrees with the ready file %+v", vars, pp)
	}
}

func (pp *proxyProc) metric(t *testing.T, name, labelMatch string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + pp.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var sum float64
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name) && strings.Contains(line, labelMatch) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

func TestE2EPolicySpreadAndKillFailover(t *testing.T) {
	reg, _ := startRegistrarProc(t)
	regs := []string{reg}
	type be struct {
		name, addr string
		p          *proc
	}
	var bs []be
	for i := 1; i <= 3; i++ {
		name := "b" + strconv.Itoa(i)
		a, p := startBackendProc(t, name)
		bs = append(bs, be{name, a, p})
		startAgent(t, regs, "RR", a, "round-robin", 1)
		startAgent(t, regs, "WRR", a, "weighted-round-robin", i)
	}
	waitPool(t, regs, "RR", 3)
	waitPool(t, regs, "WRR", 3)
	pp := startProxyProc(t, fmt.Sprintf(`
registrars = [%q]
admin = "127.0.0.1:0"
[[listener]]
name = "rr"
listen = "127.0.0.1:0"
pool = "RR"
connect_timeout = "500ms"
[[listener]]
name = "rr-replay"
listen = "127.0.0.2:0"
pool = "RR"
connect_timeout = "500ms"
replay_buffer = 4096
[[listener]]
name = "wrr"
listen = "127.0.1.1:0"
pool = "WRR"
`, reg))
	rr, wrr, rrReplay := pp.Listeners["127.0.0.1:0"], pp.Listeners["127.0.1.1:0"], pp.Listeners["127.0.0.2:0"]

	t.Run("round robin exactly", func(t *testing.T) {
		counts := map[string]int{}
		for i := range 30 {
			got, err := ask(t, rr, "x")
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			counts[got]++
		}
		for _, b := range bs {
			if counts[b.name+":x"] != 10 {
				t.Fatalf("counts %v, want 10 each", counts)
			}
		}
	})
	t.Run("weighted in proportion", func(t *testing.T) {
		counts := map[string]int{}
		for i := range 60 {
			got, err := ask(t, wrr, "x")
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			counts[got]++
		}
		// Weights 1:2:3 over 60 connections = 10 whole cycles.
		for i, b := range bs {
			if counts[b.name+":x"] != 10*(i+1) {
				t.Fatalf("counts %v, want 10/20/30", counts)
			}
		}
	})
	t.Run("SIGKILL under load, replay off: every connection after the kill succeeds", func(t *testing.T) {
		before, after := loadWithKill(t, rr, bs[1].p)
		for _, err := range after {
			t.Error(err)
		}
		// Connections that were already relaying to the PE when it died
		// can only fail with its close; connect-time failover covers
		// every later one.
		for _, err := range before {
			t.Logf("in flight at the kill (expected without replay): %v", err)
		}
		if v := pp.metric(t, "rserpool_proxy_failovers_total", `listener="rr"`); v < 1 {
			t.Fatalf("failovers = %v, want ≥ 1", v)
		}
		// The dead PE leaves the registrar (reports and/or health check).
		waitPool(t, regs, "RR", 2)
	})
	t.Run("SIGKILL under load, replay on: zero failed connections", func(t *testing.T) {
		before, after := loadWithKill(t, rrReplay, bs[2].p)
		for _, err := range append(before, after...) {
			t.Error(err)
		}
		waitPool(t, regs, "RR", 1)
	})
}

// A hung PE (SIGSTOPped: its kernel still accepts connections and
// requests) under request/response load, with the replay buffer and
// first_byte_timeout: every client request is answered, by another PE.
func TestE2EHungPEReplayedZeroFailures(t *testing.T) {
	reg, _ := startRegistrarProc(t)
	regs := []string{reg}
	var victim *proc
	for i := 1; i <= 3; i++ {
		a, p := startBackendProc(t, "b"+strconv.Itoa(i))
		if i == 2 {
			victim = p
		}
		startAgent(t, regs, "P", a, "round-robin", 1)
	}
	waitPool(t, regs, "P", 3)
	pp := startProxyProc(t, fmt.Sprintf(`
registrars = [%q]
admin = "127.0.0.1:0"
[[listener]]
listen = "127.0.0.1:0"
pool = "P"
replay_buffer = 4096
first_byte_timeout = "300ms"
`, reg))
	addr := pp.Listeners["127.0.0.1:0"]
	before, after := loadWith(t, addr, func() {
		victim.cmd.Process.Signal(syscall.SIGSTOP)
	})
	t.Cleanup(func() { victim.cmd.Process.Signal(syscall.SIGCONT) })
	for _, err := range append(before, after...) {
		t.Error(err)
	}
	if v := pp.metric(t, "rserpool_proxy_failovers_total", ""); v < 1 {
		t.Fatalf("failovers = %v, want ≥ 1 (the hung PE abandoned)", v)
	}
}

// loadWithKill runs 4 clients × 60 one-line requests against addr and
// SIGKILLs victim after a quarter of them. It returns the failures of
// requests started before and after the kill completed.
func loadWithKill(t *testing.T, addr string, victim *proc) (before, after []error) {
	return loadWith(t, addr, func() {
		victim.cmd.Process.Signal(syscall.SIGKILL)
		<-victim.done
	})
}

// loadWith is loadWithKill with any fault: hit runs once, after a quarter
// of the requests.
func loadWith(t *testing.T, addr string, hit func()) (before, after []error) {
	const clients, perClient = 4, 60
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		killed = make(chan struct{})
		once   sync.Once
	)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				if c == 0 && i == perClient/4 {
					once.Do(func() {
						hit()
						close(killed)
					})
				}
				var startedAfter bool
				select {
				case <-killed:
					startedAfter = true
				default:
				}
				if _, err := askRetryless(addr, "k"); err != nil {
					err = fmt.Errorf("client %d request %d: %w", c, i, err)
					mu.Lock()
					if startedAfter {
						after = append(after, err)
					} else {
						before = append(before, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	<-killed
	return before, after
}

// askRetryless is ask without testing.T (for client goroutines).
func askRetryless(addr, line string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	s, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

func TestE2ERegistrarDownServesFromCacheAndFindsNext(t *testing.T) {
	// The second registrar starts only when the first one is in use, so
	// that the agents and the proxy (whose hunts try both at once) all
	// begin at the first.
	r1, r1p := startRegistrarProc(t)
	r2 := "tcp://" + freePort(t)
	regs := []string{r1, r2}
	for i := 1; i <= 2; i++ {
		a, _ := startBackendProc(t, "b"+strconv.Itoa(i))
		startAgent(t, regs, "P", a, "round-robin", 1)
	}
	waitPool(t, []string{r1}, "P", 2)
	pp := startProxyProc(t, fmt.Sprintf(`
registrars = [%q, %q]
admin = "127.0.0.1:0"
[cache]
stale_timeout = "400ms"
request_timeout = "300ms"
[[listener]]
listen = "127.0.0.1:0"
pool = "P"
`, r1, r2))
	addr := pp.Listeners["127.0.0.1:0"]
	for i := range 10 {
		if _, err := ask(t, addr, "x"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	okBefore := pp.metric(t, "rserpool_pu_handle_resolutions_total", `result="ok"`)
	startRegistrarProcAt(t, r2)
	r1p.cmd.Process.Signal(syscall.SIGKILL)
	<-r1p.done
	// Served from the cache while no registrar is known to have the pool.
	for i := range 20 {
		if _, err := ask(t, addr, "y"); err != nil {
			t.Fatalf("request %d with the registrar down: %v", i, err)
		}
	}
	// The agents move to the second registrar; so does the proxy's cache.
	waitPool(t, []string{r2}, "P", 2)
	deadline := time.Now().Add(20 * time.Second)
	for pp.metric(t, "rserpool_pu_handle_resolutions_total", `result="ok"`) < okBefore+2 {
		if time.Now().After(deadline) {
			t.Fatal("the proxy did not resolve at the second registrar within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 10 {
		if _, err := ask(t, addr, "z"); err != nil {
			t.Fatalf("request %d after the move: %v", i, err)
		}
	}
}

func TestE2ESignals(t *testing.T) {
	reg, _ := startRegistrarProc(t)
	a, _ := startBackendProc(t, "b1")
	startAgent(t, []string{reg}, "P", a, "round-robin", 1)
	waitPool(t, []string{reg}, "P", 1)
	cfg := fmt.Sprintf(`
registrars = [%q]
admin = "127.0.0.1:0"
drain_timeout = "20s"
[[listener]]
listen = "127.0.0.1:0"
pool = "P"
`, reg)
	pp := startProxyProc(t, cfg)
	first := pp.Listeners["127.0.0.1:0"]

	c, err := net.Dial("tcp", first)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	exchange := func(what string) {
		t.Helper()
		io.WriteString(c, what+"\n")
		if s, err := r.ReadString('\n'); err != nil || s != "b1:"+what+"\n" {
			t.Fatalf("established connection, %s: %q %v", what, s, err)
		}
	}
	exchange("before")

	t.Run("SIGHUP adds a listener without touching established connections", func(t *testing.T) {
		cfg2 := cfg + "[[listener]]\nlisten = \"127.0.0.3:0\"\npool = \"P\"\n"
		if err := os.WriteFile(pp.cfgPath, []byte(cfg2), 0o644); err != nil {
			t.Fatal(err)
		}
		pp.cmd.Process.Signal(syscall.SIGHUP)
		pp.readReady(t)
		second := pp.Listeners["127.0.0.3:0"]
		if second == "" {
			t.Fatalf("no new listener after SIGHUP: %v", pp.Listeners)
		}
		if got, err := ask(t, second, "new"); err != nil || got != "b1:new" {
			t.Fatalf("new listener: %q %v", got, err)
		}
		exchange("after-hup")
	})
	t.Run("SIGTERM drains", func(t *testing.T) {
		pp.cmd.Process.Signal(syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if nc, err := net.Dial("tcp", first); err != nil {
				break
			} else {
				nc.Close()
			}
			if time.Now().After(deadline) {
				t.Fatal("still accepting 10s after SIGTERM")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if resp, err := http.Get("http://" + pp.Admin + "/healthz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("healthz while draining: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		exchange("during-drain")
		select {
		case <-pp.done:
			t.Fatal("proxy exited with a connection open")
		default:
		}
		c.Close()
		select {
		case <-pp.done:
			if pp.err != nil {
				t.Fatalf("proxy exit: %v", pp.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("proxy did not exit after the last connection closed")
		}
	})
}

func mustAddrs(t *testing.T, list []string) []transport.Addr {
	t.Helper()
	addrs, err := transport.ParseAddrs(list)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// freePort returns a loopback host:port nothing listens on (for a process
// started later).
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
