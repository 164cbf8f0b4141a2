package asap

import "testing"

// Programs that FuzzCore once failed on, replayed with the same checks.

// TestRegressionUnencodableTransportFromENRP: a Handle Update built with a
// user transport the encoder refuses (here a TCP transport without an
// address) made the next resolution of its pool fail to encode, so the
// PU got no answer. Such an update cannot arrive over the wire (the
// simulation now sends every message through it); the resolution is
// answered.
func TestRegressionUnencodableTransportFromENRP(t *testing.T) {
	newSim(t).run([]byte("c0100b01x22010000000000000000000000000000000000000000000000000"))
}

// TestRegressionUnspecifiedAddressUnknownSource: a registration with the
// user address :: over a connection whose own address is unknown was
// stored with no address at all (the substitution had nothing to put in),
// and every message carrying the PE then failed to encode: resolutions of
// its pool went unanswered and its Handle Updates were lost. It is refused
// with cause 0x3 now.
func TestRegressionUnspecifiedAddressUnknownSource(t *testing.T) {
	s := newSim(t)
	s.run([]byte("Z70\xff000007000Y"))
	if s.hs.NumElements() != 0 {
		t.Fatal("PE without an address stored")
	}
}
