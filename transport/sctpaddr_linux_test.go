//go:build linux && !386

package transport

import (
	"net"
	"testing"

	"github.com/ishidawataru/sctp"
)

// TestSCTPAddrOfGoneAssociation: the SCTP library reports the addresses of
// an association that ended before it was accepted as a nil *SCTPAddr in a
// non-nil net.Addr; a conn built on it crashed whoever printed its remote
// address (a registrar accepting a PE that gave up in the backlog, found by
// interop case 8). sctpAddr turns such values into nil, and newSCTPConn
// refuses them.
func TestSCTPAddrOfGoneAssociation(t *testing.T) {
	var typedNil *sctp.SCTPAddr
	for _, a := range []net.Addr{nil, typedNil, &sctp.SCTPAddr{Port: 9}} {
		if got := sctpAddr(a); got != nil {
			t.Errorf("sctpAddr(%#v) = %v, want nil", a, got)
		}
	}
	ok := &sctp.SCTPAddr{IPAddrs: []net.IPAddr{{IP: net.IPv4(192, 0, 2, 1)}}, Port: 9}
	if got := sctpAddr(ok); got != ok {
		t.Errorf("sctpAddr(%v) = %v", ok, got)
	}
}
