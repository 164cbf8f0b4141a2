package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRoundTripAllTypes: every message type, with every transport kind,
// IPv6 and several policies, decodes to the value it was encoded from.
func TestRoundTripAllTypes(t *testing.T) {
	asap, enrp, _ := wiresharkMessages()
	opaque := &Registration{PoolHandle: "OpaquePool", Element: PoolElement{ID: 9,
		User:   Transport{Type: TransportOpaque, Opaque: []byte("urn:x-example:7")},
		Policy: Policy{Type: 0xb0002004, Raw: []uint32{1, 2}}}}
	rsplibDPF := &BusinessCard{PoolHandle: "P", Policy: &Policy{Type: PolicyWeightedRandomDPF, Weight: 1, WeightDPF: 2, Distance: 3},
		Elements: []PoolElement{{ID: 1, User: Transport{Type: TransportSCTP, Port: 1, Addrs: []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.1")}},
			Policy: Policy{Type: PolicyRandomizedPriorityLUDegr, Load: 1, LoadDegradation: 2}}}}
	asap = append(asap, opaque, rsplibDPF)
	for _, set := range []struct {
		p    Protocol
		msgs []Message
	}{{ASAP, asap}, {ENRP, enrp}} {
		for _, m := range set.msgs {
			b, err := Marshal(m)
			if err != nil {
				t.Fatalf("%s: %v", MessageName(m), err)
			}
			if len(b)%4 != 0 || int(b[2])<<8|int(b[3]) > len(b) {
				t.Errorf("%s: %d bytes, Message Length %d", MessageName(m), len(b), int(b[2])<<8|int(b[3]))
			}
			got, err := Parse(set.p, b)
			if err != nil {
				t.Fatalf("%s: Parse(%x): %v", MessageName(m), b, err)
			}
			want := m
			if m == rsplibDPF {
				// IPv4-mapped addresses are sent as IPv4 Address parameters.
				c := *rsplibDPF
				c.Elements = []PoolElement{c.Elements[0]}
				c.Elements[0].User.Addrs = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
				want = &c
			}
			if d := cmp.Diff(want, got, cmpOpts); d != "" {
				t.Errorf("%s (-sent +decoded):\n%s", MessageName(m), d)
			}
		}
	}
}

func TestHandleResolutionOptionWithoutActionBits(t *testing.T) {
	m, err := ParseASAP(parseHex(t, "05 00 00 18   00 09 00 0c 45 63 68 6f 50 6f 6f 6c   00 3f 00 08 ff ff ff ff"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&HandleResolution{PoolHandle: "EchoPool", HasItems: true, Items: 0xffffffff}, m); d != "" {
		t.Error(d)
	}
}

func TestEncodeErrors(t *testing.T) {
	tcp := Transport{Type: TransportTCP, Port: 1, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
	tests := []struct {
		name string
		m    Message
		err  error
	}{
		{"no user transport", &Registration{PoolHandle: "P", Element: PoolElement{ID: 1, Policy: rr}}, ErrBadTransport},
		{"SCTP without address", &ServerAnnounce{Transports: []Transport{{Type: TransportSCTP, Port: 1}}}, ErrBadTransport},
		{"TCP with two addresses", &ServerAnnounce{Transports: []Transport{{Type: TransportTCP, Port: 1,
			Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}}}}, ErrBadTransport},
		{"zero address", &ServerAnnounce{Transports: []Transport{{Type: TransportUDP, Port: 1, Addrs: []netip.Addr{{}}}}}, ErrBadAddress},
		{"empty operation error", &ASAPError{}, ErrNoCause},
		{"handle too long", &HandleResolution{PoolHandle: PoolHandle(strings.Repeat("x", 70000))}, ErrTooLong},
		{"message too long", &HandleResolutionResponse{PoolHandle: "P", Elements: func() []PoolElement {
			pes := make([]PoolElement, 2000)
			for i := range pes {
				pes[i] = PoolElement{ID: uint32(i + 1), User: tcp, Policy: rr}
			}
			return pes
		}()}, ErrTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("keep")
			b, err := tc.m.AppendBinary(prefix)
			if !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			if !bytes.Equal(b, prefix) {
				t.Errorf("on error AppendBinary returned %d bytes, want the original %d", len(b), len(prefix))
			}
		})
	}
}

// TestAppendAfterPrefix: padding is relative to the message, not to the
// start of the caller's buffer.
func TestAppendAfterPrefix(t *testing.T) {
	m := specGoldens[5].msg // odd-length handle
	want, _ := Marshal(m)
	b, err := m.AppendBinary([]byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[3:], want) {
		t.Errorf("got %x, want %x", b[3:], want)
	}
}
