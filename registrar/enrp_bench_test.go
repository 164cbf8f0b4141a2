package registrar

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// fillOwned puts n PEs owned by h's registrar straight into its
// handlespace (without keep-alive monitoring): a large mentor to sync from.
func fillOwned(b testing.TB, h *harness, n int) {
	b.Helper()
	err := h.r.do(func(l *loop) {
		now := time.Now()
		for i := range n {
			pe := wire.PoolElement{ID: uint32(i + 1), HomeServer: l.id, RegistrationLife: 30000,
				User:   wire.Transport{Type: wire.TransportTCP, Port: uint16(1024 + i%50000), Addrs: []netip.Addr{loopback}},
				Policy: wire.Policy{Type: wire.PolicyRoundRobin}}
			if _, _, err := l.hs.Register(wire.PoolHandle(fmt.Sprintf("pool%d", i%100)), pe, now); err != nil {
				panic(err)
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkMentorSync100k: a new registrar downloads a 100,000-PE
// handlespace from its mentor over the TCP mapping (ns/op = one full sync,
// from Start to serving ASAP with every PE present).
func BenchmarkMentorSync100k(b *testing.B) {
	const n = 100_000
	cfg := enrpTestConfig()
	cfg.ENRP.TableChunkPEs = 1024
	cfg.ENRP.TableChunkBytes = 60000
	mentor := startReady(b, cfg)
	fillOwned(b, mentor, n)
	for b.Loop() {
		c := enrpTestConfig(mentor.r.ENRPAddrs()[0])
		c.ENRP.MentorDiscovery = 30 * time.Second
		r, err := New(c, Options{Logger: testLogger(b)})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Start(); err != nil {
			b.Fatal(err)
		}
		<-r.Ready()
		var got int
		r.do(func(l *loop) { got = l.hs.NumElements() })
		b.StopTimer()
		if got != n {
			b.Fatalf("synced %d of %d PEs", got, n)
		}
		r.Close()
		b.StartTimer()
	}
}

// BenchmarkUpdatePropagation: registrations at one registrar at 1,000/s;
// reports the p50/p99 time until each is in a peer's handlespace.
func BenchmarkUpdatePropagation(b *testing.B) {
	cfg := enrpTestConfig()
	cfg.Limits.MaxSourceElements = 1_000_000 // every PE comes from 127.0.0.1
	a := startReady(b, cfg)
	peer := startReady(b, enrpTestConfig(a.r.ENRPAddrs()[0]))
	pe := dial(b, a.addr)
	// The peer's handlespace is watched through its loop.
	waitPeer := func(id uint32, deadline time.Time) bool {
		for time.Now().Before(deadline) {
			var ok bool
			peer.r.do(func(l *loop) { _, ok = l.hs.Get("Prop", id) })
			if ok {
				return true
			}
			time.Sleep(100 * time.Microsecond)
		}
		return false
	}
	var lat []time.Duration
	id := uint32(0)
	tick := time.NewTicker(time.Millisecond) // 1,000 registrations/s
	defer tick.Stop()
	for b.Loop() {
		<-tick.C
		id++
		start := time.Now()
		pe.send(regMsg("Prop", id, 9000, wire.PolicyRoundRobin))
		if !waitPeer(id, start.Add(5*time.Second)) {
			b.Fatalf("PE %d not at the peer within 5s", id)
		}
		lat = append(lat, time.Since(start))
		select { // discard the registration response
		case <-pe.msgs:
		default:
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}
