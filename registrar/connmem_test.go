package registrar

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// TestConnMemory measures what ASAP connections over the TCP mapping cost a
// registrar process: VmRSS growth over the process's baseline, and the Go
// runtime's goroutines, heap and stack figures from its /metrics, for each
// connection count in -connmem; first with every connection idle, then
// with -connmem-active of them sending Handle Resolutions at
// -connmem-rate each. Every connection is a registered PE (its own PE ID in
// pool "Idle") answering the registrar's keep-alives (every 5 s, the
// default). The connections come from child processes (this test binary
// re-executed) holding at most connGenMax each, since a process may have
// 20,000 descriptors here. Heap profiles go to -connmem-profiles if set.
//
//	go test -run ConnMemory -timeout 30m ./registrar -args -connmem 1000,10000,19000
func TestConnMemory(t *testing.T) {
	if *connMem == "" {
		t.Skip("set -connmem (connection counts, e.g. 1000,10000,19000)")
	}
	var counts []int
	for _, f := range strings.Split(*connMem, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			t.Fatalf("-connmem: bad count %q", f)
		}
		counts = append(counts, n)
	}
	t.Logf("%-7s %-6s %9s %9s %10s %10s %10s %10s", "conns", "phase", "RSS KiB", "KiB/conn", "goroutines", "heap KiB", "stack KiB", "B/conn heap")
	for _, n := range counts {
		measureConnMemory(t, n)
	}
}

var (
	connMem         = flag.String("connmem", "", "TestConnMemory: comma-separated connection counts")
	connMemActive   = flag.Float64("connmem-active", 0.1, "TestConnMemory: share of the connections sending requests in the active phase")
	connMemRate     = flag.Float64("connmem-rate", 1, "TestConnMemory: Handle Resolutions per second per active connection")
	connMemProfiles = flag.String("connmem-profiles", "", "TestConnMemory: directory for the registrar's heap profiles")
)

// connGenEnv makes the test binary a connection generator (see runConnGen)
// instead of running tests.
const (
	connGenEnv = "RSERPOOL_TEST_CONNGEN"
	connGenMax = 9000
)

// connMemConfig lifts the connection and per-source caps (every connection
// comes from 127.0.0.1); the timers are the defaults.
const connMemConfig = `
[limits]
max_connections = 25000
max_source_connections = 25000
max_source_elements = 100000
`

// runtimeStats are the registrar's Go runtime figures from /metrics.
type runtimeStats struct {
	goroutines, heapInuse, stackInuse float64
}

func scrapeRuntime(t testing.TB, admin string) runtimeStats {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s runtimeStats
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_goroutines":
			s.goroutines = v
		case "go_memstats_heap_inuse_bytes":
			s.heapInuse = v
		case "go_memstats_stack_inuse_bytes":
			s.stackInuse = v
		}
	}
	return s
}

// settle waits for the registrar's memory to settle: two GC cycles (the
// second shrinks the stacks the first found oversized) and a pause.
func settle(t testing.TB, admin string) {
	t.Helper()
	for range 2 {
		resp, err := http.Get("http://" + admin + "/debug/pprof/heap?gc=1")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(2 * time.Second)
}

func saveProfile(t testing.TB, admin, profile, name string) {
	t.Helper()
	if *connMemProfiles == "" {
		return
	}
	resp, err := http.Get("http://" + admin + "/debug/pprof/" + profile)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*connMemProfiles, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func measureConnMemory(t *testing.T, n int) {
	if *connMemProfiles != "" {
		// Sample every 512 bytes allocated (the default, 512 KiB, sees
		// few connections).
		os.Setenv("GODEBUG", "memprofilerate=512")
	}
	p := startProc(t, connMemConfig)
	os.Unsetenv("GODEBUG")
	defer p.stop()
	settle(t, p.admin)
	base, baseRT := rssKB(t, p.pid), scrapeRuntime(t, p.admin)
	report := func(phase string) {
		rss, rt := rssKB(t, p.pid), scrapeRuntime(t, p.admin)
		t.Logf("%-7d %-6s %9d %9.1f %10.0f %10.0f %10.0f %10.0f", n, phase, rss-base, float64(rss-base)/float64(n),
			rt.goroutines-baseRT.goroutines, (rt.heapInuse-baseRT.heapInuse)/1024, (rt.stackInuse-baseRT.stackInuse)/1024,
			(rt.heapInuse-baseRT.heapInuse)/float64(n))
		saveProfile(t, p.admin, "heap", fmt.Sprintf("heap-%d-%s.pb.gz", n, phase))
		saveProfile(t, p.admin, "goroutine?debug=1", fmt.Sprintf("goroutine-%d-%s.txt", n, phase))
	}
	var gens []*connGen
	defer func() {
		start := time.Now()
		for _, g := range gens {
			g.stop()
		}
		t.Logf("%d connections closed in %v", n, time.Since(start).Round(time.Millisecond))
	}()
	for first := 0; first < n; first += connGenMax {
		gens = append(gens, startConnGen(t, p.asap, first, min(connGenMax, n-first)))
	}
	start := time.Now()
	for _, g := range gens {
		g.await("ready")
	}
	t.Logf("%d connections registered in %v", n, time.Since(start).Round(time.Millisecond))
	settle(t, p.admin)
	report("idle")
	active := int(float64(n) * *connMemActive)
	for i, g := range gens {
		k := min(max(active-i*connGenMax, 0), g.n)
		g.command(fmt.Sprintf("active %d %g", k, *connMemRate))
	}
	time.Sleep(10 * time.Second)
	report("active")
	for _, g := range gens {
		g.command("active 0 0")
	}
	var answered, failed int
	for _, g := range gens {
		g.command("stats")
		var a, f int
		fmt.Sscanf(g.await("stats"), "stats %d %d", &a, &f)
		answered, failed = answered+a, failed+f
	}
	t.Logf("%d connections: %d active at %g/s for 10 s: %d Handle Resolutions answered, %d failed; load average %s",
		n, active, *connMemRate, answered, failed, loadAverage())
}

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// connGen is a child process holding n registered-PE connections.
type connGen struct {
	t     testing.TB
	n     int
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
}

func startConnGen(t testing.TB, addr string, first, n int) *connGen {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d", connGenEnv, addr, first, n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &connGen{t: t, n: n, cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			g.lines <- sc.Text()
		}
	}()
	return g
}

// await returns the child's next line, which must start with want.
func (g *connGen) await(want string) string {
	g.t.Helper()
	select {
	case l := <-g.lines:
		if !strings.HasPrefix(l, want) {
			g.t.Fatalf("connection generator: %q, want %s", l, want)
		}
		return l
	case <-g.done:
		g.t.Fatalf("connection generator ended before %s", want)
	case <-time.After(5 * time.Minute):
		g.t.Fatalf("connection generator: no %s within 5 minutes", want)
	}
	return ""
}

func (g *connGen) command(c string) {
	g.t.Helper()
	if _, err := fmt.Fprintln(g.stdin, c); err != nil {
		g.t.Fatal(err)
	}
	if !strings.HasPrefix(c, "stats") {
		g.await("ok")
	}
}

// stop closes the child's stdin (it closes its connections and exits).
func (g *connGen) stop() {
	g.stdin.Close()
	<-g.done
	g.cmd.Wait()
}

// runConnGen is the child: spec is "addr,first,n". It opens n connections,
// registers PE IDs first+1..first+n in pool "Idle" and answers keep-alives;
// it prints "ready" once all are registered, then obeys stdin: "active K
// RATE" (the first K connections send RATE Handle Resolutions per second,
// each; "ok" when started), "stats" ("stats ANSWERED FAILED"); end of input
// closes everything.
func runConnGen(spec string) int {
	f := strings.Split(spec, ",")
	if len(f) != 3 {
		fmt.Fprintln(os.Stderr, "conngen: bad spec", spec)
		return 2
	}
	addr := f[0]
	first, _ := strconv.Atoi(f[1])
	n, _ := strconv.Atoi(f[2])
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	var answered, failed atomic.Int64
	conns := make([]*genConn, n)
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := dialGenConn(addr, uint32(first+i+1), &answered)
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		fmt.Fprintln(os.Stderr, "conngen:", err)
		return 1
	default:
	}
	fmt.Println("ready")
	var stopActive context.CancelFunc = func() {}
	var active sync.WaitGroup
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var k int
		var rate float64
		switch line := sc.Text(); {
		case strings.HasPrefix(line, "active"):
			fmt.Sscanf(line, "active %d %g", &k, &rate)
			stopActive()
			active.Wait()
			var ctx context.Context
			ctx, stopActive = context.WithCancel(context.Background())
			if rate > 0 {
				interval := time.Duration(float64(time.Second) / rate)
				for i := range min(k, n) {
					active.Add(1)
					go func() {
						defer active.Done()
						// Spread the first requests over one interval.
						phase := time.Duration(int64(interval) * int64(i) / int64(max(k, 1)))
						select {
						case <-time.After(phase):
						case <-ctx.Done():
							return
						}
						tick := time.NewTicker(interval)
						defer tick.Stop()
						for {
							if conns[i].resolve() != nil {
								failed.Add(1)
							}
							select {
							case <-tick.C:
							case <-ctx.Done():
								return
							}
						}
					}()
				}
			}
			fmt.Println("ok")
		case line == "stats":
			fmt.Printf("stats %d %d\n", answered.Load(), failed.Load())
		}
	}
	stopActive()
	active.Wait()
	for _, c := range conns {
		c.tc.Close()
		c.wg.Wait()
	}
	return 0
}

// genConn is one registered PE of the connection generator.
type genConn struct {
	tc  transport.Conn
	reg chan struct{} // the Registration Response arrived
	wg  sync.WaitGroup
}

func dialGenConn(addr string, id uint32, answered *atomic.Int64) (*genConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tc, err := transport.Dial(ctx, transport.MustParseAddr(addr), nil)
	if err != nil {
		return nil, err
	}
	c := &genConn{tc: tc, reg: make(chan struct{})}
	c.wg.Add(1)
	go c.read(answered)
	reg := regMsg("Idle", id, uint16(1024+id%60000), wire.PolicyRoundRobin)
	if err := c.send(reg); err != nil {
		tc.Close()
		return nil, err
	}
	select {
	case <-c.reg:
		return c, nil
	case <-time.After(30 * time.Second):
		tc.Close()
		return nil, fmt.Errorf("PE %d: no Registration Response", id)
	}
}

func (c *genConn) send(m wire.Message) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	return c.tc.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b})
}

func (c *genConn) resolve() error {
	return c.send(&wire.HandleResolution{PoolHandle: wire.PoolHandle("Idle")})
}

// read answers keep-alives and counts Handle Resolution Responses.
func (c *genConn) read(answered *atomic.Int64) {
	defer c.wg.Done()
	for {
		m, err := c.tc.ReadMessage()
		if err != nil {
			return
		}
		msg, err := wire.ParseASAP(m.Data)
		if err != nil {
			continue
		}
		switch msg := msg.(type) {
		case *wire.EndpointKeepAlive:
			c.send(&wire.EndpointKeepAliveAck{PoolHandle: msg.PoolHandle, ID: msg.ID})
		case *wire.RegistrationResponse:
			if !msg.Reject {
				close(c.reg)
			}
		case *wire.HandleResolutionResponse:
			answered.Add(1)
		}
	}
}
