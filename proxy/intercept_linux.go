package proxy

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h): the
// destination a connection had before NAT (nftables redirect).
const soOriginalDst = 80

// originalDst returns the destination the client connected to: from
// conntrack after a REDIRECT, else (TPROXY, or no rule) the socket's
// local address, which is then that destination.
func originalDst(fd int, local netip.AddrPort) netip.AddrPort {
	var raw [28]byte // struct sockaddr_in6, the larger of the two
	size := uint32(len(raw))
	level := unix.SOL_IP
	if local.Addr().Is6() && !local.Addr().Is4In6() {
		level = unix.SOL_IPV6
	}
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), soOriginalDst,
		uintptr(unsafe.Pointer(&raw[0])), uintptr(unsafe.Pointer(&size)), 0)
	if e != 0 {
		return local
	}
	// The port is in network order in both layouts; the family is host order.
	port := binary.BigEndian.Uint16(raw[2:4])
	switch binary.NativeEndian.Uint16(raw[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[4:8])), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(raw[8:24])).Unmap(), port)
	}
	return local
}

// interceptOpts are the socket options of a listener for nftables TPROXY:
// IP_TRANSPARENT lets it accept connections to addresses it does not own.
func interceptOpts(lc ListenerConfig, family int) []struct{ level, opt, v int } {
	if !lc.TProxy {
		return nil
	}
	if family == unix.AF_INET6 {
		return []struct{ level, opt, v int }{{unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1}}
	}
	return []struct{ level, opt, v int }{{unix.SOL_IP, unix.IP_TRANSPARENT, 1}}
}
