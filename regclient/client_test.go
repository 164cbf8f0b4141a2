package regclient_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rserpool/rserpool/pucache/pucachetest"
	"github.com/rserpool/rserpool/regclient"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func start(t *testing.T, cfg regclient.Config) *regclient.Client {
	t.Helper()
	c := regclient.New(cfg)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func deadAddr(t *testing.T) transport.Addr {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := transport.AddrFromNet(transport.SchemeTCP, ln.Addr())
	ln.Close()
	return a
}

// TestClientResolvesAndReports: requests over a real registrar connection,
// the first registrar refusing; a one-way message arrives too.
func TestClientResolvesAndReports(t *testing.T) {
	r := pucachetest.Start(t)
	r.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, netip.MustParseAddrPort("127.0.0.1:7001"), wire.PolicyRoundRobin, 0))
	c := start(t, regclient.Config{Registrars: []transport.Addr{deadAddr(t), r.Addr()}})
	m, err := c.Request(ctxT(t), &wire.HandleResolution{PoolHandle: "P"})
	if err != nil {
		t.Fatal(err)
	}
	if hr := m.(*wire.HandleResolutionResponse); len(hr.Elements) != 1 || hr.Elements[0].ID != 1 {
		t.Fatalf("response %+v", hr)
	}
	m, err = c.Request(ctxT(t), &wire.HandleResolution{PoolHandle: "missing"})
	if err != nil || m.(*wire.HandleResolutionResponse).Error == nil {
		t.Fatalf("missing pool: %v, %v", m, err)
	}
	if err := c.Send(ctxT(t), &wire.EndpointUnreachable{PoolHandle: "P", ID: 1}); err != nil {
		t.Fatal(err)
	}
	r.WaitFor(t, 5*time.Second, "report", func() bool { return len(r.Reports()) == 1 })
}

// TestClientReconnects: the registrar's connections are cut; the next
// request reconnects.
func TestClientReconnects(t *testing.T) {
	r := pucachetest.Start(t)
	r.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, netip.MustParseAddrPort("127.0.0.1:7001"), wire.PolicyRoundRobin, 0))
	addr := r.Addr()
	c := start(t, regclient.Config{Registrars: []transport.Addr{addr}, RetryInterval: 50 * time.Millisecond})
	if _, err := c.Request(ctxT(t), &wire.HandleResolution{PoolHandle: "P"}); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if _, err := c.Request(ctxT(t), &wire.HandleResolution{PoolHandle: "P"}); !errors.Is(err, regclient.ErrNoRegistrar) {
		t.Fatalf("registrar gone: %v, want ErrNoRegistrar", err)
	}
	r2 := pucachetest.StartAt(t, addr)
	r2.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, netip.MustParseAddrPort("127.0.0.1:7001"), wire.PolicyRoundRobin, 0))
	if _, err := c.Request(ctxT(t), &wire.HandleResolution{PoolHandle: "P"}); err != nil {
		t.Fatalf("after the registrar came back: %v", err)
	}
}

// TestClientSilentRegistrar: an unanswered request moves to the next
// registrar after T1; with none answering it fails after (1+2) × T1; a
// cancelled context ends the wait at once.
func TestClientSilentRegistrar(t *testing.T) {
	silent := pucachetest.Start(t)
	silent.SetSilent(true)
	good := pucachetest.Start(t)
	good.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, netip.MustParseAddrPort("127.0.0.1:7001"), wire.PolicyRoundRobin, 0))
	c := start(t, regclient.Config{Registrars: []transport.Addr{silent.Addr(), good.Addr()}, RequestTimeout: 200 * time.Millisecond, Parallel: 1})
	if _, err := c.Request(ctxT(t), &wire.HandleResolution{PoolHandle: "P"}); err != nil {
		t.Fatal(err)
	}
	only := start(t, regclient.Config{Registrars: []transport.Addr{silent.Addr()}, RequestTimeout: 100 * time.Millisecond})
	t0 := time.Now()
	if _, err := only.Request(ctxT(t), &wire.HandleResolution{PoolHandle: "P"}); !errors.Is(err, regclient.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("gave up after %v, before 3 × T1", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := only.Request(ctx, &wire.HandleResolution{PoolHandle: "P"})
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
}

// TestClientClose: Close fails waiting requests and stops everything;
// requests after Close fail at once.
func TestClientClose(t *testing.T) {
	silent := pucachetest.Start(t)
	silent.SetSilent(true)
	c := regclient.New(regclient.Config{Registrars: []transport.Addr{silent.Addr()}, RequestTimeout: time.Hour})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Request(context.Background(), &wire.HandleResolution{PoolHandle: "P"})
		errc <- err
	}()
	silent.WaitFor(t, 5*time.Second, "the request", func() bool { return silent.Resolutions("P") == 1 })
	c.Close()
	if err := <-errc; !errors.Is(err, regclient.ErrClosed) {
		t.Fatalf("pending request after Close: %v", err)
	}
	if _, err := c.Request(context.Background(), &wire.HandleResolution{PoolHandle: "P"}); !errors.Is(err, regclient.ErrClosed) {
		t.Fatalf("request after Close: %v", err)
	}
	c.Close()
	never := regclient.New(regclient.Config{})
	never.Close() // never started
	if err := never.Start(); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

// TestClientRegistrarNeverReads: a registrar that accepts and never reads
// cannot wedge the client: its send queue fills, the connection is given
// up, requests end in time, and the client keeps answering and closes.
func TestClientRegistrarNeverReads(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never read
		}
	}()
	defer func() {
		ln.Close()
		<-accepted
		for _, c := range held {
			c.Close()
		}
	}()
	a, _ := transport.AddrFromNet(transport.SchemeTCP, ln.Addr())
	c := start(t, regclient.Config{Registrars: []transport.Addr{a}, RequestTimeout: 500 * time.Millisecond, MaxRetransmit: -1})
	big := wire.PoolHandle(strings.Repeat("x", 30000))
	errc := make(chan error, 400)
	for range 400 {
		go func() {
			_, err := c.Request(ctxT(t), &wire.HandleResolution{PoolHandle: big})
			errc <- err
		}()
	}
	t0 := time.Now()
	for range 400 {
		if err := <-errc; err == nil {
			t.Fatal("a request was answered by a registrar that never reads")
		}
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("requests ended after %v", d)
	}
	if got := c.Registrars(); len(got) != 1 {
		t.Fatalf("Registrars = %v", got)
	}
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
}

// upRecorder is a Handler that records the registrars it was connected
// to, in order.
type upRecorder struct {
	regclient.NopHandler
	ups chan transport.Addr
}

func (u *upRecorder) Up(_ time.Time, a transport.Addr) { u.ups <- a }

// TestClientRebalance: the first registrar is down when the client starts,
// so it connects to the second; once the first serves and has answered the
// client's checks for Rebalance (plus jitter), the client moves back to it
// over the checked connection.
func TestClientRebalance(t *testing.T) {
	first := deadAddr(t)
	second := pucachetest.Start(t)
	h := &upRecorder{ups: make(chan transport.Addr, 8)}
	const rebalance = 400 * time.Millisecond
	c := start(t, regclient.Config{Registrars: []transport.Addr{first, second.Addr()}, Rebalance: rebalance,
		RebalanceProbe: "Probe", Handler: h})
	c.Do(func(time.Time) { c.Link().Want(true) })
	if a := <-h.ups; a != second.Addr() {
		t.Fatalf("connected to %v, want the second registrar", a)
	}
	back := pucachetest.StartAt(t, first)
	started := time.Now()
	select {
	case a := <-h.ups:
		if a != first {
			t.Fatalf("moved to %v, want the first registrar", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not move back to its first registrar")
	}
	took := time.Since(started)
	t.Logf("moved back %v after the first registrar came up (Rebalance %v)", took, rebalance)
	if took < rebalance {
		t.Fatalf("moved after %v, before the registrar answered for Rebalance", took)
	}
	if n := back.Resolutions("Probe"); n < 2 {
		t.Fatalf("%d checks answered by the first registrar, want at least 2", n)
	}
	if m, err := c.Request(ctxT(t), &wire.HandleResolution{PoolHandle: "Probe"}); err != nil || m == nil {
		t.Fatalf("request after the move: %v", err)
	}
	if n := second.Resolutions("Probe"); n != 0 {
		t.Fatalf("the second registrar got %d resolutions after the move", n)
	}
}
