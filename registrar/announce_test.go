package registrar

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rserpool/rserpool/wire"
)

// TestAnnounceMessage checks the ASAP_SERVER_ANNOUNCE contents. Sending is
// not exercised: multicast would leave the loopback interface, and tests
// stay on 127.0.0.0/8.
func TestAnnounceMessage(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig().Announce
	a, err := newAnnouncer(cfg, 0xabcd, []string{"tcp://127.0.0.1:3863", "sctp://10.0.0.1:3863", "tls://127.0.0.1:3864"},
		testLogger(t), m)
	if err != nil {
		t.Skipf("no multicast socket: %v", err)
	}
	defer a.snd.Close()
	msg, err := wire.ParseASAP(a.msg)
	if err != nil {
		t.Fatal(err)
	}
	sa, ok := msg.(*wire.ServerAnnounce)
	if !ok || sa.ServerID != 0xabcd || len(sa.Transports) != 2 {
		t.Fatalf("announce %+v", msg)
	}
	if tr := sa.Transports[0]; tr.Type != wire.TransportTCP || tr.Port != 3863 || tr.Addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("TCP transport %+v", tr)
	}
	if tr := sa.Transports[1]; tr.Type != wire.TransportSCTP || tr.Addrs[0] != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("SCTP transport %+v", tr)
	}
}
