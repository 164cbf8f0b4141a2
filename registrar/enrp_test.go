package registrar

import (
	"context"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// enrpTestConfig is a registrar with an ENRP listener on loopback and
// short ENRP timers.
func enrpTestConfig(peers ...string) Config {
	cfg := testConfig()
	cfg.ENRP.Listen = []string{"tcp://127.0.0.1:0"}
	cfg.ENRP.Peers = peers
	cfg.ENRP.PeerHeartbeat = 200 * time.Millisecond
	cfg.ENRP.MaxTimeLastHeard = 600 * time.Millisecond
	cfg.ENRP.MaxTimeNoResponse = 400 * time.Millisecond
	cfg.ENRP.TakeoverExpiry = time.Second
	cfg.ENRP.MentorDiscovery = time.Second
	return cfg
}

// startReady starts a registrar and waits until it serves ASAP.
func startReady(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := start(t, cfg)
	select {
	case <-h.r.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("registrar not ready within 10s")
	}
	return h
}

// waitSnap polls h's handlespace (in process, through the loop) until cond
// holds or d passes, returning the last snapshot.
func waitSnap(t testing.TB, h *harness, d time.Duration, what string, cond func(Snapshot) bool) Snapshot {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s, err := h.r.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v at %s: %+v", what, d, s.ServerID, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func findPE(s Snapshot, pool string, id uint32) *ElementSnapshot {
	for _, p := range s.Pools {
		if p.Handle != pool {
			continue
		}
		for i := range p.Elements {
			if p.Elements[i].ID == ServerID(id).String() {
				return &p.Elements[i]
			}
		}
	}
	return nil
}

func TestENRPReplicationInProcess(t *testing.T) {
	a := startReady(t, enrpTestConfig())
	b := startReady(t, enrpTestConfig(a.r.ENRPAddrs()[0]))
	c := startReady(t, enrpTestConfig(a.r.ENRPAddrs()[0], b.r.ENRPAddrs()[0]))
	hs := []*harness{a, b, c}
	for i, h := range hs {
		pe := dial(t, h.addr)
		if r := pe.register(regMsg("P", uint32(0x100+i), uint16(7000+i), wire.PolicyRoundRobin)); r.Reject {
			t.Fatalf("register: %+v", r.Error)
		}
	}
	for _, h := range hs {
		waitSnap(t, h, 2*time.Second, "3 PEs", func(s Snapshot) bool { return s.Elements == 3 })
	}
	// Deregistration propagates too.
	pe := dial(t, a.addr)
	pe.register(regMsg("P", 0x200, 7100, wire.PolicyRoundRobin))
	for _, h := range hs {
		waitSnap(t, h, 2*time.Second, "4 PEs", func(s Snapshot) bool { return s.Elements == 4 })
	}
	pe.send(&wire.Deregistration{PoolHandle: "P", ID: 0x200})
	expect[*wire.DeregistrationResponse](t, pe)
	for _, h := range hs {
		waitSnap(t, h, 2*time.Second, "3 PEs", func(s Snapshot) bool { return s.Elements == 3 })
	}
}
