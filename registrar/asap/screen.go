package asap

import (
	"encoding/binary"
	"errors"

	"github.com/rserpool/rserpool/wire"
)

// Verdict is what a connection's reader does with one received ASAP
// message, before the Core sees it.
type Verdict struct {
	// Msg is the request to pass to Core.Step; nil when there is none.
	Msg wire.Message
	// Reply is the ASAP_ERROR to send first; nil when none is due.
	Reply *wire.ASAPError
	// Bad marks a malformed or unexpected message: it counts toward the
	// connection's error limit (limits.max_errors).
	Bad bool
}

// Screen decides what to do with raw, one message received on an ASAP
// connection, and m, err = wire.ParseASAP(raw) (procedures.md §15,
// wire-format.md §8):
//
//   - the requests a registrar serves go to the Core; unknown parameters
//     with report bits get one cause 0x1 each, with the TLV, and the request
//     is still served;
//   - an undecodable message: unknown type with bits 01 ⇒ cause 0x2 with the
//     message; unknown parameter with report bits ⇒ cause 0x1 with the TLV;
//     invalid value ⇒ 0x3 with the TLV; other framing errors ⇒ RSPLIB's
//     0x0010. Unknown types with bits 00, stop-silently parameters and
//     anything inside an ASAP_ERROR get no answer;
//   - a message a registrar does not expect (a response, a keep-alive, a
//     cookie, an announce) ⇒ 0x2 with the message;
//   - an ASAP_ERROR is never answered.
//
// Cause information is cut so that the reply fits maxMessageSize.
func Screen(raw []byte, m wire.Message, err error, maxMessageSize int) Verdict {
	if err != nil {
		return Verdict{Reply: clip(ErrorFor(raw, err), maxMessageSize), Bad: true}
	}
	var unrec []wire.RawParam
	switch m := m.(type) {
	case *wire.Registration:
		unrec = m.Unrecognized.Unrecognized
	case *wire.Deregistration:
		unrec = m.Unrecognized.Unrecognized
	case *wire.HandleResolution:
		unrec = m.Unrecognized.Unrecognized
	case *wire.EndpointKeepAliveAck:
		unrec = m.Unrecognized.Unrecognized
	case *wire.EndpointUnreachable:
		unrec = m.Unrecognized.Unrecognized
	case *wire.ASAPError:
		return Verdict{}
	case nil:
		return Verdict{Bad: true}
	default:
		b, err := m.AppendBinary(nil)
		if err != nil {
			b = nil
		}
		return Verdict{Reply: clip(errorCause(wire.CauseUnrecognizedMessage, b), maxMessageSize), Bad: true}
	}
	v := Verdict{Msg: m}
	if len(unrec) > 0 {
		causes := make([]wire.ErrorCause, 0, len(unrec))
		for _, p := range unrec {
			causes = append(causes, wire.ErrorCause{Code: wire.CauseUnrecognizedParameter, Info: p.TLV})
		}
		v.Reply = clip(&wire.ASAPError{Error: wire.OperationError{Causes: causes}}, maxMessageSize)
	}
	return v
}

// ErrorFor returns the ASAP_ERROR that answers raw, which failed to decode
// with err, or nil when none is due (see Screen).
func ErrorFor(raw []byte, err error) *wire.ASAPError {
	var pe *wire.ParseError
	if !errors.As(err, &pe) {
		return nil
	}
	if len(raw) > 0 && raw[0] == wire.TypeASAPError {
		return nil
	}
	switch {
	case errors.Is(err, wire.ErrUnknownMessage):
		if len(raw) > 0 && raw[0]&0xc0 == 0x40 {
			return errorCause(wire.CauseUnrecognizedMessage, raw)
		}
		return nil
	case errors.Is(err, wire.ErrUnknownParameter):
		if pe.Type&0xc000 == 0x4000 || pe.Type&0xc000 == 0xc000 {
			info := pe.Param
			if info == nil {
				info = tlvAt(raw, pe.Offset)
			}
			return errorCause(wire.CauseUnrecognizedParameter, info)
		}
		return nil
	case errors.Is(err, wire.ErrInvalidValue):
		return errorCause(wire.CauseInvalidValues, tlvAt(raw, pe.Offset))
	}
	return errorCause(wire.CauseRSPLIBInvalidMessage, nil)
}

// RateLimited returns the answer to m when it exceeds its connection's
// message rate: cause 0x6 Lack of Resources for a registration,
// deregistration or resolution, nothing for other messages. forward says
// that m goes to the Core anyway: answers to our own keep-alives are never
// dropped.
func RateLimited(m wire.Message) (reply wire.Message, forward bool) {
	lack := &wire.OperationError{Causes: []wire.ErrorCause{{Code: wire.CauseLackOfResources}}}
	switch m := m.(type) {
	case *wire.Registration:
		return &wire.RegistrationResponse{Reject: true, PoolHandle: m.PoolHandle, ID: m.Element.ID, Error: lack}, false
	case *wire.Deregistration:
		return &wire.DeregistrationResponse{PoolHandle: m.PoolHandle, ID: m.ID, Error: lack}, false
	case *wire.HandleResolution:
		return &wire.HandleResolutionResponse{PoolHandle: m.PoolHandle, Error: lack}, false
	case *wire.EndpointKeepAliveAck:
		return nil, true
	}
	return nil, false
}

func errorCause(code wire.CauseCode, info []byte) *wire.ASAPError {
	return &wire.ASAPError{Error: wire.OperationError{Causes: []wire.ErrorCause{{Code: code, Info: info}}}}
}

// clip cuts the cause information of e, and drops causes, so that its
// encoding fits a message of limit bytes (limit <= 0: no limit).
func clip(e *wire.ASAPError, limit int) *wire.ASAPError {
	if e == nil || limit <= 0 {
		return e
	}
	room := limit - 8 // message header and Operation Error parameter header
	causes := e.Error.Causes
	for i := range causes {
		if room < 4 {
			causes = causes[:i]
			break
		}
		room -= 4 // cause header
		info := causes[i].Info
		if len(info) > room {
			info = info[:room&^3]
		}
		causes[i].Info = info
		room -= (len(info) + 3) &^ 3
	}
	e.Error.Causes = causes
	return e
}

// tlvAt returns a copy of the TLV starting at off, if it lies within b.
func tlvAt(b []byte, off int) []byte {
	if off < 0 || off+4 > len(b) {
		return nil
	}
	n := int(binary.BigEndian.Uint16(b[off+2:]))
	if n < 4 || off+n > len(b) {
		return nil
	}
	return append([]byte(nil), b[off:off+n]...)
}
