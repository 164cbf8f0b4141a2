package registrar

import (
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// takenOver puts a PE owned by a dead peer into the handlespace and makes
// the loop adopt it, as after an ENRP takeover.
func takenOver(l *loop, id uint32, asap wire.Transport) {
	pe := regMsg("P", id, 7000, wire.PolicyRoundRobin).Element
	pe.HomeServer = 0x99
	pe.ASAP = asap
	now := time.Now()
	if _, _, err := l.hs.Register("P", pe, now); err != nil {
		panic(err)
	}
	l.hs.SetHome("P", id, l.id)
	l.adopt("P", id, now)
}

func TestTakenOverPEIsDialedOverSCTPOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig() // 5 s interval, 5 s timeout
		r := newRig(t, cfg)
		var mu sync.Mutex
		var dials []string
		var keys []peKey
		sctpT := wire.Transport{Type: wire.TransportSCTP, Port: 4711, Addrs: []netip.Addr{loopback}}
		r.l.events <- evFunc{func(l *loop) {
			l.dial = func(k peKey, addr string) bool {
				mu.Lock()
				defer mu.Unlock()
				dials = append(dials, addr)
				keys = append(keys, k)
				return true
			}
			takenOver(l, 1, sctpT)
			takenOver(l, 2, wire.Transport{Type: wire.TransportTCP, Port: 4711, Addrs: []netip.Addr{loopback}})
			takenOver(l, 3, wire.Transport{})
			// A second adoption while the first set-up is under way: no second dial.
			l.adopt("P", 1, time.Now())
		}}
		synctest.Wait()
		mu.Lock()
		if len(dials) != 1 || dials[0] != "sctp://127.0.0.1:4711" || keys[0] != (peKey{"P", 1}) {
			t.Fatalf("dials %v %v; want one to PE 1", dials, keys)
		}
		mu.Unlock()

		// The association comes up: the PE gets a Keep-Alive with H=1 and
		// its identifier on it, and its ack keeps it.
		c := memConn()
		r.l.events <- evDialed{peKey{"P", 1}, c}
		ms := r.out(c)
		if len(ms) != 1 {
			t.Fatalf("on the new association: %v", ms)
		}
		ka, ok := ms[0].(*wire.EndpointKeepAlive)
		if !ok || !ka.Home || !ka.HasID || ka.ID != 1 || ka.PoolHandle != "P" || ka.ServerID != 0x42 {
			t.Fatalf("sent %#v; want a home keep-alive for PE 1", ms[0])
		}
		r.in(c, &wire.EndpointKeepAliveAck{PoolHandle: "P", ID: 1})
		// The regular keep-alive follows on the same association.
		time.Sleep(cfg.Timers.KeepAliveInterval)
		if countKA(r.out(c)) != 1 {
			t.Fatal("no regular keep-alive on the dialed association")
		}
		r.in(c, &wire.EndpointKeepAliveAck{PoolHandle: "P", ID: 1})
		// PEs 2 and 3 (no SCTP ASAP Transport) go at interval + timeout;
		// PE 1 stays.
		time.Sleep(cfg.Timers.KeepAliveTimeout + time.Millisecond)
		synctest.Wait()
		if n := r.elements(); n != 1 {
			t.Fatalf("%d elements left; want PE 1 only", n)
		}
	})
}

func TestFailedDialLeavesKeepAliveTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		r := newRig(t, cfg)
		n := 0
		r.l.events <- evFunc{func(l *loop) {
			l.dial = func(peKey, string) bool { n++; return true }
			for id := uint32(1); id <= maxPEDials+5; id++ {
				takenOver(l, id, wire.Transport{Type: wire.TransportSCTP, Port: 4711, Addrs: []netip.Addr{loopback}})
			}
		}}
		synctest.Wait()
		if r.elements() != maxPEDials+5 {
			t.Fatal("PEs missing")
		}
		r.l.events <- evFunc{func(l *loop) {
			if n != maxPEDials || l.core.Dialing() != maxPEDials {
				t.Errorf("%d dials, %d under way; want the cap %d", n, l.core.Dialing(), maxPEDials)
			}
		}}
		for id := uint32(1); id <= maxPEDials; id++ {
			r.l.events <- evDialed{peKey{"P", id}, nil}
		}
		synctest.Wait()
		time.Sleep(cfg.Timers.KeepAliveInterval + cfg.Timers.KeepAliveTimeout + time.Millisecond)
		synctest.Wait()
		if n := r.elements(); n != 0 {
			t.Fatalf("%d PEs left after failed set-ups; want removal at the keep-alive timeout", n)
		}
		r.l.events <- evFunc{func(l *loop) {
			if l.core.Dialing() != 0 {
				t.Errorf("%d set-ups under way after they ended", l.core.Dialing())
			}
		}}
		synctest.Wait()
	})
}
