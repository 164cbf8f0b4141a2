package pucache

import (
	"net/netip"

	"github.com/rserpool/rserpool/wire"
)

// Element is one pool element as a pool user sees it: where to connect and
// the policy values the registrar returned for it.
type Element struct {
	ID      uint32
	Network string // "tcp" or "sctp"
	Addr    string // "host:port", ready for net.Dial
	// Use is the user transport's Transport Use: UseDataAndControl when the
	// PE runs an ASAP control channel (cookies, business cards) on the same
	// association as its data (over TCP: the TCP mapping), UseData for a
	// plain server.
	Use      wire.TransportUse
	Weight   uint32
	Priority uint32
	Load     uint32
}

// ElementFromWire converts a Pool Element parameter, as a Handle Resolution
// Response or an ASAP Business Card carries it. ok is false when the PE has
// no user transport a pool user can dial (no address, or a transport other
// than TCP and SCTP).
func ElementFromWire(pe wire.PoolElement) (Element, bool) {
	var network string
	switch pe.User.Type {
	case wire.TransportTCP:
		network = "tcp"
	case wire.TransportSCTP:
		network = "sctp"
	default:
		return Element{}, false
	}
	if len(pe.User.Addrs) == 0 || pe.User.Port == 0 {
		return Element{}, false
	}
	a := pe.User.Addrs[0]
	// Prefer an IPv4 address when the PE lists several (SCTP multi-homing).
	for _, x := range pe.User.Addrs {
		if x.Is4() || x.Is4In6() {
			a = x
			break
		}
	}
	if !a.IsValid() || a.IsUnspecified() {
		return Element{}, false
	}
	return Element{
		ID:       pe.ID,
		Network:  network,
		Addr:     netip.AddrPortFrom(a.Unmap(), pe.User.Port).String(),
		Use:      pe.User.Use,
		Weight:   pe.Policy.Weight,
		Priority: pe.Policy.Priority,
		Load:     pe.Policy.Load,
	}, true
}
