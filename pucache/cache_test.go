package pucache_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/pucache/pucachetest"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ap(t testing.TB, port int) netip.AddrPort {
	t.Helper()
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
}

// deadPort returns a loopback port nothing listens on.
func deadPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// deadAddr returns a registrar address nothing listens on.
func deadAddr(t testing.TB) transport.Addr {
	return transport.AddrFrom(transport.SchemeTCP, ap(t, deadPort(t)))
}

func newCache(t testing.TB, cfg pucache.Config) *pucache.Cache {
	t.Helper()
	c, err := pucache.New(cfg, pucache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRoundRobinExactOverCycles(t *testing.T) {
	r := pucachetest.Start(t)
	// Listed in a scrambled order: selection must not depend on it.
	r.SetPool("P", wire.PolicyRoundRobin,
		pucachetest.PE(3, ap(t, 7003), wire.PolicyRoundRobin, 0),
		pucachetest.PE(1, ap(t, 7001), wire.PolicyRoundRobin, 0),
		pucachetest.PE(2, ap(t, 7002), wire.PolicyRoundRobin, 0))
	c := newCache(t, pucache.Config{Registrars: []transport.Addr{r.Addr()}})
	p := c.Pool("P")
	counts := map[uint32]int{}
	var seq []uint32
	for range 30 {
		e, err := p.Pick(ctxT(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		counts[e.ID]++
		seq = append(seq, e.ID)
	}
	for id := uint32(1); id <= 3; id++ {
		if counts[id] != 10 {
			t.Fatalf("PE %d picked %d times in 30, want exactly 10 (sequence %v)", id, counts[id], seq)
		}
	}
	for i := 3; i < len(seq); i++ {
		if seq[i] != seq[i-3] {
			t.Fatalf("sequence not periodic: %v", seq)
		}
	}
}

func TestWeightedPolicies(t *testing.T) {
	for _, pol := range []wire.PolicyType{wire.PolicyWeightedRoundRobin, wire.PolicyWeightedRandom} {
		t.Run(pol.Name(), func(t *testing.T) {
			r := pucachetest.Start(t)
			r.SetPool("W", pol,
				pucachetest.PE(1, ap(t, 7001), pol, 1),
				pucachetest.PE(2, ap(t, 7002), pol, 2),
				pucachetest.PE(3, ap(t, 7003), pol, 5))
			c := newCache(t, pucache.Config{Registrars: []transport.Addr{r.Addr()}})
			p := c.Pool("W")
			const n = 8000
			counts := map[uint32]int{}
			for range n {
				e, err := p.Pick(ctxT(t), nil)
				if err != nil {
					t.Fatal(err)
				}
				counts[e.ID]++
			}
			want := map[uint32]int{1: n / 8, 2: 2 * n / 8, 3: 5 * n / 8}
			for id, w := range want {
				tol := 0
				if pol == wire.PolicyWeightedRandom {
					tol = w / 8 // > 5 standard deviations
				}
				if d := counts[id] - w; d < -tol || d > tol {
					t.Errorf("PE %d: %d picks, want %d ± %d", id, counts[id], w, tol)
				}
			}
		})
	}
}

func TestConcurrentResolutionsCollapse(t *testing.T) {
	r := pucachetest.Start(t)
	r.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, ap(t, 7001), wire.PolicyRoundRobin, 0))
	r.SetDelay(200 * time.Millisecond)
	c := newCache(t, pucache.Config{Registrars: []transport.Addr{r.Addr()}})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Select(ctxT(t), "P")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := r.Resolutions("P"); got != 1 {
		t.Fatalf("registrar saw %d resolutions for 32 concurrent lookups, want 1", got)
	}
}

func TestUnknownPool(t *testing.T) {
	r := pucachetest.Start(t)
	c := newCache(t, pucache.Config{Registrars: []transport.Addr{r.Addr()}})
	_, err := c.Select(ctxT(t), "nope")
	if !errors.Is(err, pucache.ErrUnknownPool) {
		t.Fatalf("err = %v, want ErrUnknownPool", err)
	}
}

func TestHuntsToNextRegistrar(t *testing.T) {
	good := pucachetest.Start(t)
	good.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, ap(t, 7001), wire.PolicyRoundRobin, 0))
	silent := pucachetest.Start(t)
	silent.SetSilent(true)
	tests := []struct {
		name string
		regs []transport.Addr
	}{
		{"refused", []transport.Addr{deadAddr(t), good.Addr()}},
		{"silent", []transport.Addr{silent.Addr(), good.Addr()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, pucache.Config{Registrars: tc.regs, RequestTimeout: 200 * time.Millisecond})
			e, err := c.Select(ctxT(t), "P")
			if err != nil {
				t.Fatal(err)
			}
			if e.ID != 1 || e.Addr != "127.0.0.1:7001" || e.Network != "tcp" {
				t.Fatalf("got %+v", e)
			}
		})
	}
}

func TestNoRegistrar(t *testing.T) {
	c := newCache(t, pucache.Config{Registrars: []transport.Addr{deadAddr(t)}})
	if _, err := c.Select(ctxT(t), "P"); !errors.Is(err, pucache.ErrNoRegistrar) {
		t.Fatalf("err = %v, want ErrNoRegistrar", err)
	}
}

func TestReportUnreachable(t *testing.T) {
	r := pucachetest.Start(t)
	r.SetPool("P", wire.PolicyRoundRobin,
		pucachetest.PE(1, ap(t, 7001), wire.PolicyRoundRobin, 0),
		pucachetest.PE(2, ap(t, 7002), wire.PolicyRoundRobin, 0))
	reg := prometheus.NewRegistry()
	c, err := pucache.New(pucache.Config{Registrars: []transport.Addr{r.Addr()}, StaleTimeout: 100 * time.Millisecond, HoldDown: time.Hour},
		pucache.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p := c.Pool("P")
	if _, err := p.Pick(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	p.ReportUnreachable(1)
	p.ReportUnreachable(1) // held down: not sent twice
	for range 10 {
		e, err := p.Pick(ctxT(t), nil)
		if err != nil || e.ID != 2 {
			t.Fatalf("after report got %+v, %v; want PE 2 only", e, err)
		}
	}
	r.WaitFor(t, 5*time.Second, "endpoint unreachable", func() bool { return len(r.Reports()) >= 1 })
	if got := r.Reports()[0]; got.PoolHandle != "P" || got.ID != 1 {
		t.Fatalf("report = %+v", got)
	}
	// A background refresh (the registrar still lists PE 1) must not bring
	// it back during its hold-down.
	n := r.Resolutions("P")
	r.WaitFor(t, 5*time.Second, "two background refreshes", func() bool { return r.Resolutions("P") >= n+2 })
	for range 10 {
		if e, _ := p.Pick(ctxT(t), nil); e.ID != 2 {
			t.Fatalf("held-down PE came back: %+v", e)
		}
	}
	if len(r.Reports()) != 1 {
		t.Fatalf("reports = %v, want exactly one", r.Reports())
	}
	if v := testutil.ToFloat64(mustCounter(t, reg, "rserpool_pu_unreachable_reports_total")); v != 1 {
		t.Fatalf("reports metric = %v, want 1", v)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
			c.Add(sum)
			return c
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}

func TestBackgroundRefreshAndStaleServing(t *testing.T) {
	r := pucachetest.Start(t)
	r.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, ap(t, 7001), wire.PolicyRoundRobin, 0))
	c := newCache(t, pucache.Config{Registrars: []transport.Addr{r.Addr()}, StaleTimeout: 100 * time.Millisecond})
	p := c.Pool("P")
	if _, err := p.Pick(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	// The pool changes at the registrar; the cache learns it without a lookup.
	r.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(2, ap(t, 7002), wire.PolicyRoundRobin, 0))
	n := r.Resolutions("P")
	r.WaitFor(t, 5*time.Second, "background refresh", func() bool { return r.Resolutions("P") >= n+2 })
	if e, err := p.Pick(ctxT(t), nil); err != nil || e.ID != 2 {
		t.Fatalf("after refresh: %+v, %v", e, err)
	}
	// The registrar dies: selections keep working from the stale entry and
	// never wait for the dead registrar.
	r.Stop()
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		e, err := p.Pick(ctx, nil)
		cancel()
		if err != nil || e.ID != 2 {
			t.Fatalf("with registrar down: %+v, %v", e, err)
		}
	}
}

func TestPickExclude(t *testing.T) {
	r := pucachetest.Start(t)
	r.SetPool("P", wire.PolicyRoundRobin,
		pucachetest.PE(1, ap(t, 7001), wire.PolicyRoundRobin, 0),
		pucachetest.PE(2, ap(t, 7002), wire.PolicyRoundRobin, 0))
	c := newCache(t, pucache.Config{Registrars: []transport.Addr{r.Addr()}})
	p := c.Pool("P")
	for range 4 {
		e, err := p.Pick(ctxT(t), []uint32{1})
		if err != nil || e.ID != 2 {
			t.Fatalf("%+v %v", e, err)
		}
	}
	if _, err := p.Pick(ctxT(t), []uint32{1, 2}); !errors.Is(err, pucache.ErrNoElements) {
		t.Fatalf("err = %v, want ErrNoElements", err)
	}
}

func TestDialFailsOver(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	live := ln.Addr().(*net.TCPAddr).Port
	r := pucachetest.Start(t)
	r.SetPool("P", wire.PolicyRoundRobin,
		pucachetest.PE(1, ap(t, deadPort(t)), wire.PolicyRoundRobin, 0),
		pucachetest.PE(2, ap(t, live), wire.PolicyRoundRobin, 0))
	c := newCache(t, pucache.Config{Registrars: []transport.Addr{r.Addr()}})
	for range 3 {
		conn, err := c.Dial(ctxT(t), "P")
		if err != nil {
			t.Fatal(err)
		}
		if got := conn.RemoteAddr().(*net.TCPAddr).Port; got != live {
			t.Fatalf("connected to %d, want %d", got, live)
		}
		conn.Close()
	}
	r.WaitFor(t, 5*time.Second, "report of the dead PE", func() bool { return len(r.Reports()) == 1 })
	if r.Reports()[0].ID != 1 {
		t.Fatalf("reported %+v", r.Reports())
	}
}

func TestAnnounceLearnsRegistrar(t *testing.T) {
	r := pucachetest.Start(t)
	r.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, ap(t, 7001), wire.PolicyRoundRobin, 0))
	c := newCache(t, pucache.Config{AnnounceLifetime: time.Hour})
	if _, err := c.Select(ctxT(t), "P"); !errors.Is(err, pucache.ErrNoRegistrar) {
		t.Fatalf("without registrars: %v", err)
	}
	addr := netip.MustParseAddrPort(r.Addr().HostPort())
	c.HandleAnnounce(&wire.ServerAnnounce{ServerID: 7, Transports: []wire.Transport{{
		Type: wire.TransportTCP, Port: addr.Port(), Addrs: []netip.Addr{addr.Addr()}}}}, netip.MustParseAddrPort("127.0.0.1:3863"))
	if got := c.Registrars(); len(got) != 1 || got[0] != r.Addr() {
		t.Fatalf("registrars = %v", got)
	}
	if _, err := c.Select(ctxT(t), "P"); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestNegativeResultIsCachedBriefly(t *testing.T) {
	r := pucachetest.Start(t)
	c := newCache(t, pucache.Config{Registrars: []transport.Addr{r.Addr()}})
	for range 50 {
		if _, err := c.Select(ctxT(t), "missing"); !errors.Is(err, pucache.ErrUnknownPool) {
			t.Fatalf("err = %v", err)
		}
	}
	// 50 back-to-back lookups within the negative TTL: far fewer requests.
	if n := r.Resolutions("missing"); n > 5 {
		t.Fatalf("registrar saw %d resolutions for 50 lookups of a missing pool", n)
	}
	// An explicit Refresh still asks (failover uses it after every PE failed).
	n := r.Resolutions("missing")
	c.Pool("missing").Refresh(ctxT(t))
	if r.Resolutions("missing") != n+1 {
		t.Fatal("Refresh did not ask the registrar")
	}
}

func TestListenAnnounces(t *testing.T) {
	r := pucachetest.Start(t)
	r.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, ap(t, 7001), wire.PolicyRoundRobin, 0))
	u, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := u.LocalAddr().(*net.UDPAddr).Port
	u.Close()
	group := "239.0.0.77:" + itoa(port)
	c, err := pucache.New(pucache.Config{AnnounceLifetime: time.Hour, AnnounceGroup: group, AnnounceInterface: "lo"}, pucache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(); err != nil {
		t.Skipf("no multicast on the loopback interface here: %v", err)
	}
	tx, err := transport.NewMulticastSender(group, "lo", 1, true)
	if err != nil {
		t.Skipf("no multicast sending on lo here: %v", err)
	}
	defer tx.Close()
	addr := netip.MustParseAddrPort(r.Addr().HostPort())
	msg, err := (&wire.ServerAnnounce{ServerID: 9, Transports: []wire.Transport{{
		Type: wire.TransportTCP, Port: addr.Port(), Addrs: []netip.Addr{addr.Addr()}}}}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(c.Registrars()) == 0 {
		if time.Now().After(deadline) {
			t.Skip("multicast datagrams are not delivered on lo here")
		}
		if err := tx.Send(msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // announces are periodic by nature
	}
	if got := c.Registrars(); got[0] != r.Addr() {
		t.Fatalf("registrars = %v", got)
	}
	if _, err := c.Select(ctxT(t), "P"); err != nil {
		t.Fatal(err)
	}
}

// An element carries its user transport's Transport Use, so that a pool user
// knows whether the PE runs an ASAP control channel.
func TestElementTransportUse(t *testing.T) {
	r := pucachetest.Start(t)
	ctl := pucachetest.PE(1, ap(t, 7001), wire.PolicyRoundRobin, 0)
	ctl.User.Use = wire.UseDataAndControl
	r.SetPool("P", wire.PolicyRoundRobin, ctl, pucachetest.PE(2, ap(t, 7002), wire.PolicyRoundRobin, 0))
	c := newCache(t, pucache.Config{Registrars: []transport.Addr{r.Addr()}})
	if _, err := c.Resolve(ctxT(t), "P"); err != nil {
		t.Fatal(err)
	}
	got := map[uint32]wire.TransportUse{}
	for _, e := range c.Pool("P").Elements() {
		got[e.ID] = e.Use
	}
	if got[1] != wire.UseDataAndControl || got[2] != wire.UseData || len(got) != 2 {
		t.Fatalf("uses = %v, want 1: data plus control, 2: data", got)
	}
}
