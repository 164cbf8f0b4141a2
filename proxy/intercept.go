package proxy

import (
	"net"
	"net/netip"

	"github.com/rserpool/rserpool/failover"
)

// interceptPools picks the pool of an intercepted connection by the
// address its client connected to (the original destination, before an
// nftables REDIRECT or TPROXY rule sent it to the proxy).
type interceptPools struct {
	m map[netip.AddrPort]*failover.Dialer
}

// dialer returns the dialer of the pool serving dst, or nil.
func (ip *interceptPools) dialer(dst netip.AddrPort) *failover.Dialer {
	return ip.m[netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())]
}

// mustAddrPort parses an address that Validate has checked.
func mustAddrPort(s string) netip.AddrPort {
	ap := netip.MustParseAddrPort(s)
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// connDst returns the original destination of an accepted connection of
// the goroutine relay (its local address when it was not redirected).
func connDst(c net.Conn) netip.AddrPort {
	local, _ := addrPort(c.LocalAddr())
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return local
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return local
	}
	dst := local
	rc.Control(func(fd uintptr) { dst = originalDst(int(fd), local) })
	return dst
}
