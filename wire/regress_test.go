package wire

import (
	"net/netip"
	"testing"
)

// TestRegressionIPv4MappedAddress: an IPv6 Address parameter holding an
// IPv4-mapped address (found by FuzzParseENRP) decodes as the IPv4 address,
// which is what the encoder sends for it, so decode→encode→decode is stable.
func TestRegressionIPv4MappedAddress(t *testing.T) {
	msg := []byte{
		0x01, 0x00, 0x00, 0x38, // ENRP_PRESENCE, length 56
		0x0a, 0x0b, 0x0c, 0x0d, // sender
		0x00, 0x00, 0x00, 0x00, // receiver
		0x00, 0x0f, 0x00, 0x06, 0x29, 0xa5, 0x00, 0x00, // PE checksum
		0x00, 0x0b, 0x00, 0x24, // Server Information, length 36
		0x0a, 0x0b, 0x0c, 0x0d, // server ID
		0x00, 0x04, 0x00, 0x1c, 0x26, 0xad, 0x00, 0x00, // SCTP Transport, port 9901
		0x00, 0x02, 0x00, 0x14, // IPv6 Address
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1, // ::ffff:192.0.2.1
	}
	m, err := ParseENRP(msg)
	if err != nil {
		t.Fatal(err)
	}
	got := m.(*Presence).Info.Transport.Addrs[0]
	if want := netip.MustParseAddr("192.0.2.1"); got != want {
		t.Fatalf("address = %v, want %v", got, want)
	}
	enc, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := ParseENRP(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got2 := m2.(*Presence).Info.Transport.Addrs[0]; got2 != got {
		t.Fatalf("after re-encoding: %v, want %v", got2, got)
	}
}
