package proxy

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
)

// v2Signature is the PROXY protocol v2 signature (haproxy proxy-protocol.txt §2.2).
var v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// proxyHeader returns the PROXY protocol header ("v1" or "v2") describing a
// client connection: src is the client, dst the address it connected to.
// Non-TCP/IP addresses produce "UNKNOWN" (v1) or a LOCAL command (v2).
func proxyHeader(version string, src, dst net.Addr) []byte {
	s, _ := addrPort(src)
	d, _ := addrPort(dst)
	return proxyHeaderAddrs(version, s, d)
}

// proxyHeaderAddrs is proxyHeader for addresses (invalid ones: UNKNOWN).
func proxyHeaderAddrs(version string, s, d netip.AddrPort) []byte {
	ok := s.IsValid() && d.IsValid() && s.Addr().Is4() == d.Addr().Is4()
	if version == "v1" {
		if !ok {
			return []byte("PROXY UNKNOWN\r\n")
		}
		fam := "TCP6"
		if s.Addr().Is4() {
			fam = "TCP4"
		}
		b := make([]byte, 0, 108)
		b = append(b, "PROXY "...)
		b = append(b, fam...)
		b = append(b, ' ')
		b = s.Addr().AppendTo(b)
		b = append(b, ' ')
		b = d.Addr().AppendTo(b)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(s.Port()), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(d.Port()), 10)
		return append(b, "\r\n"...)
	}
	b := make([]byte, 0, 16+36)
	b = append(b, v2Signature...)
	if !ok {
		return append(b, 0x20, 0x00, 0, 0) // version 2, LOCAL; family UNSPEC
	}
	if s.Addr().Is4() {
		b = append(b, 0x21, 0x11) // version 2, PROXY; TCP over IPv4
		b = binary.BigEndian.AppendUint16(b, 12)
		a4, d4 := s.Addr().As4(), d.Addr().As4()
		b = append(b, a4[:]...)
		b = append(b, d4[:]...)
	} else {
		b = append(b, 0x21, 0x21) // version 2, PROXY; TCP over IPv6
		b = binary.BigEndian.AppendUint16(b, 36)
		a16, d16 := s.Addr().As16(), d.Addr().As16()
		b = append(b, a16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, s.Port())
	return binary.BigEndian.AppendUint16(b, d.Port())
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	t, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := t.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
}
