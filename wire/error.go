package wire

import (
	"errors"
	"strconv"
)

// ParseError reports why and where a message could not be decoded.
type ParseError struct {
	Offset int    // byte offset from the start of the message
	Type   uint16 // message type (offset 0) or parameter type being decoded, 0 if unknown
	Err    error  // one of the Err* sentinels, usable with errors.Is

	// Param is a copy of the whole unrecognized parameter (header and value,
	// no padding) when Err is ErrUnknownParameter and the parameter's action
	// bits are 01 ("stop and report"): the Info of an Unrecognized Parameter
	// cause (0x1). Nil otherwise.
	Param []byte
}

func (e *ParseError) Error() string {
	return "wire: " + e.Err.Error() + " at offset " + strconv.Itoa(e.Offset) +
		" (type 0x" + strconv.FormatUint(uint64(e.Type), 16) + ")"
}

func (e *ParseError) Unwrap() error { return e.Err }

// Report tells whether the sender of the message should be told about the
// error: true for an unknown parameter whose action bits ask for a report.
// (Unknown message types: see ReportUnknownMessage.)
func (e *ParseError) Report() bool { return e.Param != nil }

// Sentinel errors carried by ParseError.Err.
var (
	ErrTruncated           = errors.New("truncated")
	ErrLength              = errors.New("bad length field")
	ErrPadding             = errors.New("bad padding")
	ErrUnknownMessage      = errors.New("unknown message type")
	ErrUnknownParameter    = errors.New("unrecognized parameter")
	ErrUnexpectedParameter = errors.New("unexpected parameter")
	ErrMissingParameter    = errors.New("missing parameter")
	ErrInvalidValue        = errors.New("invalid value")
)

// Errors returned by the encoders (AppendBinary, Marshal).
var (
	// ErrTooLong: a message or parameter does not fit its 16-bit length field.
	ErrTooLong = errors.New("wire: encoded length exceeds 65535 bytes")
	// ErrBadTransport: a transport parameter has an unknown type or the
	// wrong number of addresses (SCTP: at least one; TCP, UDP, UDP-Lite,
	// DCCP: exactly one), or a required transport is absent.
	ErrBadTransport = errors.New("wire: bad transport parameter")
	// ErrBadAddress: an address is neither IPv4 nor IPv6 (the zero netip.Addr).
	ErrBadAddress = errors.New("wire: invalid IP address")
	// ErrNoCause: an Operation Error without any cause.
	ErrNoCause = errors.New("wire: operation error without causes")
)

// ReportUnknownMessage tells, from the action bits of an unknown message
// type (RFC 5354 §4), whether the receiver reports it with an
// "Unrecognized Message" cause (0x2): true for 0x40-0x7f. Types 0x00-0x3f
// are dropped silently; 0x80-0xff are reserved and dropped as well.
func ReportUnknownMessage(t uint8) bool { return t&0xc0 == 0x40 }

func perr(off int, typ uint16, err error) *ParseError {
	return &ParseError{Offset: off, Type: typ, Err: err}
}
