package asap

import (
	"net/netip"
	"testing"

	"github.com/rserpool/rserpool/wire"
)

func TestDialTarget(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.7")
	v6 := netip.MustParseAddr("2001:db8::7")
	for _, tc := range []struct {
		name string
		t    wire.Transport
		want string
	}{
		{"sctp", wire.Transport{Type: wire.TransportSCTP, Port: 4711, Addrs: []netip.Addr{v4}}, "sctp://192.0.2.7:4711"},
		{"sctp v6", wire.Transport{Type: wire.TransportSCTP, Port: 4711, Addrs: []netip.Addr{v6}}, "sctp://[2001:db8::7]:4711"},
		{"skips unspecified", wire.Transport{Type: wire.TransportSCTP, Port: 9, Addrs: []netip.Addr{netip.IPv4Unspecified(), v4}}, "sctp://192.0.2.7:9"},
		{"mapped", wire.Transport{Type: wire.TransportSCTP, Port: 9, Addrs: []netip.Addr{netip.AddrFrom16(v4.As16())}}, "sctp://192.0.2.7:9"},
		{"tcp mapping", wire.Transport{Type: wire.TransportTCP, Port: 4711, Addrs: []netip.Addr{v4}}, ""},
		{"absent", wire.Transport{}, ""},
		{"no port", wire.Transport{Type: wire.TransportSCTP, Addrs: []netip.Addr{v4}}, ""},
		{"no address", wire.Transport{Type: wire.TransportSCTP, Port: 9}, ""},
		{"only unusable", wire.Transport{Type: wire.TransportSCTP, Port: 9, Addrs: []netip.Addr{netip.IPv6Unspecified(), netip.MustParseAddr("224.0.0.1")}}, ""},
	} {
		got, ok := DialTarget(tc.t)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: DialTarget = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
}
