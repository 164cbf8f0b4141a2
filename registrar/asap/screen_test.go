package asap

import (
	"bytes"
	"testing"

	"github.com/rserpool/rserpool/wire"
)

func TestScreen(t *testing.T) {
	reg, _ := (&wire.Registration{PoolHandle: "P", Element: wire.PoolElement{ID: 1, User: wire.Transport{
		Type: wire.TransportTCP, Port: 1, Addrs: addrs("127.0.0.1")}, Policy: wire.Policy{Type: wire.PolicyRoundRobin}}}).AppendBinary(nil)
	resp, _ := (&wire.RegistrationResponse{PoolHandle: "P", ID: 1}).AppendBinary(nil)
	asapErr, _ := (&wire.ASAPError{Error: wire.OperationError{Causes: []wire.ErrorCause{{Code: 6}}}}).AppendBinary(nil)
	// A resolution with a skip-and-report parameter (0xc123) after the handle.
	unknownParam := []byte{0x05, 0, 0, 0x18, 0, 9, 0, 0xc, 'E', 'c', 'h', 'o', 'P', 'o', 'o', 'l', 0xc1, 0x23, 0, 7, 0xde, 0xad, 0xbe, 0}
	for _, tc := range []struct {
		name      string
		raw       []byte
		forward   bool
		bad       bool
		cause     wire.CauseCode // of the reply; 0 = no reply
		infoIsRaw bool           // the reply carries the message itself
	}{
		{"registration", reg, true, false, 0, false},
		{"unknown type, bits 01", []byte{0x40, 0, 0, 8, 1, 2, 3, 4}, false, true, wire.CauseUnrecognizedMessage, true},
		{"unknown type, bits 00", []byte{0x30, 0, 0, 4}, false, true, 0, false},
		{"length beyond the message", []byte{0x05, 0, 0xff, 0xff, 0, 9}, false, true, wire.CauseRSPLIBInvalidMessage, false},
		{"empty", nil, false, true, wire.CauseRSPLIBInvalidMessage, false},
		{"unknown parameter reported, request served", unknownParam, true, false, wire.CauseUnrecognizedParameter, false},
		{"a response is unexpected", resp, false, true, wire.CauseUnrecognizedMessage, true},
		{"ASAP_ERROR is never answered", asapErr, false, false, 0, false},
		{"broken ASAP_ERROR is not answered", []byte{0x0e, 0, 0, 12, 0, 1, 0, 9, 0, 0, 0, 0}, false, true, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := wire.ParseASAP(tc.raw)
			v := Screen(tc.raw, m, err, 8192)
			if (v.Msg != nil) != tc.forward || v.Bad != tc.bad {
				t.Fatalf("forward %v bad %v, want %v %v", v.Msg != nil, v.Bad, tc.forward, tc.bad)
			}
			if tc.cause == 0 {
				if v.Reply != nil {
					t.Fatalf("reply %+v", v.Reply)
				}
				return
			}
			if v.Reply == nil || v.Reply.Error.Causes[0].Code != tc.cause {
				t.Fatalf("reply %+v, want cause %#x", v.Reply, uint16(tc.cause))
			}
			if tc.infoIsRaw && !bytes.Equal(v.Reply.Error.Causes[0].Info, tc.raw) {
				t.Errorf("cause information %x, want the message %x", v.Reply.Error.Causes[0].Info, tc.raw)
			}
		})
	}
}

// TestScreenReplyFits: the reply to a message with many unknown
// parameters, each reported with its TLV, is cut to the message size.
func TestScreenReplyFits(t *testing.T) {
	const limit = 512
	b := []byte{0x05, 0, 0, 0, 0, 9, 0, 5, 'P', 0, 0, 0}
	for len(b)+8 <= limit {
		b = append(b, 0xc1, 0x23, 0, 8, 1, 2, 3, 4)
	}
	b[2], b[3] = byte(len(b)>>8), byte(len(b))
	m, err := wire.ParseASAP(b)
	if err != nil {
		t.Fatal(err)
	}
	v := Screen(b, m, err, limit)
	if v.Msg == nil || v.Reply == nil {
		t.Fatalf("verdict %+v", v)
	}
	out, err := v.Reply.AppendBinary(nil)
	if err != nil || len(out) > limit {
		t.Fatalf("reply of %d bytes (%v), limit %d", len(out), err, limit)
	}
	if _, err := wire.ParseASAP(out); err != nil {
		t.Fatal(err)
	}
}

func TestRateLimited(t *testing.T) {
	lack := func(e *wire.OperationError) bool {
		return e != nil && len(e.Causes) == 1 && e.Causes[0].Code == wire.CauseLackOfResources
	}
	if r, fwd := RateLimited(&wire.Registration{PoolHandle: "P", Element: wire.PoolElement{ID: 7}}); fwd ||
		!lack(r.(*wire.RegistrationResponse).Error) || !r.(*wire.RegistrationResponse).Reject || r.(*wire.RegistrationResponse).ID != 7 {
		t.Errorf("registration: %+v %v", r, fwd)
	}
	if r, fwd := RateLimited(&wire.HandleResolution{PoolHandle: "P"}); fwd || !lack(r.(*wire.HandleResolutionResponse).Error) {
		t.Errorf("resolution: %+v %v", r, fwd)
	}
	if r, fwd := RateLimited(&wire.EndpointKeepAliveAck{PoolHandle: "P", ID: 1}); r != nil || !fwd {
		t.Errorf("keep-alive ack: %+v %v, want forwarded", r, fwd)
	}
	if r, fwd := RateLimited(&wire.EndpointUnreachable{PoolHandle: "P", ID: 1}); r != nil || fwd {
		t.Errorf("unreachable: %+v %v, want dropped", r, fwd)
	}
}
