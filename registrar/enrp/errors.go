package enrp

import (
	"encoding/binary"
	"errors"

	"github.com/rserpool/rserpool/wire"
)

// ErrorFor returns the ENRP_ERROR to send back for a message raw that
// wire.ParseENRP rejected with err, or nil when the error is not to be
// reported (RFC 5354 §3-4: only unknown parameters with action bits 01 and
// unknown message types 0x40-0x7f are reported; everything else is dropped
// silently). Following RSPLIB, the Sending and Receiving Server IDs of the
// offending message are echoed unchanged when raw has them.
func ErrorFor(raw []byte, err error) *wire.ENRPError {
	var pe *wire.ParseError
	if !errors.As(err, &pe) {
		return nil
	}
	var c wire.ErrorCause
	switch {
	case pe.Report():
		c = wire.ErrorCause{Code: wire.CauseUnrecognizedParameter, Info: pe.Param}
	case errors.Is(err, wire.ErrUnknownMessage) && len(raw) > 0 && wire.ReportUnknownMessage(raw[0]):
		info := raw
		if len(info) > 256 {
			info = info[:256] // enough to identify it; bounded reply size
		}
		c = wire.ErrorCause{Code: wire.CauseUnrecognizedMessage, Info: append([]byte(nil), info...)}
	default:
		return nil
	}
	m := &wire.ENRPError{Error: wire.OperationError{Causes: []wire.ErrorCause{c}}}
	if len(raw) >= 12 {
		m.Sender = binary.BigEndian.Uint32(raw[4:])
		m.Receiver = binary.BigEndian.Uint32(raw[8:])
	}
	return m
}
