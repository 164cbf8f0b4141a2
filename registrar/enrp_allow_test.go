package registrar

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rserpool/rserpool/transport"
)

// enrpAllowWarning is the start-up warning for ENRP open to any source.
const enrpAllowWarning = "ENRP accepts unauthenticated peers from any source; set enrp.allow or use tls://"

// TestENRPAllowValidated: peers given by name are checked when dialed.
func TestENRPAllowValidated(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ENRP.Allow = []string{"10.0.0.0/8"}
	cfg.ENRP.Peers = []string{"tcp://10.1.2.3:9901", "tcp://peer.example:9901"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestENRPAllowWarning: ENRP listening without TLS and without enrp.allow
// warns at start; with enrp.allow it does not.
func TestENRPAllowWarning(t *testing.T) {
	for _, allow := range [][]string{nil, {"127.0.0.0/8"}} {
		var logs syncBuffer
		cfg := enrpTestConfig()
		cfg.ENRP.Allow = allow
		r, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		warned := strings.Contains(logs.String(), "level=WARN msg=\""+enrpAllowWarning+"\"")
		if warned != (allow == nil) {
			t.Errorf("allow %v: warned %v:\n%s", allow, warned, logs.String())
		}
	}
}

// TestENRPAllowRefusesOtherSources: a registrar whose enrp.allow does not
// hold 127.0.0.1 closes the ENRP connection of a peer there, counts it,
// and never hears of that peer; with 127.0.0.0/8 allowed the two peer.
func TestENRPAllowRefusesOtherSources(t *testing.T) {
	cfg := enrpTestConfig()
	cfg.ENRP.Allow = []string{"127.0.0.2/32"}
	a := startReady(t, cfg)
	b := startReady(t, enrpTestConfig(a.r.ENRPAddrs()[0]))
	refused := func() float64 { return testutil.ToFloat64(a.r.m.limitRejections.WithLabelValues(limitENRPAllow)) }
	deadline := time.Now().Add(10 * time.Second)
	for refused() < 2 { // b dials again after each failure
		if time.Now().After(deadline) {
			t.Fatalf("enrp_allow refusals = %v", refused())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s := waitSnap(t, a, time.Second, "snapshot", func(Snapshot) bool { return true })
	if len(s.Peers) != 0 {
		t.Errorf("registrar with enrp.allow = 127.0.0.2/32 knows peers %+v", s.Peers)
	}
	if v := testutil.ToFloat64(b.r.m.peers); v != 0 {
		t.Errorf("refused registrar has %v live peers", v)
	}

	cfg = enrpTestConfig()
	cfg.ENRP.Allow = []string{"127.0.0.0/8"}
	c := startReady(t, cfg)
	d := startReady(t, enrpTestConfig(c.r.ENRPAddrs()[0]))
	waitSnap(t, c, 10*time.Second, "peer allowed by enrp.allow", func(s Snapshot) bool {
		return len(s.Peers) == 1 && s.Peers[0].ID == d.r.ID().String()
	})
}

// TestENRPAllowAppliesToDialedPeers: a peer given by name that resolves
// outside enrp.allow is not talked to.
func TestENRPAllowAppliesToDialedPeers(t *testing.T) {
	b := startReady(t, enrpTestConfig())
	_, port, _ := strings.Cut(strings.TrimPrefix(b.r.ENRPAddrs()[0], "tcp://127.0.0.1"), ":")
	cfg := enrpTestConfig("tcp://localhost:" + port)
	cfg.ENRP.Allow = []string{"127.0.0.2/32", "::2/128"}
	a := start(t, cfg)
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(a.r.m.limitRejections.WithLabelValues(limitENRPAllow)) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("dial to a peer outside enrp.allow not refused")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if v := testutil.ToFloat64(b.r.m.peers); v != 0 {
		t.Errorf("peer reached despite enrp.allow: %v live peers", v)
	}
}

// TestE2EENRPAllow: the daemon warns when ENRP listens without TLS and
// without enrp.allow, and with enrp.allow closes ENRP connections from
// other sources and counts them.
func TestE2EENRPAllow(t *testing.T) {
	open := startProc(t, "", "-enrp", "tcp://127.0.0.1:0")
	open.waitLog(enrpAllowWarning, 10*time.Second)
	if code := open.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}

	p := startProc(t, "[enrp]\nallow = [\"127.0.0.2/32\"]\n", "-enrp", "tcp://127.0.0.1:0")
	for done := false; !done; {
		select {
		case l := <-p.lines:
			if strings.Contains(l, enrpAllowWarning) {
				t.Errorf("warned with enrp.allow set: %s", l)
			}
		default:
			done = true
		}
	}
	refused := rawDial(t, "127.0.0.1", p.enrp)
	if !refused.waitClosedByPeer(10 * time.Second) {
		t.Fatal("ENRP connection from outside enrp.allow not closed")
	}
	waitMetric(t, p.admin, `rserpool_registrar_limit_rejections_total{limit="enrp_allow"}`, 1, 10*time.Second)
	allowed := rawDial(t, "127.0.0.2", p.enrp)
	allowed.init()
	if allowed.waitClosedByPeer(500 * time.Millisecond) {
		t.Fatal("ENRP connection from inside enrp.allow closed")
	}
	if code := p.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// multiHomed is the address view of a multi-homed SCTP association (no
// SCTP on the build machines): RemoteAddr prints every path, "a/b:port",
// and PeerAddrs lists them one by one.
type multiHomed struct {
	transport.Conn
	paths []string
}

type textAddr string

func (a textAddr) Network() string { return "sctp" }
func (a textAddr) String() string  { return string(a) }

func (m multiHomed) RemoteAddr() net.Addr { return textAddr(strings.Join(m.paths, "/") + ":9901") }
func (m multiHomed) PeerAddrs() []net.Addr {
	var out []net.Addr
	for _, p := range m.paths {
		out = append(out, textAddr(p+":9901"))
	}
	return out
}

// TestENRPAllowMultiHomed: every path of an association must be in
// enrp.allow; its first address is its source.
func TestENRPAllowMultiHomed(t *testing.T) {
	tc := multiHomed{paths: []string{"10.0.0.1", "10.0.1.1"}}
	if addrs, port := peerAddrs(tc); len(addrs) != 2 || addrs[0].String() != "10.0.0.1" || port != 9901 {
		t.Fatalf("peerAddrs = %v, %d", addrs, port)
	}
	for _, tc2 := range []struct {
		allow []string
		want  bool
	}{
		{nil, true},
		{[]string{"10.0.0.0/16"}, true},
		{[]string{"10.0.0.0/24"}, false},
		{[]string{"10.0.0.0/24", "10.0.1.0/24"}, true},
	} {
		pm := &peerMgr{allow: parsePrefixes(tc2.allow)}
		if got := pm.allowedConn(tc); got != tc2.want {
			t.Errorf("allow %v: allowedConn = %v, want %v", tc2.allow, got, tc2.want)
		}
	}
}
