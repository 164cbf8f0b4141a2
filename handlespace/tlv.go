package handlespace

import (
	"encoding/binary"
	"net/netip"

	"github.com/rserpool/rserpool/wire"
)

// The cause information of a rejection is a complete parameter (TLV). wire
// encodes parameters only inside messages, so these helpers encode an
// ASAP_REGISTRATION carrying the parameter and cut it out:
//
//	 0  message header (4)
//	 4  Pool Handle "x" (8 with padding)
//	12  Pool Element header (4), ID, Home ENRP ID, Registration Life (12)
//	28  User Transport TLV, padded
//	..  Policy TLV
const userTransportOffset = 28

var (
	dummyTransport = wire.Transport{Type: wire.TransportTCP, Port: 1, Addrs: []netip.Addr{netip.IPv4Unspecified()}}
	dummyPolicy    = wire.Policy{Type: wire.PolicyRoundRobin}
)

// paramsOf returns the encoded User Transport and Policy parameters.
func paramsOf(t wire.Transport, p wire.Policy) (transport, pol []byte) {
	m := wire.Registration{PoolHandle: "x", Element: wire.PoolElement{ID: 1, User: t, Policy: p}}
	b, err := m.AppendBinary(nil)
	if err != nil || len(b) < userTransportOffset+4 {
		return nil, nil
	}
	tl := int(binary.BigEndian.Uint16(b[userTransportOffset+2:]))
	polOff := userTransportOffset + (tl+3)&^3
	if tl < 4 || len(b) < polOff+4 {
		return nil, nil
	}
	pl := int(binary.BigEndian.Uint16(b[polOff+2:]))
	if pl < 4 || len(b) < polOff+pl {
		return nil, nil
	}
	return b[userTransportOffset : userTransportOffset+tl : userTransportOffset+tl], b[polOff : polOff+pl : polOff+pl]
}

// policyTLV encodes p as a Pool Member Selection Policy parameter (nil if it
// cannot be encoded).
func policyTLV(p wire.Policy) []byte {
	_, b := paramsOf(dummyTransport, p)
	return b
}

// transportTLV encodes t as a transport parameter (nil if it cannot be
// encoded).
func transportTLV(t wire.Transport) []byte {
	b, _ := paramsOf(t, dummyPolicy)
	return b
}
