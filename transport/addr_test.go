package transport

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ishidawataru/sctp"

	"github.com/rserpool/rserpool/wire"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in       string
		want     string // canonical form
		hostport string
		hosts    []string
		err      string
	}{
		{in: "tcp://127.0.0.1:3863", want: "tcp://127.0.0.1:3863", hostport: "127.0.0.1:3863", hosts: []string{"127.0.0.1"}},
		{in: "127.0.0.1:3863", want: "tcp://127.0.0.1:3863", hostport: "127.0.0.1:3863", hosts: []string{"127.0.0.1"}},
		{in: "localhost:0", want: "tcp://localhost:0", hostport: "localhost:0", hosts: []string{"localhost"}},
		{in: ":3863", want: "tcp://:3863", hostport: ":3863", hosts: []string{""}},
		{in: "[::1]:9901", want: "tcp://[::1]:9901", hostport: "[::1]:9901", hosts: []string{"::1"}},
		{in: "sctp://[::1]:9901", want: "sctp://[::1]:9901", hostport: "[::1]:9901", hosts: []string{"::1"}},
		{in: "tls://reg.example:3864", want: "tls://reg.example:3864", hostport: "reg.example:3864", hosts: []string{"reg.example"}},
		{in: "tcp://[::ffff:10.0.0.1]:1", want: "tcp://10.0.0.1:1", hostport: "10.0.0.1:1", hosts: []string{"10.0.0.1"}},
		{in: "tcp://[2001:DB8::0001]:1", want: "tcp://[2001:db8::1]:1", hostport: "[2001:db8::1]:1", hosts: []string{"2001:db8::1"}},
		{in: "tcp://[fe80::1%eth0]:1", want: "tcp://[fe80::1%eth0]:1", hostport: "[fe80::1%eth0]:1", hosts: []string{"fe80::1%eth0"}},
		{in: "sctp://10.0.0.1/10.0.1.1:3863", want: "sctp://10.0.0.1/10.0.1.1:3863", hostport: "10.0.0.1:3863", hosts: []string{"10.0.0.1", "10.0.1.1"}},
		{in: "sctp://[::1]/10.0.0.1:1", want: "sctp://[::1]/10.0.0.1:1", hostport: "[::1]:1", hosts: []string{"::1", "10.0.0.1"}},
		{in: "tcp://1.2.3.4:65535", want: "tcp://1.2.3.4:65535", hostport: "1.2.3.4:65535", hosts: []string{"1.2.3.4"}},
		{in: "udp://1.2.3.4:5", err: `unknown scheme "udp"`},
		{in: "TCP://1.2.3.4:5", err: `unknown scheme "TCP"`},
		{in: "tcp://1.2.3.4", err: "missing port"},
		{in: "tcp://1.2.3.4:", err: "missing port"},
		{in: "1.2.3.4:65536", err: "bad port"},
		{in: "1.2.3.4:+1", err: "bad port"},
		{in: "1.2.3.4:http", err: "bad port"},
		{in: "::1:3863", err: "must be bracketed"},
		{in: "[::1:3863", err: "unclosed bracket"},
		{in: "[1.2.3.4]:3863", err: "not an IPv6"},
		{in: "tcp://10.0.0.1/10.0.1.1:3863", err: "several hosts need the sctp scheme"},
		{in: "sctp://10.0.0.1//10.0.1.1:3863", err: "empty host"},
		{in: "sctp://" + strings.Repeat("10.0.0.1/", MaxHosts) + "10.0.0.2:1", err: "more than 16 hosts"},
		{in: "tcp://a b:1", err: "not allowed in a host name"},
		{in: "tcp://a\x00:1", err: "not allowed in a host name"},
		{in: "tcp://" + strings.Repeat("a", 254) + ":1", err: "longer than 253"},
		{in: "", err: "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := ParseAddr(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseAddr(%q) = %v, %v; want error containing %q", tt.in, a, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.String() != tt.want || a.HostPort() != tt.hostport || !cmp.Equal(a.Hosts(), tt.hosts) {
				t.Fatalf("ParseAddr(%q) = %q hostport %q hosts %q; want %q %q %q", tt.in, a, a.HostPort(), a.Hosts(), tt.want, tt.hostport, tt.hosts)
			}
			b, err := ParseAddr(a.String())
			if err != nil || b != a {
				t.Fatalf("reparse of %q = %v, %v", a, b, err)
			}
		})
	}
}

func TestAddrTextAndForms(t *testing.T) {
	var a Addr
	if err := a.UnmarshalText([]byte("sctp://10.0.0.1:3863")); err != nil {
		t.Fatal(err)
	}
	if b, err := a.MarshalText(); err != nil || string(b) != "sctp://10.0.0.1:3863" {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	if err := a.UnmarshalText([]byte("bogus")); err == nil {
		t.Fatal("UnmarshalText accepted bogus")
	}
	if _, err := (Addr{}).MarshalText(); err == nil || !(Addr{}).IsZero() || (Addr{}).String() != "" {
		t.Fatal("zero Addr")
	}
	if got := MustParseAddr("127.0.0.1:80").ShortString(); got != "127.0.0.1:80" {
		t.Errorf("ShortString tcp = %q", got)
	}
	if got := MustParseAddr("sctp://127.0.0.1:80").ShortString(); got != "sctp://127.0.0.1:80" {
		t.Errorf("ShortString sctp = %q", got)
	}
	if got := MustParseAddr("sctp://10.0.0.1/10.0.0.2:1").WithScheme(SchemeTLS).String(); got != "tls://10.0.0.1:1" {
		t.Errorf("WithScheme = %q", got)
	}
	if n := MustParseAddr("tls://[::1]:1").Network(); n != "tcp" {
		t.Errorf("Network = %q", n)
	}
	var _ net.Addr = Addr{}
	m := map[Addr]int{MustParseAddr("tcp://[::ffff:127.0.0.1]:1"): 1}
	if m[MustParseAddr("127.0.0.1:1")] != 1 {
		t.Error("equal addresses are not the same map key")
	}
}

func TestAddrFromNet(t *testing.T) {
	for _, tt := range []struct {
		s    Scheme
		a    net.Addr
		want string
	}{
		{SchemeTCP, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 12345}, "tcp://127.0.0.1:12345"},
		{SchemeTLS, &net.TCPAddr{IP: net.IPv6loopback, Port: 3864}, "tls://[::1]:3864"},
		{SchemeTCP, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 3863}, "tcp://10.0.0.1:3863"},
		{SchemeSCTP, &sctp.SCTPAddr{IPAddrs: []net.IPAddr{{IP: net.IPv4(10, 0, 0, 1)}, {IP: net.IPv6loopback}}, Port: 9}, "sctp://10.0.0.1/[::1]:9"},
	} {
		got, err := AddrFromNet(tt.s, tt.a)
		if err != nil || got.String() != tt.want {
			t.Errorf("AddrFromNet(%v) = %q, %v; want %q", tt.a, got, err, tt.want)
		}
	}
	if _, err := AddrFromNet(SchemeTCP, nil); err == nil {
		t.Error("AddrFromNet(nil) succeeded")
	}
}

func TestAddrTransport(t *testing.T) {
	ip := netip.MustParseAddr
	for _, tt := range []struct {
		name string
		in   wire.Transport
		want string
		err  string
	}{
		{"tcp", wire.Transport{Type: wire.TransportTCP, Port: 3863, Addrs: []netip.Addr{ip("10.0.0.1")}}, "tcp://10.0.0.1:3863", ""},
		{"sctp multi-homed, unusable skipped", wire.Transport{Type: wire.TransportSCTP, Port: 9,
			Addrs: []netip.Addr{ip("0.0.0.0"), ip("10.0.0.1"), ip("239.0.0.1"), ip("::ffff:10.0.0.2")}}, "sctp://10.0.0.1/10.0.0.2:9", ""},
		{"port 0", wire.Transport{Type: wire.TransportTCP, Addrs: []netip.Addr{ip("10.0.0.1")}}, "", "port 0"},
		{"no usable address", wire.Transport{Type: wire.TransportSCTP, Port: 1, Addrs: []netip.Addr{ip("::")}}, "", "usable"},
		{"udp", wire.Transport{Type: wire.TransportUDP, Port: 1, Addrs: []netip.Addr{ip("10.0.0.1")}}, "", "cannot be dialed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, err := AddrFromTransport(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("AddrFromTransport = %v, %v; want error %q", a, err, tt.err)
				}
				return
			}
			if err != nil || a.String() != tt.want {
				t.Fatalf("AddrFromTransport = %q, %v; want %q", a, err, tt.want)
			}
			back, ok := a.Transport()
			if !ok {
				t.Fatal("Transport() not ok")
			}
			again, err := AddrFromTransport(back)
			if err != nil || again != a {
				t.Fatalf("round trip %v -> %+v -> %v, %v", a, back, again, err)
			}
		})
	}
	many := wire.Transport{Type: wire.TransportSCTP, Port: 1}
	for i := range 100 {
		many.Addrs = append(many.Addrs, netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}))
	}
	a, err := AddrFromTransport(many)
	if err != nil || len(a.Hosts()) != MaxHosts {
		t.Fatalf("100 addresses: %v, %v", a, err)
	}
	if _, ok := MustParseAddr("tcp://name:1").Transport(); ok {
		t.Error("a host name has a transport parameter")
	}
	if tr, ok := MustParseAddr("tcp://0.0.0.0:1").Transport(); !ok || !tr.Addrs[0].IsUnspecified() {
		t.Error("a wildcard address has no transport parameter")
	}
}

// FuzzParseAddr: parsing never panics, and an accepted address prints to a
// canonical form that parses back to the same value.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"tcp://127.0.0.1:3863", "[::1]:0", "sctp://10.0.0.1/[fe80::1%lo]:9", "tls://a.b:1",
		":1", "x:", "[:]:1", "sctp://a/b/c:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s)
		if err != nil {
			return
		}
		b, err := ParseAddr(a.String())
		if err != nil || b != a {
			t.Fatalf("%q -> %q -> %v, %v", s, a, b, err)
		}
		if len(a.Hosts()) > MaxHosts || len(a.Hosts()) == 0 {
			t.Fatalf("%q: %d hosts", s, len(a.Hosts()))
		}
	})
}
