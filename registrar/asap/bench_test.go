package asap

import (
	"testing"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/wire"
)

func benchCore(b *testing.B) *Core {
	cfg := simConfig()
	cfg.MaxElements, cfg.MaxPoolElements, cfg.MaxSourceElements = 1<<30, 1<<30, 1<<30
	cfg.MaxMessageSize = 8192
	cfg.KeepAliveInterval = time.Hour
	c := New(cfg, handlespace.New(handlespace.Options{}), simT0)
	c.Open(1, simSlots[0])
	return c
}

// BenchmarkCoreRegister: one new PE per op, over one connection (Step
// with the encoding of the response, no I/O).
func BenchmarkCoreRegister(b *testing.B) {
	c := benchCore(b)
	m := &wire.Registration{PoolHandle: "Bench", Element: wire.PoolElement{RegistrationLife: 30000,
		User: wire.Transport{Type: wire.TransportTCP, Port: 7000, Addrs: addrs("127.0.0.1")}, Policy: wire.Policy{Type: wire.PolicyRoundRobin}}}
	b.ReportAllocs()
	id := uint32(0)
	for b.Loop() {
		id++
		m.Element.ID = id
		if outs := c.Step(simT0, 1, m); len(outs) != 3 || outs[0].Kind != Registered {
			b.Fatalf("outputs %v", outs)
		}
	}
}

// BenchmarkCoreResolve: a resolution of 3 of 10 PEs (round robin).
func BenchmarkCoreResolve(b *testing.B) {
	c := benchCore(b)
	for id := uint32(1); id <= 10; id++ {
		c.Step(simT0, 1, &wire.Registration{PoolHandle: "P", Element: wire.PoolElement{ID: id, RegistrationLife: 30000,
			User: wire.Transport{Type: wire.TransportTCP, Port: 7000, Addrs: addrs("127.0.0.1")}, Policy: wire.Policy{Type: wire.PolicyRoundRobin}}})
	}
	m := &wire.HandleResolution{PoolHandle: "P"}
	b.ReportAllocs()
	for b.Loop() {
		if outs := c.Step(simT0, 1, m); len(outs) != 2 || outs[0].N != 3 {
			b.Fatalf("outputs %v", outs)
		}
	}
}
