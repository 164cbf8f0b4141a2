package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ishidawataru/sctp"

	"github.com/rserpool/rserpool/wire"
)

// MaxHosts bounds the addresses of one multi-homed SCTP address.
const MaxHosts = 16

// Addr is a transport address: a scheme, a host and a port, or for SCTP
// several hosts of one multi-homed endpoint. It is parsed (ParseAddr,
// UnmarshalText) and printed (String, MarshalText) in one place only.
//
// Text form: "scheme://host:port". The scheme is tcp (the TCP mapping; the
// default when the text has none), sctp (kernel SCTP) or tls (TLS over the
// TCP mapping). A host is an IPv4 address, a bracketed IPv6 address
// ("[::1]", with an optional zone), a host name, or empty (all local
// addresses, for listening). An sctp address may list up to MaxHosts hosts
// separated by "/": "sctp://10.0.0.1/10.0.1.1:3863". The port is decimal;
// 0 means "any free port" when listening.
//
// The printed form is canonical: IP addresses in their shortest form
// (IPv4-mapped IPv6 addresses as IPv4), so two Addrs naming the same
// endpoint in the same way are == and can be map keys. The zero Addr is
// invalid (IsZero). Addr implements net.Addr.
type Addr struct {
	scheme Scheme
	hosts  string // canonical host texts joined by "/", IPv6 bracketed
	port   uint16
}

// ParseAddr parses the text form of an address (see Addr).
func ParseAddr(s string) (Addr, error) {
	a, err := parseAddr(s)
	if err != nil {
		return Addr{}, fmt.Errorf("transport: address %q: %w", s, err)
	}
	return a, nil
}

// MustParseAddr is ParseAddr for constants and tests; it panics on error.
func MustParseAddr(s string) Addr {
	a, err := ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

// ParseAddrs parses each text of list, naming the index of a bad one.
func ParseAddrs(list []string) ([]Addr, error) {
	out := make([]Addr, 0, len(list))
	for i, s := range list {
		a, err := ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func parseAddr(s string) (Addr, error) {
	scheme, rest := SchemeTCP, s
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, rest = Scheme(s[:i]), s[i+3:]
		switch scheme {
		case SchemeTCP, SchemeSCTP, SchemeTLS:
		default:
			return Addr{}, fmt.Errorf("unknown scheme %q (want tcp, sctp or tls)", scheme)
		}
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return Addr{}, errors.New("missing port")
	}
	hostPart, portText := rest[:i], rest[i+1:]
	port, err := parsePort(portText)
	if err != nil {
		return Addr{}, err
	}
	if strings.Count(hostPart, "/")+1 > MaxHosts {
		return Addr{}, fmt.Errorf("more than %d hosts", MaxHosts)
	}
	parts := strings.Split(hostPart, "/")
	if len(parts) > 1 && scheme != SchemeSCTP {
		return Addr{}, errors.New("several hosts need the sctp scheme")
	}
	var b strings.Builder
	for k, h := range parts {
		c, err := canonicalHost(h, len(parts) == 1)
		if err != nil {
			return Addr{}, err
		}
		if k > 0 {
			b.WriteByte('/')
		}
		b.WriteString(c)
	}
	return Addr{scheme: scheme, hosts: b.String(), port: port}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("missing port")
	}
	if len(s) > 5 || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(n), nil
}

// canonicalHost checks one host and returns its printed form. An empty
// host is allowed only as the only one.
func canonicalHost(h string, alone bool) (string, error) {
	switch {
	case h == "":
		if !alone {
			return "", errors.New("empty host in a host list")
		}
		return "", nil
	case h[0] == '[':
		if h[len(h)-1] != ']' {
			return "", fmt.Errorf("bad host %q: unclosed bracket", h)
		}
		ip, err := netip.ParseAddr(h[1 : len(h)-1])
		if err != nil || !ip.Is6() {
			return "", fmt.Errorf("bad host %q: not an IPv6 address", h)
		}
		return hostText(ip), nil
	case strings.IndexByte(h, ':') >= 0:
		return "", fmt.Errorf("bad host %q: an IPv6 address must be bracketed, as in [::1]:3863", h)
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		return hostText(ip), nil
	}
	if len(h) > 253 {
		return "", fmt.Errorf("bad host: name longer than 253 bytes")
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", fmt.Errorf("bad host %q: byte %q not allowed in a host name", h, c)
		}
	}
	return h, nil
}

// hostText prints an IP address as a host: IPv4 (also when mapped) plain,
// IPv6 in brackets.
func hostText(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	return "[" + ip.String() + "]"
}

// AddrFrom returns the address of scheme s for one IP address and port.
func AddrFrom(s Scheme, ap netip.AddrPort) Addr {
	return Addr{scheme: s, hosts: hostText(ap.Addr()), port: ap.Port()}
}

// AddrFromIPs returns the address of scheme s for several IP addresses (a
// multi-homed SCTP endpoint; other schemes keep the first) and a port. At
// most MaxHosts addresses are kept. ips must not be empty.
func AddrFromIPs(s Scheme, ips []netip.Addr, port uint16) Addr {
	if s != SchemeSCTP && len(ips) > 1 {
		ips = ips[:1]
	}
	var b strings.Builder
	for i, ip := range ips[:min(len(ips), MaxHosts)] {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(hostText(ip))
	}
	return Addr{scheme: s, hosts: b.String(), port: port}
}

// AddrFromNet returns the address of scheme s for a bound or peer address:
// a *net.TCPAddr, *net.UDPAddr, an SCTP address (every address of it), or
// anything whose String is "host:port".
func AddrFromNet(s Scheme, a net.Addr) (Addr, error) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return AddrFrom(s, a.AddrPort()), nil
	case *net.UDPAddr:
		return AddrFrom(s, a.AddrPort()), nil
	case *sctp.SCTPAddr:
		var ips []netip.Addr
		for _, ip := range a.IPAddrs {
			if x, ok := netip.AddrFromSlice(ip.IP); ok {
				ips = append(ips, x.WithZone(ip.Zone))
			}
		}
		if len(ips) == 0 {
			return Addr{}, errors.New("transport: SCTP address without IP addresses")
		}
		return AddrFromIPs(s, ips, uint16(a.Port)), nil
	case nil:
		return Addr{}, errors.New("transport: no address")
	}
	return ParseAddr(string(s) + "://" + a.String())
}

// AddrFromTransport returns the address at which a registered transport is
// reached: a TCP transport gives a tcp:// address, an SCTP one an sctp://
// address with all its usable addresses (multi-homing). Addresses that
// cannot be dialed (unspecified, multicast, invalid) are skipped; it fails
// when none is left, the port is 0, or the type is another one.
func AddrFromTransport(t wire.Transport) (Addr, error) {
	var s Scheme
	switch t.Type {
	case wire.TransportTCP:
		s = SchemeTCP
	case wire.TransportSCTP:
		s = SchemeSCTP
	default:
		return Addr{}, fmt.Errorf("transport: %v transport cannot be dialed here", t.Type)
	}
	if t.Port == 0 {
		return Addr{}, errors.New("transport: transport parameter with port 0")
	}
	ips := make([]netip.Addr, 0, min(len(t.Addrs), MaxHosts))
	for _, ip := range t.Addrs {
		if len(ips) == MaxHosts {
			break
		}
		if ip = ip.Unmap(); usableIP(ip) {
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 {
		return Addr{}, errors.New("transport: transport parameter without a usable address")
	}
	return AddrFromIPs(s, ips, t.Port), nil
}

// usableIP reports whether ip can be dialed.
func usableIP(ip netip.Addr) bool {
	return ip.IsValid() && !ip.IsUnspecified() && !ip.IsMulticast()
}

// Equal reports whether a and b are the same address (a == b; for go-cmp).
func (a Addr) Equal(b Addr) bool { return a == b }

// IsZero reports whether a is the zero (invalid) Addr.
func (a Addr) IsZero() bool { return a.scheme == "" }

// Scheme returns the scheme.
func (a Addr) Scheme() Scheme { return a.scheme }

// Port returns the port.
func (a Addr) Port() uint16 { return a.port }

// Network returns "tcp" for tcp:// and tls:// addresses and "sctp" for
// sctp:// ones (net.Addr).
func (a Addr) Network() string {
	if a.scheme == SchemeSCTP {
		return "sctp"
	}
	return "tcp"
}

// Hosts returns the hosts without brackets (IPv6 zones kept): one, or
// several for a multi-homed SCTP address. The slice is the caller's.
func (a Addr) Hosts() []string {
	if a.IsZero() {
		return nil
	}
	hs := strings.Split(a.hosts, "/")
	for i, h := range hs {
		hs[i] = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	}
	return hs
}

// HostPort returns the first host and the port as net.Dial and net.Listen
// take them: "10.0.0.1:3863", "[::1]:3863", ":0".
func (a Addr) HostPort() string {
	h, _, _ := strings.Cut(a.hosts, "/")
	return h + ":" + strconv.Itoa(int(a.port))
}

// IPs returns the hosts as IP addresses; ok is false when a host is a name
// or empty.
func (a Addr) IPs() (ips []netip.Addr, ok bool) {
	for _, h := range a.Hosts() {
		ip, err := netip.ParseAddr(h)
		if err != nil {
			return nil, false
		}
		ips = append(ips, ip)
	}
	return ips, len(ips) > 0
}

// Transport returns the transport parameter describing a: TCP for tcp://
// and tls:// (the parameter has no TLS type), SCTP with every address for
// sctp://. ok is false when a host is a name or empty. An unspecified
// address (a wildcard listener) is kept: a receiver replaces it with the
// source of the message (AddrFromTransport skips it).
func (a Addr) Transport() (t wire.Transport, ok bool) {
	ips, ok := a.IPs()
	if !ok {
		return wire.Transport{}, false
	}
	for i, ip := range ips {
		ips[i] = ip.Unmap()
	}
	t = wire.Transport{Type: wire.TransportTCP, Port: a.port, Addrs: ips}
	if a.scheme == SchemeSCTP {
		t.Type = wire.TransportSCTP
	}
	return t, true
}

// WithScheme returns a with scheme s; a multi-homed address keeps only its
// first host unless s is sctp.
func (a Addr) WithScheme(s Scheme) Addr {
	if s != SchemeSCTP {
		a.hosts, _, _ = strings.Cut(a.hosts, "/")
	}
	a.scheme = s
	return a
}

// String returns the canonical text form, "scheme://host:port"; "" for
// the zero Addr.
func (a Addr) String() string {
	if a.IsZero() {
		return ""
	}
	return string(a.scheme) + "://" + a.hostsPort()
}

// hostsPort is every host and the port: "10.0.0.1/10.0.1.1:3863".
func (a Addr) hostsPort() string { return a.hosts + ":" + strconv.Itoa(int(a.port)) }

// ShortString is String without the scheme when it is tcp (the default),
// the form the configuration examples use for listeners: "127.0.0.1:8080",
// "sctp://10.0.0.1:8080".
func (a Addr) ShortString() string {
	if a.scheme == SchemeTCP {
		return a.hostsPort()
	}
	return a.String()
}

// MarshalText returns String; the zero Addr cannot be marshalled.
func (a Addr) MarshalText() ([]byte, error) {
	if a.IsZero() {
		return nil, errors.New("transport: marshal of the zero Addr")
	}
	return []byte(a.String()), nil
}

// UnmarshalText parses the text form (TOML values, flag.TextVar).
func (a *Addr) UnmarshalText(b []byte) error {
	v, err := ParseAddr(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}
