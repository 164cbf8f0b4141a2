package registrar

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

func getPage(t *testing.T, addr, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// TestStatusPage: the page at / shows the registrar's ID, its ENRP peers
// with their checksum comparison, every pool with its PEs (a handle that
// is not printable in its escaped form), and the registration rate.
func TestStatusPage(t *testing.T) {
	a := startReady(t, enrpTestConfig())
	b := startReady(t, enrpTestConfig(a.r.ENRPAddrs()[0]))
	hostile := "<b>\x00\xff\u202e"
	pa := dial(t, a.addr)
	pa.autoAck.Store(true)
	reg := regMsg("EchoPool", 0xabc, 7001, wire.PolicyLeastUsed)
	reg.Element.Policy.Load = 0x40000000
	if r := pa.register(reg); r.Reject {
		t.Fatalf("register: %+v", r.Error)
	}
	if r := pa.register(regMsg(hostile, 0x101, 7002, wire.PolicyRoundRobin)); r.Reject {
		t.Fatalf("register: %+v", r.Error)
	}
	pb := dial(t, b.addr)
	pb.autoAck.Store(true)
	if r := pb.register(regMsg("EchoPool", 0x202, 7003, wire.PolicyLeastUsed)); r.Reject {
		t.Fatalf("register: %+v", r.Error)
	}
	// The peer's Presence after its registration carries its new checksum.
	waitSnap(t, a, 5*time.Second, "3 PEs, one peer whose checksum matches", func(s Snapshot) bool {
		if s.Elements != 3 || len(s.Peers) != 1 || s.Peers[0].State != "active" {
			return false
		}
		for _, c := range s.Checksums {
			if c.Owner == s.Peers[0].ID {
				return c.Checksum == s.Peers[0].Checksum
			}
		}
		return false
	})
	body := getPage(t, a.r.AdminAddr(), "/")
	for _, want := range []string{
		"<title>" + a.r.ID().String() + " · rserpool</title>",
		`<code class="handle">EchoPool</code>`,
		`<code class="handle">&lt;b&gt;\x00\xff\xe2\x80\xae</code>`,
		"0x00000abc", "0x00000101", "0x00000202", "TCP 127.0.0.1 port 7001",
		"least-used", "25.0%", // the load of 0xabc
		b.r.ID().String(), `<span class="badge ok">active</span>`, `<span class="badge ok">match</span>`,
		`<span class="badge ok">this registrar</span>`,
		"registrations (2 in all)",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(body, "<b>\x00") || strings.Contains(body, "\u202e") {
		t.Error("status page holds the handle's raw bytes")
	}
	if n := strings.Count(body, "this registrar"); n != 2 {
		t.Errorf("%d PEs marked as owned here, want 2", n)
	}
	metrics := getPage(t, a.r.AdminAddr(), "/metrics")
	for _, want := range []string{"rserpool_registrar_peer_checksum_mismatches 0",
		`rserpool_registrar_info{enrp="true",id="` + a.r.ID().String() + `"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestStatusChecksumMismatch: a PE of the peer that the peer does not know
// of makes the checksums differ: the gauge counts the peer and the page
// says so (checked on the loop, before the audit repairs it).
func TestStatusChecksumMismatch(t *testing.T) {
	a := startReady(t, enrpTestConfig())
	b := startReady(t, enrpTestConfig(a.r.ENRPAddrs()[0]))
	waitSnap(t, a, 5*time.Second, "peer active", func(s Snapshot) bool {
		return len(s.Peers) == 1 && s.Peers[0].State == "active"
	})
	var n0, n1 int
	var v StatusView
	err := a.r.do(func(l *loop) {
		n0 = checksumMismatches(l)
		pe := regMsg("Ghost", 0x999, 7009, wire.PolicyRoundRobin).Element
		pe.HomeServer = uint32(b.r.ID())
		if _, _, err := l.hs.Register("Ghost", pe, time.Now()); err != nil {
			t.Error(err)
			return
		}
		n1 = checksumMismatches(l)
		v = l.statusView(time.Now())
		l.hs.Deregister("Ghost", 0x999)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n0 != 0 || n1 != 1 || len(v.Peers) != 1 || v.Peers[0].Match {
		t.Fatalf("mismatches before %d after %d, peers %+v", n0, n1, v.Peers)
	}
}

// TestStatusPageBounded: a large handlespace shows the first pools and PEs
// and says how many more there are.
func TestStatusPageBounded(t *testing.T) {
	h := start(t, testConfig())
	err := h.r.do(func(l *loop) {
		for i := range statusMaxPools + 5 {
			pe := regMsg("", uint32(i+1), 7000, wire.PolicyRoundRobin).Element
			h := wire.PoolHandle([]byte{'P', byte(i >> 8), byte(i)})
			if i == 0 {
				h = "Big"
				for j := range statusMaxElements + 7 {
					pe.ID = uint32(100000 + j)
					l.hs.Register(h, pe, time.Now())
				}
				continue
			}
			l.hs.Register(h, pe, time.Now())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	body := getPage(t, h.r.AdminAddr(), "/")
	for _, want := range []string{"… and 7 more PEs", "… and 5 more pools"} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if n := strings.Count(body, `<code class="handle">`); n != statusMaxPools {
		t.Errorf("%d pools shown, want %d", n, statusMaxPools)
	}
}
