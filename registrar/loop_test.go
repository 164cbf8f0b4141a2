package registrar

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rserpool/rserpool/wire"
)

// loopRig runs a loop in a synctest bubble with in-memory connections.
type loopRig struct {
	t       *testing.T
	l       *loop
	stop    chan struct{}
	done    chan struct{}
	changes []Change
}

func newRig(t *testing.T, cfg Config) *loopRig {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r := &loopRig{t: t, stop: make(chan struct{}), done: make(chan struct{})}
	r.l = newLoop(0x42, cfg, testLogger(t), m, func(c Change) { r.changes = append(r.changes, c) })
	go func() { defer close(r.done); r.l.run(r.stop) }()
	t.Cleanup(func() { close(r.stop); <-r.done })
	return r
}

func memConn() *conn {
	c := &conn{done: make(chan struct{}),
		remote: []netip.Addr{loopback},
		asap:   wire.Transport{Type: wire.TransportTCP, Port: 5000, Addrs: []netip.Addr{loopback}}}
	c.q.init(1<<20, nil)
	return c
}

func (r *loopRig) in(c *conn, m wire.Message) {
	r.l.events <- evMsg{c, m}
	synctest.Wait()
}

// out returns the messages queued on c so far.
func (r *loopRig) out(c *conn) []wire.Message {
	synctest.Wait()
	var ms []wire.Message
	for _, b := range c.q.take(nil) {
		c.q.done(len(b))
		m, err := wire.ParseASAP(b)
		if err != nil {
			r.t.Fatalf("loop sent undecodable message: %v", err)
		}
		ms = append(ms, m)
	}
	return ms
}

func (r *loopRig) elements() int {
	n := make(chan int, 1)
	r.l.events <- evFunc{func(l *loop) { n <- l.hs.NumElements() }}
	return <-n
}

func countKA(ms []wire.Message) int {
	n := 0
	for _, m := range ms {
		if _, ok := m.(*wire.EndpointKeepAlive); ok {
			n++
		}
	}
	return n
}

func TestKeepAliveTimersVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig() // 5 s interval, 5 s timeout
		r := newRig(t, cfg)
		c := memConn()
		r.in(c, regMsg("P", 9, 7000, wire.PolicyRoundRobin))
		if ms := r.out(c); len(ms) != 1 {
			t.Fatalf("after registration: %v", ms)
		}
		time.Sleep(4999 * time.Millisecond)
		if n := countKA(r.out(c)); n != 0 {
			t.Fatalf("keep-alive before the interval")
		}
		time.Sleep(time.Millisecond)
		ms := r.out(c)
		if countKA(ms) != 1 {
			t.Fatalf("no keep-alive at the interval: %v", ms)
		}
		// Ack after 3 s: the next keep-alive comes 5 s after the ack.
		time.Sleep(3 * time.Second)
		r.in(c, &wire.EndpointKeepAliveAck{PoolHandle: "P", ID: 9})
		time.Sleep(4999 * time.Millisecond)
		if countKA(r.out(c)) != 0 {
			t.Fatal("keep-alive earlier than interval after the ack")
		}
		time.Sleep(time.Millisecond)
		if countKA(r.out(c)) != 1 {
			t.Fatal("no keep-alive one interval after the ack")
		}
		// No ack: removed exactly at the timeout.
		time.Sleep(4999 * time.Millisecond)
		synctest.Wait()
		if r.elements() != 1 {
			t.Fatal("removed before the timeout")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if r.elements() != 0 {
			t.Fatal("not removed at the timeout")
		}
		if len(r.changes) != 2 || r.changes[1].Action != wire.ActionDelPE || r.changes[1].Element.ID != 9 {
			t.Fatalf("changes %+v", r.changes)
		}
	})
}

func TestReRegistrationRestartsKeepAliveCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, DefaultConfig())
		c := memConn()
		r.in(c, regMsg("P", 1, 7000, wire.PolicyRoundRobin))
		time.Sleep(4 * time.Second)
		r.in(c, regMsg("P", 1, 7000, wire.PolicyRoundRobin))
		time.Sleep(4 * time.Second)
		if countKA(r.out(c)) != 0 {
			t.Fatal("re-registration did not restart the keep-alive cycle")
		}
		time.Sleep(time.Second)
		if countKA(r.out(c)) != 1 {
			t.Fatal("no keep-alive after the restarted cycle")
		}
	})
}

func TestExpireOwnedByLife(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Registration.ExpireOwned = true
		cfg.Timers.KeepAliveInterval = time.Hour
		r := newRig(t, cfg)
		c := memConn()
		m := regMsg("P", 1, 7000, wire.PolicyRoundRobin)
		m.Element.RegistrationLife = 2500 // ms
		r.in(c, m)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if r.elements() != 1 {
			t.Fatal("expired early")
		}
		time.Sleep(1500 * time.Millisecond) // next check after the life
		synctest.Wait()
		if r.elements() != 0 {
			t.Fatal("not expired by its registration life")
		}
	})
}

func TestConnectionLossGraceWhenNotRemoving(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Registration.RemoveOnConnectionLoss = false
		r := newRig(t, cfg)
		c1, c2 := memConn(), memConn()
		r.in(c1, regMsg("P", 1, 7000, wire.PolicyRoundRobin))
		r.in(c1, regMsg("P", 2, 7000, wire.PolicyRoundRobin))
		r.l.events <- evClosed{c1}
		time.Sleep(time.Second)
		r.in(c2, regMsg("P", 1, 7000, wire.PolicyRoundRobin)) // PE 1 comes back in time
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if n := r.elements(); n != 1 {
			t.Fatalf("%d PEs after the grace period, want only the re-registered one", n)
		}
	})
}

func TestUnreachableCountIsPerPE(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Registration.UnreachableThreshold = 2
		r := newRig(t, cfg)
		c := memConn()
		r.in(c, regMsg("P", 1, 7000, wire.PolicyRoundRobin))
		r.in(c, regMsg("P", 2, 7000, wire.PolicyRoundRobin))
		r.in(c, &wire.EndpointUnreachable{PoolHandle: "P", ID: 1})
		r.in(c, &wire.EndpointUnreachable{PoolHandle: "P", ID: 2})
		if r.elements() != 2 {
			t.Fatal("one report each removed a PE")
		}
		r.in(c, &wire.EndpointUnreachable{PoolHandle: "P", ID: 1})
		if r.elements() != 1 {
			t.Fatal("second report for PE 1 did not remove it")
		}
	})
}
