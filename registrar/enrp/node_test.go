package enrp

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/wire"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestNode(t *testing.T, cfg Config, peers ...string) (*Node, *handlespace.Handlespace) {
	t.Helper()
	if cfg.ID == 0 {
		cfg.ID = 0x100
	}
	cfg.Rand = rand.New(rand.NewPCG(1, 1))
	cfg.ServerInfo = wire.ServerInfo{Transport: wire.Transport{Type: wire.TransportTCP, Port: 9901,
		Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}}
	hs := handlespace.New(handlespace.Options{})
	return New(cfg, hs, peers, t0), hs
}

func sends(outs []Output) []wire.Message {
	var ms []wire.Message
	for _, o := range outs {
		if o.Kind == Send {
			ms = append(ms, o.Msg)
		}
	}
	return ms
}

func TestServerInfoAddr(t *testing.T) {
	tcp := func(a string, port uint16) *wire.ServerInfo {
		return &wire.ServerInfo{ServerID: 1, Transport: wire.Transport{Type: wire.TransportTCP, Port: port, Addrs: []netip.Addr{netip.MustParseAddr(a)}}}
	}
	sctp := &wire.ServerInfo{Transport: wire.Transport{Type: wire.TransportSCTP, Port: 9901,
		Addrs: []netip.Addr{netip.IPv6Unspecified(), netip.MustParseAddr("fd00::2"), netip.MustParseAddr("10.0.0.2")}}}
	tests := []struct {
		name string
		si   *wire.ServerInfo
		src  Source
		want string
	}{
		{"tcp", tcp("10.0.0.2", 9901), Source{}, "tcp://10.0.0.2:9901"},
		{"sctp skips unspecified, ipv6 bracketed", sctp, Source{}, "sctp://[fd00::2]:9901"},
		{"multicast uses datagram source", tcp("0.0.0.0", 9901), Source{Addr: "udp://10.0.0.7:5000", Multicast: true}, "tcp://10.0.0.7:9901"},
		{"only unspecified", tcp("0.0.0.0", 9901), Source{}, ""},
		{"port 0", tcp("10.0.0.2", 0), Source{}, ""},
		{"nil", nil, Source{}, ""},
		{"udp transport", &wire.ServerInfo{Transport: wire.Transport{Type: wire.TransportUDP, Port: 1, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}}, Source{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ServerInfoAddr(tt.si, tt.src); got != tt.want {
				t.Errorf("ServerInfoAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestJitterRange(t *testing.T) {
	n, _ := newTestNode(t, Config{})
	const d = 8 * time.Second
	lo, hi := d, time.Duration(0)
	for range 10000 {
		j := n.jitter(d)
		lo, hi = min(lo, j), max(hi, j)
	}
	if lo < 7*time.Second || hi > 9*time.Second {
		t.Fatalf("jitter range [%v, %v] outside ±12.5 %%", lo, hi)
	}
	if lo > 7100*time.Millisecond || hi < 8900*time.Millisecond {
		t.Fatalf("jitter range [%v, %v] does not cover ±12.5 %%", lo, hi)
	}
}

func TestErrorFor(t *testing.T) {
	hdr := []byte{0x0b, 0, 0, 12, 0, 0, 0x02, 0, 0, 0, 0x01, 0}
	unknownMsg := append([]byte{0x45}, hdr[1:]...) // 0x40-0x7f: report
	silentMsg := append([]byte{0x85}, hdr[1:]...)  // 0x80-0xff: drop
	tests := []struct {
		name string
		raw  []byte
		want *wire.ENRPError
	}{
		{"unknown type, report bits", unknownMsg, &wire.ENRPError{Sender: 0x200, Receiver: 0x100,
			Error: wire.OperationError{Causes: []wire.ErrorCause{{Code: wire.CauseUnrecognizedMessage, Info: unknownMsg}}}}},
		{"unknown type, silent", silentMsg, nil},
		{"truncated", []byte{0x01, 0, 0}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := wire.ParseENRP(tt.raw)
			if err == nil {
				t.Fatal("parse succeeded")
			}
			got := ErrorFor(tt.raw, err)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Fatalf("ErrorFor (-want +got):\n%s", d)
			}
			if got != nil {
				if _, err := got.AppendBinary(nil); err != nil {
					t.Fatalf("encoding the error: %v", err)
				}
			}
		})
	}
	if ErrorFor(nil, errors.New("other")) != nil {
		t.Error("non-parse error reported")
	}
}

// TestHostileLimits: a sender cycling server IDs cannot grow the peer list
// beyond MaxPeers, and download sessions are capped at MaxSessions.
func TestHostileLimits(t *testing.T) {
	n, hs := newTestNode(t, Config{MaxPeers: 4, MaxSessions: 2, MentorDiscovery: -1})
	for i := uint32(1); i <= 100; i++ {
		hs.Register("p", simElement(i, n.ID()), t0)
	}
	for id := uint32(0x1000); id < 0x1100; id++ {
		n.Step(t0, Source{Addr: "tcp://10.9.9.9:1"}, &wire.Presence{Sender: id, Checksum: 0xffff})
		n.Step(t0, Source{Addr: "tcp://10.9.9.9:1"}, &wire.HandleUpdate{Sender: id + 0x1000, Action: wire.ActionAddPE, PoolHandle: "x", Element: simElement(id, id)})
	}
	if got := len(n.Peers()); got != 4 {
		t.Errorf("%d peers, want the cap 4", got)
	}
	rejects := 0
	for id := uint32(0x5000); id < 0x5010; id++ {
		for _, m := range sends(n.Step(t0, Source{Addr: "tcp://10.9.9.9:2"}, &wire.HandleTableRequest{Sender: id})) {
			if r, ok := m.(*wire.HandleTableResponse); ok && r.Reject {
				rejects++
			}
		}
	}
	if rejects != 14 {
		t.Errorf("%d rejected requests, want 14 (2 sessions allowed)", rejects)
	}
	// Idle sessions end; then requests are served again.
	n.Tick(t0.Add(DefaultMaxTimeNoResponse))
	ms := sends(n.Step(t0.Add(DefaultMaxTimeNoResponse), Source{Addr: "tcp://10.9.9.9:2"}, &wire.HandleTableRequest{Sender: 0x6000}))
	if len(ms) != 1 || ms[0].(*wire.HandleTableResponse).Reject {
		t.Errorf("after idle sessions expired: %v", ms)
	}
}

// TestTableChunkBytes: responses respect the byte limit, each stays
// decodable, and together they carry every PE once.
func TestTableChunkBytes(t *testing.T) {
	for _, limit := range []int{1, 200, 1400, 60000, 1 << 20} {
		n, hs := newTestNode(t, Config{TableChunkBytes: limit, TableChunkPEs: 1000})
		for i := uint32(1); i <= 3000; i++ {
			pe := simElement(i, n.ID())
			pe.ASAP = wire.Transport{Type: wire.TransportSCTP, Port: 3863, Addrs: []netip.Addr{netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("fd00::1")}}
			pe.Policy = wire.Policy{Type: wire.PolicyLeastUsedDegradation, Load: 7}
			hs.Register(wire.PoolHandle(rune('a'+i%7)), pe, t0)
		}
		seen := map[peKey]bool{}
		for i := 0; ; i++ {
			ms := sends(n.Step(t0, Source{Addr: "tcp://127.0.0.1:1"}, &wire.HandleTableRequest{Sender: 0xdead}))
			r := ms[0].(*wire.HandleTableResponse)
			b, err := r.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			npe := 0
			for _, p := range r.Pools {
				for _, e := range p.Elements {
					k := peKey{p.PoolHandle, e.ID}
					if seen[k] {
						t.Fatalf("limit %d: PE %v twice", limit, k)
					}
					seen[k] = true
					npe++
				}
			}
			if npe > 1 && len(b) > min(limit, MaxTableChunkBytes) {
				t.Fatalf("limit %d: response of %d PEs is %d bytes", limit, npe, len(b))
			}
			if !r.More {
				break
			}
			if i > 3000 {
				t.Fatal("no end")
			}
		}
		if len(seen) != 3000 {
			t.Fatalf("limit %d: %d PEs served, want 3000", limit, len(seen))
		}
	}
}

// TestIgnoresASAPAndOwnID: ASAP messages and our own loop-back do nothing.
func TestIgnoresASAPAndOwnID(t *testing.T) {
	n, _ := newTestNode(t, Config{})
	n.Tick(t0)
	for _, m := range []wire.Message{
		&wire.ServerAnnounce{ServerID: 7},
		&wire.Presence{Sender: 0x100, Checksum: 1},
		&wire.HandleUpdate{Sender: 0x100, Action: wire.ActionAddPE, PoolHandle: "p", Element: simElement(1, 0x100)},
		&wire.InitTakeover{Sender: 0x100, Target: 0x100},
		&wire.HandleTableRequest{Sender: 0x100},
	} {
		if outs := n.Step(t0, Source{Addr: "tcp://10.0.0.1:9901"}, m); len(outs) != 0 {
			t.Errorf("%T: outputs %v", m, outs)
		}
	}
	if len(n.Peers()) != 0 {
		t.Errorf("peers: %v", n.Peers())
	}
}

// TestNextDeadlineNoSpin: every deadline Tick reports moves forward after
// the Tick, even with an own PE already expired (its removal is the
// caller's).
func TestNextDeadlineNoSpin(t *testing.T) {
	n, hs := newTestNode(t, Config{}, "tcp://10.0.0.2:9901")
	hs.Register("p", simElement(1, n.ID()), t0)
	hs.SetExpiry("p", 1, t0)
	now := t0
	for i := 0; i < 1000; i++ {
		d := n.NextDeadline()
		if d.Before(now) {
			t.Fatalf("deadline %v before now %v", d, now)
		}
		if i > 0 && !d.After(now) {
			t.Fatalf("step %d: deadline does not advance past %v", i, now)
		}
		now = d
		n.Tick(now)
	}
	if now.Sub(t0) < time.Minute {
		t.Errorf("1000 ticks covered only %v", now.Sub(t0))
	}
}
