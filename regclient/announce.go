package regclient

import (
	"net/netip"
	"slices"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// maxAnnounced bounds the registrar addresses taken from one announce (a
// datagram can hold hundreds of transport parameters).
const maxAnnounced = 8

// AnnounceAddrs returns the registrar addresses an ASAP Server Announce
// (RFC 5352 §3.6) names; src is the datagram's source. It is the one
// announce parser of the project (pucache, pe-agent).
//
// The rule:
//
//   - Each SCTP Transport parameter is one registrar, sctp://, with every
//     usable address of the parameter (a multi-homed association).
//   - Each address of a TCP Transport parameter is one registrar, tcp://
//     (the TCP mapping).
//   - A transport parameter without addresses stands for the datagram's
//     source address.
//   - An announce without transport parameters comes from RSPLIB: its
//     registrars send none, speak only SCTP and send announces from a UDP
//     socket bound to their ASAP port (a random one, 10000-59999, unless
//     configured). So the registrar is SCTP at the source address and the
//     source port. (RFC 5352 says port 3863; following it would miss every
//     RSPLIB registrar not configured to that port, and a registrar that
//     follows the RFC's 3863 advertises it in a transport parameter.)
//
// Other transport types, port 0, and unspecified or multicast addresses
// are skipped; at most 8 registrars are returned, without repeats.
// Announces are not authenticated: the result only adds candidates to a
// bounded Set.
func AnnounceAddrs(a *wire.ServerAnnounce, src netip.AddrPort) []transport.Addr {
	srcIP := src.Addr().Unmap()
	if len(a.Transports) == 0 {
		if !usable(srcIP) || src.Port() == 0 {
			return nil
		}
		return []transport.Addr{transport.AddrFrom(transport.SchemeSCTP, netip.AddrPortFrom(srcIP, src.Port()))}
	}
	var out []transport.Addr
	add := func(t wire.Transport) {
		if a, err := transport.AddrFromTransport(t); err == nil && !slices.Contains(out, a) && len(out) < maxAnnounced {
			out = append(out, a)
		}
	}
	for _, t := range a.Transports {
		if len(out) == maxAnnounced {
			break
		}
		if len(t.Addrs) == 0 && usable(srcIP) {
			t.Addrs = []netip.Addr{srcIP}
		}
		switch t.Type {
		case wire.TransportSCTP:
			add(t)
		case wire.TransportTCP:
			for _, ip := range t.Addrs {
				one := t
				one.Addrs = []netip.Addr{ip}
				add(one)
			}
		}
	}
	return out
}

func usable(ip netip.Addr) bool { return ip.IsValid() && !ip.IsUnspecified() && !ip.IsMulticast() }
