package registrar

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rserpool/rserpool/transport"
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

func findPE(s Snapshot, pool wire.PoolHandle, id uint32) *ElementSnapshot {
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

// Metrics: live peers, handle updates both ways.
func TestENRPMetrics(t *testing.T) {
	a := startReady(t, enrpTestConfig())
	b := startReady(t, enrpTestConfig(a.r.ENRPAddrs()[0]))
	pe := dial(t, a.addr)
	if r := pe.register(regMsg("M", 1, 7000, wire.PolicyRoundRobin)); r.Reject {
		t.Fatalf("register: %+v", r.Error)
	}
	waitSnap(t, b, 2*time.Second, "replicated", func(s Snapshot) bool { return s.Elements == 1 })
	deadline := time.Now().Add(2 * time.Second)
	for {
		pa := testutil.ToFloat64(a.r.m.peers)
		pb := testutil.ToFloat64(b.r.m.peers)
		sent := testutil.ToFloat64(a.r.m.updatesSent)
		recv := testutil.ToFloat64(b.r.m.updatesReceived)
		if pa == 1 && pb == 1 && sent >= 1 && recv >= 1 {
			// One registration, one peer: one Handle Update (a change was
			// once handed to the ENRP node twice).
			if sent != 1 {
				t.Fatalf("%v Handle Updates sent for one registration to one peer", sent)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers %v/%v, updates sent %v received %v", pa, pb, sent, recv)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A hostile ENRP client: an unknown message type with the report bits gets
// an ENRP_ERROR naming it; garbage is dropped; the registrar keeps serving.
func TestENRPBadInput(t *testing.T) {
	a := startReady(t, enrpTestConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.MustParseAddr(a.r.ENRPAddrs()[0]), &transport.Config{HeartbeatInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, b := range [][]byte{
		{0x01, 0, 0, 3},                          // Presence shorter than its header
		{0x01, 0, 0xff, 0xff, 1, 2},              // length beyond the message
		{0x7f, 0, 0, 12, 0, 0, 0, 9, 0, 0, 0, 0}, // unknown type, report bits 01
	} {
		if err := c.WriteMessage(transport.Message{PPID: wire.PPIDENRP, Data: b}); err != nil {
			t.Fatal(err)
		}
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	m, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("no ENRP_ERROR: %v", err)
	}
	msg, err := wire.ParseENRP(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := msg.(*wire.ENRPError)
	if !ok || len(e.Error.Causes) != 1 || e.Error.Causes[0].Code != wire.CauseUnrecognizedMessage {
		t.Fatalf("want ENRP_ERROR unrecognized message, got %#v", msg)
	}
	// Still serving: a handle table request is answered.
	req, _ := (&wire.HandleTableRequest{Sender: 0x1234}).AppendBinary(nil)
	if err := c.WriteMessage(transport.Message{PPID: wire.PPIDENRP, Data: req}); err != nil {
		t.Fatal(err)
	}
	m, err = c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := wire.ParseENRP(m.Data); err != nil {
		t.Fatal(err)
	} else if _, ok := msg.(*wire.HandleTableResponse); !ok {
		t.Fatalf("want a Handle Table Response, got %T", msg)
	}
}

// The pool_elements gauge counts every PE of the handlespace, those learned
// from peers included, and stays right when a learned PE is removed here
// (it once ignored learned PEs and went negative on such removals).
func TestPoolElementsGaugeCountsLearnedPEs(t *testing.T) {
	a := startReady(t, enrpTestConfig())
	b := startReady(t, enrpTestConfig(a.r.ENRPAddrs()[0]))
	pe := dial(t, a.addr)
	pe.autoAck.Store(true)
	for id := uint32(1); id <= 2; id++ {
		if r := pe.register(regMsg("G", id, 7000+uint16(id), wire.PolicyRoundRobin)); r.Reject {
			t.Fatalf("register: %+v", r.Error)
		}
	}
	waitSnap(t, b, 2*time.Second, "replicated", func(s Snapshot) bool { return s.Elements == 2 })
	gauge := func(h *harness) float64 {
		testutil.CollectAndCount(h.r.m.poolGauge)
		return testutil.ToFloat64(h.r.m.poolElements.WithLabelValues("G"))
	}
	if ga, gb := gauge(a), gauge(b); ga != 2 || gb != 2 {
		t.Fatalf("pool_elements{pool=G}: owner %v, peer %v; want 2 and 2", ga, gb)
	}
	// Unreachable reports at b remove PE 1 there (RSPLIB's threshold of 3).
	pu := dial(t, b.addr)
	for range 3 {
		pu.send(&wire.EndpointUnreachable{PoolHandle: "G", ID: 1})
	}
	waitSnap(t, b, 2*time.Second, "PE 1 removed at b", func(s Snapshot) bool { return findPE(s, "G", 1) == nil })
	if gb := gauge(b); gb != 1 {
		t.Fatalf("pool_elements{pool=G} at the peer after removing a learned PE: %v, want 1", gb)
	}
}
