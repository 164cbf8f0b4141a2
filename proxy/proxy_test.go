package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rserpool/rserpool/internal/blackhole"
	"github.com/rserpool/rserpool/proxy"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/pucache/pucachetest"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if name := os.Getenv(backendEnv); name != "" {
		runBackendProcess(name)
		return
	}
	goleak.VerifyTestMain(m)
}

// backend is a line service on 127.0.0.1 that answers "<name>:<line>".
type backend struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   map[net.Conn]struct{}
	// serve, if set, replaces the line service.
	serve func(net.Conn)
	// bh, if valid, is the address of a black hole standing in for it.
	bh netip.AddrPort
}

func startBackend(t *testing.T, name string, serve func(net.Conn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, ln: ln, cs: map[net.Conn]struct{}{}, serve: serve}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.cs[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer func() { b.mu.Lock(); delete(b.cs, c); b.mu.Unlock(); c.Close() }()
				if b.serve != nil {
					b.serve(c)
					return
				}
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := io.WriteString(c, b.name+":"+sc.Text()+"\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(b.stop)
	return b
}

// stop kills the backend: listener and connections closed.
func (b *backend) stop() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.cs {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *backend) addr() netip.AddrPort {
	if b.bh.IsValid() {
		return b.bh
	}
	return b.ln.Addr().(*net.TCPAddr).AddrPort()
}

type env struct {
	reg   *pucachetest.Registrar
	cache *pucache.Cache
	prom  *prometheus.Registry
	p     *proxy.Proxy
}

func setup(t *testing.T, pol wire.PolicyType, backends []*backend, listeners ...proxy.ListenerConfig) *env {
	t.Helper()
	r := pucachetest.Start(t)
	var pes []wire.PoolElement
	for i, b := range backends {
		pes = append(pes, pucachetest.PE(uint32(i+1), b.addr(), pol, uint32(i+1)))
	}
	r.SetPool("P", pol, pes...)
	c := startCache(t, r.Addr())
	for i := range listeners {
		if listeners[i].Listen.IsZero() {
			listeners[i].Listen = transport.MustParseAddr("127.0.0.1:0")
		}
		if listeners[i].Pool == "" {
			listeners[i].Pool = "P"
		}
		if listeners[i].Engine == "" {
			listeners[i].Engine = engineOf(t)
		}
	}
	reg := prometheus.NewRegistry()
	p, err := proxy.New(&proxy.Config{Listeners: listeners}, proxy.Options{Cache: c, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &env{reg: r, cache: c, prom: reg, p: p}
}

// startCache starts a pool-user cache of the registrar at reg, closed with
// the test.
func startCache(t testing.TB, reg transport.Addr) *pucache.Cache {
	t.Helper()
	c, err := pucache.New(pucache.Config{Registrars: []transport.Addr{reg}}, pucache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) addr(t *testing.T, listen transport.Addr) string {
	a := e.p.Addr(listen)
	if a == nil {
		t.Fatalf("no listener %q", listen)
	}
	return a.String()
}

// ask sends one line over a new connection and returns the answer line.
func ask(t *testing.T, addr, line string) (string, error) {
	t.Helper()
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

func testRoundRobinThroughProxy(t *testing.T) {
	bs := []*backend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)}
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0")})
	addr := e.addr(t, transport.MustParseAddr("127.0.0.1:0"))
	counts := map[string]int{}
	for i := range 30 {
		got, err := ask(t, addr, "hi")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		counts[got]++
	}
	for _, n := range []string{"a:hi", "b:hi", "c:hi"} {
		if counts[n] != 10 {
			t.Fatalf("counts = %v, want 10 each", counts)
		}
	}
	if v := testutil.ToFloat64(mustVec(t, e.prom, "rserpool_proxy_connections_total", "result", "ok")); v != 30 {
		t.Fatalf("ok connections = %v", v)
	}
	// Bytes are counted when a connection ends: wait until all handlers finished.
	waitFor(t, func() bool { return e.p.Active() == 0 })
	if v := testutil.ToFloat64(mustVec(t, e.prom, "rserpool_proxy_bytes_total", "direction", "to_backend")); v != 30*3 {
		t.Fatalf("bytes to backend = %v, want 90", v)
	}
}

// A PE that drops SYNs costs a client at most the hedge delay, never the
// connect timeout: the next PE is tried alongside it and wins; the black
// hole is reported only once its own attempt timed out.
func testHedgedConnectPastBlackHole(t *testing.T) {
	bs := []*backend{{name: "hole", bh: blackhole.Listen(t)}, startBackend(t, "b", nil)}
	const connectTimeout = 2 * time.Second
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{ConnectTimeout: connectTimeout})
	addr := e.addr(t, transport.MustParseAddr("127.0.0.1:0"))
	start := time.Now()
	for i := range 10 {
		got, err := ask(t, addr, "x")
		if err != nil || got != "b:x" {
			t.Fatalf("request %d: %q, %v", i, got, err)
		}
	}
	if d := time.Since(start); d >= connectTimeout {
		t.Fatalf("10 connections took %v: some waited for the black hole's connect timeout (%v)", d, connectTimeout)
	}
	e.reg.WaitFor(t, 2*connectTimeout, "report of the black hole", func() bool {
		rs := e.reg.Reports()
		return len(rs) == 1 && rs[0].ID == 1
	})
}

func testConnectTimeFailoverZeroClientErrors(t *testing.T) {
	bs := []*backend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)}
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0")})
	addr := e.addr(t, transport.MustParseAddr("127.0.0.1:0"))
	if _, err := ask(t, addr, "warm"); err != nil {
		t.Fatal(err)
	}
	bs[1].stop() // PE 2 dies
	for i := range 60 {
		got, err := ask(t, addr, "x")
		if err != nil {
			t.Fatalf("client connection %d failed: %v", i, err)
		}
		if got == "b:x" {
			t.Fatalf("dead backend answered")
		}
	}
	e.reg.WaitFor(t, 5*time.Second, "report of PE 2", func() bool {
		rs := e.reg.Reports()
		return len(rs) >= 1 && rs[0].ID == 2
	})
	if v := testutil.ToFloat64(mustVec(t, e.prom, "rserpool_proxy_failovers_total", "listener", "127.0.0.1:0")); v < 1 {
		t.Fatalf("failovers = %v", v)
	}
}

func testMaxConnectionsRefusesQuickly(t *testing.T) {
	bs := []*backend{startBackend(t, "a", nil)}
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0"), MaxConnections: 1})
	addr := e.addr(t, transport.MustParseAddr("127.0.0.1:0"))
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	io.WriteString(held, "one\n")
	if s, err := bufio.NewReader(held).ReadString('\n'); err != nil || s != "a:one\n" {
		t.Fatalf("%q %v", s, err)
	}
	start := time.Now()
	_, err = ask(t, addr, "two")
	if err == nil {
		t.Fatal("second connection served beyond max_connections=1")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("refusal took %v", d)
	}
	if v := testutil.ToFloat64(mustVec(t, e.prom, "rserpool_proxy_connections_total", "result", "refused")); v != 1 {
		t.Fatalf("refused = %v", v)
	}
}

func testHalfClosePropagates(t *testing.T) {
	// The backend reads everything until EOF, then answers with the byte
	// count and closes.
	b := startBackend(t, "a", func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		io.WriteString(c, strings.Repeat("z", int(n)))
	})
	e := setup(t, wire.PolicyRoundRobin, []*backend{b}, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0"), IdleTimeout: 5 * time.Second})
	// A small request and its half-close may both arrive before the PE is
	// connected; a large one passes through the bulk path.
	for _, size := range []int{10, 100000} {
		c, err := net.Dial("tcp", e.addr(t, transport.MustParseAddr("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, strings.Repeat("y", size))
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || len(got) != size {
			t.Fatalf("%d bytes sent: read %d bytes, %v", size, len(got), err)
		}
	}
}

func testIdleTimeout(t *testing.T) {
	bs := []*backend{startBackend(t, "a", nil)}
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0"), IdleTimeout: 100 * time.Millisecond})
	c, err := net.Dial("tcp", e.addr(t, transport.MustParseAddr("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// Traffic within the window keeps it open.
	r := bufio.NewReader(c)
	for range 3 {
		io.WriteString(c, "k\n")
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("read data on an idle connection")
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Fatalf("idle close after %v, want between 100ms and ~200ms", d)
	}
}

func testProxyProtocol(t *testing.T) {
	for _, v := range []string{"v1", "v2"} {
		t.Run(v, func(t *testing.T) {
			hdr := make(chan []byte, 1)
			b := startBackend(t, "a", func(c net.Conn) {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 28)
				if v == "v1" {
					s, _ := bufio.NewReader(c).ReadString('\n')
					hdr <- []byte(s)
				} else {
					io.ReadFull(c, buf)
					hdr <- buf
				}
				io.WriteString(c, "ok\n")
			})
			e := setup(t, wire.PolicyRoundRobin, []*backend{b}, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0"), ProxyProtocol: v})
			c, err := net.Dial("tcp", e.addr(t, transport.MustParseAddr("127.0.0.1:0")))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			src := c.LocalAddr().(*net.TCPAddr).AddrPort()
			dst := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			got := <-hdr
			if v == "v1" {
				want := "PROXY TCP4 127.0.0.1 127.0.0.1 " + itoa(src.Port()) + " " + itoa(dst.Port()) + "\r\n"
				if string(got) != want {
					t.Fatalf("header %q, want %q", got, want)
				}
				return
			}
			want := append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01"),
				byte(src.Port()>>8), byte(src.Port()), byte(dst.Port()>>8), byte(dst.Port()))
			if string(got) != string(want) {
				t.Fatalf("header % x, want % x", got, want)
			}
		})
	}
}

func testReplayThroughProxy(t *testing.T) {
	dropper := startBackend(t, "a", func(c net.Conn) { bufio.NewReader(c).ReadString('\n') })
	good := startBackend(t, "b", nil)
	e := setup(t, wire.PolicyRoundRobin, []*backend{dropper, good},
		proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0"), ReplayBuffer: 4096})
	// First connection goes to PE 1 (the dropper) by round robin; the
	// request is replayed to PE 2 and answered.
	got, err := ask(t, e.addr(t, transport.MustParseAddr("127.0.0.1:0")), "GET /")
	if err != nil || got != "b:GET /" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func testShutdownDrains(t *testing.T) {
	bs := []*backend{startBackend(t, "a", nil)}
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0")})
	addr := e.addr(t, transport.MustParseAddr("127.0.0.1:0"))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	io.WriteString(c, "1\n")
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.p.Shutdown(context.Background()) }()
	// New connections are refused once the listener closed. (A probe that
	// got in before is closed at once, so that it does not hold the drain.)
	waitFor(t, func() bool {
		pc, err := net.Dial("tcp", addr)
		if err == nil {
			pc.Close()
		}
		return err != nil
	})
	// The established one still works.
	io.WriteString(c, "2\n")
	if s, err := r.ReadString('\n'); err != nil || s != "a:2\n" {
		t.Fatalf("during drain: %q %v", s, err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a connection open", err)
	default:
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
}

func testShutdownDrainTimeoutCloses(t *testing.T) {
	bs := []*backend{startBackend(t, "a", nil)}
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0")})
	c, err := net.Dial("tcp", e.addr(t, transport.MustParseAddr("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "1\n")
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection still open after the drain timeout")
	}
}

func testReloadAddsListenerKeepsConnections(t *testing.T) {
	bs := []*backend{startBackend(t, "a", nil)}
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0"), Name: "one"})
	c, err := net.Dial("tcp", e.addr(t, transport.MustParseAddr("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	io.WriteString(c, "1\n")
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	err = e.p.Reload(&proxy.Config{Listeners: []proxy.ListenerConfig{
		{Listen: transport.MustParseAddr("127.0.0.1:0"), Name: "one", Pool: "P"},
		{Listen: transport.MustParseAddr("[::1]:0"), Name: "two", Pool: "P"},
	}})
	if err != nil {
		// No IPv6 loopback here: add a second IPv4 listener instead.
		err = e.p.Reload(&proxy.Config{Listeners: []proxy.ListenerConfig{
			{Listen: transport.MustParseAddr("127.0.0.1:0"), Name: "one", Pool: "P"},
			{Listen: transport.MustParseAddr("127.0.0.2:0"), Name: "two", Pool: "P"},
		}})
	}
	if err != nil {
		t.Fatal(err)
	}
	var second net.Addr
	for _, a := range []string{"[::1]:0", "127.0.0.2:0"} {
		if x := e.p.Addr(transport.MustParseAddr(a)); x != nil {
			second = x
		}
	}
	if got, err := ask(t, second.String(), "new"); err != nil || got != "a:new" {
		t.Fatalf("new listener: %q %v", got, err)
	}
	io.WriteString(c, "2\n")
	if s, err := r.ReadString('\n'); err != nil || s != "a:2\n" {
		t.Fatalf("established connection after reload: %q %v", s, err)
	}
}

func testNoBackendResetsClient(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := &backend{ln: ln}
	dead.ln.Close()
	e := setup(t, wire.PolicyRoundRobin, []*backend{dead}, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0")})
	if _, err := ask(t, e.addr(t, transport.MustParseAddr("127.0.0.1:0")), "x"); err == nil {
		t.Fatal("served without a live PE")
	}
	waitFor(t, func() bool {
		return testutil.ToFloat64(mustVec(t, e.prom, "rserpool_proxy_connections_total", "result", "no_backend")) == 1
	})
}

// The tests of the proxy's behaviour run on both relay engines.
func TestRoundRobinThroughProxy(t *testing.T)     { forEngines(t, testRoundRobinThroughProxy) }
func TestHedgedConnectPastBlackHole(t *testing.T) { forEngines(t, testHedgedConnectPastBlackHole) }
func TestConnectTimeFailoverZeroClientErrors(t *testing.T) {
	forEngines(t, testConnectTimeFailoverZeroClientErrors)
}
func TestMaxConnectionsRefusesQuickly(t *testing.T) { forEngines(t, testMaxConnectionsRefusesQuickly) }
func TestHalfClosePropagates(t *testing.T)          { forEngines(t, testHalfClosePropagates) }
func TestIdleTimeout(t *testing.T)                  { forEngines(t, testIdleTimeout) }
func TestProxyProtocol(t *testing.T)                { forEngines(t, testProxyProtocol) }
func TestReplayThroughProxy(t *testing.T)           { forEngines(t, testReplayThroughProxy) }
func TestShutdownDrains(t *testing.T)               { forEngines(t, testShutdownDrains) }
func TestShutdownDrainTimeoutCloses(t *testing.T)   { forEngines(t, testShutdownDrainTimeoutCloses) }
func TestReloadAddsListenerKeepsConnections(t *testing.T) {
	forEngines(t, testReloadAddsListenerKeepsConnections)
}
func TestNoBackendResetsClient(t *testing.T) { forEngines(t, testNoBackendResetsClient) }

// forEngines runs test once per relay engine, as subtests named after it
// (setup configures the listeners by that name).
func forEngines(t *testing.T, test func(*testing.T)) {
	for _, e := range []string{proxy.EngineLoop, proxy.EngineGoroutine} {
		t.Run(e, test)
	}
}

// engineOf returns the engine of a test run by forEngines ("" otherwise).
func engineOf(t testing.TB) string {
	for _, e := range []string{proxy.EngineLoop, proxy.EngineGoroutine} {
		if strings.HasSuffix(t.Name(), "/"+e) || strings.Contains(t.Name(), "/"+e+"/") {
			return e
		}
	}
	return ""
}

// waitFor polls cond (state without an event to wait on) for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mustVec sums the samples of a metric whose label has value.
func mustVec(t *testing.T, reg *prometheus.Registry, name, label, value string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	g.Set(sum)
	return g
}

func itoa(p uint16) string {
	return strings.TrimPrefix(netip.AddrPortFrom(netip.IPv4Unspecified(), p).String(), "0.0.0.0:")
}

// Helpers shared by the benchmarks (testing.B flavours of setup).

func startRegistrarB(b *testing.B) *pucachetest.Registrar { return pucachetest.Start(b) }

func peB(be *backend) wire.PoolElement {
	return pucachetest.PE(1, be.addr(), wire.PolicyRoundRobin, 0)
}

func TestSCTPListener(t *testing.T) {
	c, err := pucache.New(pucache.Config{}, pucache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(&proxy.Config{Listeners: []proxy.ListenerConfig{{Listen: transport.MustParseAddr("sctp://127.0.0.1:0"), Pool: "P"}}}, proxy.Options{Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Start()
	if ok, _ := transport.SCTPAvailable(); ok {
		if err != nil {
			t.Fatalf("kernel has SCTP but the listener failed: %v", err)
		}
		if p.Addr(transport.MustParseAddr("sctp://127.0.0.1:0")) == nil {
			t.Fatal("no bound SCTP address")
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "sctp://127.0.0.1:0") {
		t.Fatalf("without kernel SCTP: err = %v, want an error naming the listener", err)
	}
}

// A listener that cannot bind fails Start, and nothing stays bound or
// running (goleak checks the event loops at the end).
func TestStartFailsCleanly(t *testing.T) { forEngines(t, testStartFailsCleanly) }

func testStartFailsCleanly(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	r := pucachetest.Start(t)
	c := startCache(t, r.Addr())
	free := transport.MustParseAddr("127.0.0.1:0")
	busy := transport.MustParseAddr(taken.Addr().String())
	p, err := proxy.New(&proxy.Config{Listeners: []proxy.ListenerConfig{
		{Listen: free, Pool: "P", Engine: engineOf(t)},
		{Listen: busy, Pool: "P", Engine: engineOf(t)},
	}}, proxy.Options{Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err == nil || !strings.Contains(err.Error(), busy.ShortString()) {
		t.Fatalf("Start = %v, want an error naming %s", err, busy.ShortString())
	}
	if a := p.Addr(free); a != nil {
		if c, err := net.Dial("tcp", a.String()); err == nil {
			c.Close()
			t.Fatalf("%s still accepts after Start failed", a)
		}
	}
	p.Close()
}

// Clients that misbehave (close at once, reset mid-request, send and never
// read, half-close and go) among normal ones: every connection ends and is
// accounted for, and nothing stays open (goleak checks the goroutines).
func TestClientChurn(t *testing.T) { forEngines(t, testClientChurn) }

func testClientChurn(t *testing.T) {
	bs := []*backend{startBackend(t, "a", nil), startBackend(t, "b", nil)}
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{})
	addr := e.addr(t, transport.MustParseAddr("127.0.0.1:0"))
	const clients, rounds = 8, 25
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range clients {
		wg.Go(func() {
			for k := range rounds {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				switch (i + k) % 5 {
				case 0: // close at once
				case 1: // reset after a request
					io.WriteString(c, "x\n")
					c.(*net.TCPConn).SetLinger(0)
				case 2: // send much, never read
					io.WriteString(c, strings.Repeat("y\n", 50000))
				case 3: // half-close and go
					io.WriteString(c, "z\n")
					c.(*net.TCPConn).CloseWrite()
				default: // a normal exchange
					io.WriteString(c, "ok\n")
					if s, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasSuffix(s, ":ok\n") {
						failed.Add(1)
					}
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d normal exchanges failed", n)
	}
	waitFor(t, func() bool { return e.p.Active() == 0 })
	var sum float64
	for _, r := range []string{"ok", "aborted", "no_backend", "refused"} {
		sum += testutil.ToFloat64(mustVec(t, e.prom, "rserpool_proxy_connections_total", "result", r))
	}
	if sum != clients*rounds {
		t.Fatalf("connections accounted for: %v, want %d", sum, clients*rounds)
	}
}

// A PE that speaks first (a banner, as SMTP or SSH servers send) reaches a
// client that has not sent anything.
func TestServerSpeaksFirst(t *testing.T) { forEngines(t, testServerSpeaksFirst) }

func testServerSpeaksFirst(t *testing.T) {
	b := startBackend(t, "a", func(c net.Conn) {
		io.WriteString(c, "220 hello\n")
		io.Copy(io.Discard, c)
	})
	e := setup(t, wire.PolicyRoundRobin, []*backend{b}, proxy.ListenerConfig{})
	for range 20 {
		c, err := net.Dial("tcp", e.addr(t, transport.MustParseAddr("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		s, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || s != "220 hello\n" {
			t.Fatalf("banner: %q, %v", s, err)
		}
	}
}
