package regclient

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func addr(s string) transport.Addr { return transport.MustParseAddr(s) }

func strs(as []transport.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func TestSetOrderAndExpiry(t *testing.T) {
	s := NewSet([]transport.Addr{addr("10.0.0.1:1"), addr("10.0.0.2:1"), addr("10.0.0.1:1"), {}}, 4, 5*time.Second)
	if !s.Learn(t0, addr("10.0.0.9:1")) || !s.Learn(t0.Add(time.Second), addr("10.0.0.8:1")) {
		t.Fatal("learning failed")
	}
	if s.Learn(t0, addr("10.0.0.1:1")) {
		t.Error("a static address was learned")
	}
	if s.Learn(t0.Add(2*time.Second), addr("10.0.0.9:1")) {
		t.Error("re-learning reported new")
	}
	want := []string{"tcp://10.0.0.1:1", "tcp://10.0.0.2:1", "tcp://10.0.0.9:1", "tcp://10.0.0.8:1"}
	if d := cmp.Diff(want, strs(s.Candidates(t0.Add(2*time.Second)))); d != "" {
		t.Errorf("candidates (-want +got):\n%s", d)
	}
	// 10.0.0.8 was heard at +1 s: gone at +6 s; 10.0.0.9 was refreshed at +2 s.
	if got := s.NextExpiry(); !got.Equal(t0.Add(6 * time.Second)) {
		t.Errorf("NextExpiry = %v", got)
	}
	s.Expire(t0.Add(6 * time.Second))
	want = []string{"tcp://10.0.0.1:1", "tcp://10.0.0.2:1", "tcp://10.0.0.9:1"}
	if d := cmp.Diff(want, strs(s.Candidates(t0.Add(6*time.Second)))); d != "" {
		t.Errorf("after T7 (-want +got):\n%s", d)
	}
	// A reload that makes a learned address static keeps it once, static.
	s.SetStatic([]transport.Addr{addr("10.0.0.9:1")})
	if d := cmp.Diff([]string{"tcp://10.0.0.9:1"}, strs(s.Candidates(t0.Add(6*time.Second)))); d != "" {
		t.Errorf("after SetStatic (-want +got):\n%s", d)
	}
}

// TestSetFlood: thousands of announced registrars neither displace the
// static ones nor the learned ones that keep being announced, and the set
// stays bounded.
func TestSetFlood(t *testing.T) {
	static := []transport.Addr{addr("10.0.0.1:3863"), addr("10.0.0.2:3863")}
	s := NewSet(static, 64, 5*time.Second)
	real := addr("sctp://10.1.0.1:3863")
	s.Learn(t0, real)
	now := t0
	for i := range 10000 {
		now = t0.Add(time.Duration(i) * time.Millisecond)
		if i%500 == 0 {
			s.Learn(now, real) // the real registrar announces every 0.5 s
		}
		s.Learn(now, addr(fmt.Sprintf("10.%d.%d.%d:3863", 2+i/65536, i/256%256, i%256)))
		if s.Learned() > 64 {
			t.Fatalf("after %d announces: %d learned", i, s.Learned())
		}
	}
	c := s.Candidates(now)
	if len(c) > 2+64 || c[0] != static[0] || c[1] != static[1] || c[2] != real {
		t.Fatalf("after the flood: %d candidates, first %v", len(c), strs(c[:3]))
	}
	if none := NewSet(nil, 0, time.Second); none.Learn(t0, real) {
		t.Error("a set with max 0 learned")
	}
}

func TestAnnounceAddrs(t *testing.T) {
	src := netip.MustParseAddrPort("10.0.0.9:40000")
	ip := netip.MustParseAddr
	tests := []struct {
		name string
		sa   wire.ServerAnnounce
		src  netip.AddrPort
		want []string
	}{
		{"no transports: RSPLIB, SCTP at the source address and port", wire.ServerAnnounce{}, src, []string{"sctp://10.0.0.9:40000"}},
		{"no transports, source port 0", wire.ServerAnnounce{}, netip.MustParseAddrPort("10.0.0.9:0"), nil},
		{"no transports, unspecified source", wire.ServerAnnounce{}, netip.MustParseAddrPort("0.0.0.0:3863"), nil},
		{"tcp addresses each, sctp multi-homed", wire.ServerAnnounce{Transports: []wire.Transport{
			{Type: wire.TransportTCP, Port: 3863, Addrs: []netip.Addr{ip("10.0.0.1"), ip("fd00::1")}},
			{Type: wire.TransportSCTP, Port: 3863, Addrs: []netip.Addr{ip("10.0.0.1"), ip("10.0.1.1")}},
		}}, src, []string{"tcp://10.0.0.1:3863", "tcp://[fd00::1]:3863", "sctp://10.0.0.1/10.0.1.1:3863"}},
		{"transport without address: the source", wire.ServerAnnounce{Transports: []wire.Transport{
			{Type: wire.TransportTCP, Port: 3863}}}, src, []string{"tcp://10.0.0.9:3863"}},
		{"unusable entries skipped", wire.ServerAnnounce{Transports: []wire.Transport{
			{Type: wire.TransportUDP, Port: 3863, Addrs: []netip.Addr{ip("10.0.0.1")}},
			{Type: wire.TransportTCP, Port: 0, Addrs: []netip.Addr{ip("10.0.0.1")}},
			{Type: wire.TransportTCP, Port: 1, Addrs: []netip.Addr{ip("0.0.0.0"), ip("239.1.1.1")}},
		}}, src, nil},
		{"repeats once", wire.ServerAnnounce{Transports: []wire.Transport{
			{Type: wire.TransportTCP, Port: 1, Addrs: []netip.Addr{ip("10.0.0.1")}},
			{Type: wire.TransportTCP, Port: 1, Addrs: []netip.Addr{ip("::ffff:10.0.0.1")}},
		}}, src, []string{"tcp://10.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, strs(AnnounceAddrs(&tt.sa, tt.src)), cmp.Comparer(func(a, b []string) bool {
				return len(a) == len(b) && (len(a) == 0 || cmp.Equal(a, b))
			})); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
	var many wire.ServerAnnounce
	for i := range 300 {
		many.Transports = append(many.Transports, wire.Transport{Type: wire.TransportTCP, Port: uint16(i + 1), Addrs: []netip.Addr{ip("10.0.0.1")}})
	}
	if n := len(AnnounceAddrs(&many, src)); n != maxAnnounced {
		t.Errorf("300 transports: %d addresses, want %d", n, maxAnnounced)
	}
}
