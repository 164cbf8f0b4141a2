package registrar

import (
	"testing"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// TestSCTPRegistration runs registration and resolution over kernel SCTP,
// the same code path as the TCP mapping above transport.Conn.
func TestSCTPRegistration(t *testing.T) {
	if ok, err := transport.SCTPAvailable(); !ok {
		t.Skipf("kernel SCTP unavailable: %v", err)
	}
	cfg := testConfig()
	cfg.ASAP.Listen = []string{"sctp://127.0.0.1:0"}
	h := start(t, cfg)
	pe := dial(t, h.addr)
	pe.autoAck.Store(true)
	if r := pe.register(regMsg("S", 1, 7000, wire.PolicyRoundRobin)); r.Reject {
		t.Fatalf("register over SCTP: %+v", r.Error)
	}
	if c := h.waitChange(t, wire.ActionAddPE, 1, time.Second); c.Element.ASAP.Type != wire.TransportSCTP {
		t.Errorf("ASAP transport %+v, want SCTP", c.Element.ASAP)
	}
	if hr := dial(t, h.addr).resolve("S", 0); len(hr.Elements) != 1 {
		t.Fatalf("resolve over SCTP: %+v", hr)
	}
}
