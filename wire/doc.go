// Package wire encodes and decodes the RSerPool messages: ASAP (RFC 5352)
// and ENRP (RFC 5353) with the parameters of RFC 5354 and the policy
// parameters of RFC 5356, plus the RSPLIB extensions seen on the wire
// (Handle Resolution Option 0x803f, private cause codes, policies
// 0xb0001001-4 and 0xb0002001-3, TCP Transport Use, Handle Update T flag).
//
// # Usage
//
// Decode with Parse (or ParseASAP/ParseENRP): the protocol comes from the
// SCTP PPID or the socket, because ASAP and ENRP type numbers overlap.
//
//	m, err := wire.Parse(wire.ASAP, buf)
//	var pe *wire.ParseError
//	if errors.As(err, &pe) && errors.Is(err, wire.ErrUnknownParameter) && pe.Report() {
//		// answer with cause 0x1 carrying pe.Param
//	}
//	switch m := m.(type) {
//	case *wire.Registration:
//		if err := m.Element.Validate(); err != nil { ... } // *ValidationError names the cause
//	}
//
// Encode by appending to a buffer: b, err = m.AppendBinary(b[:0]); with
// enough capacity this does not allocate. Marshal allocates a new slice.
//
// Decoding is lenient where RSerPool implementations differ (Message and
// nested Lengths with or without the final padding, wire-format.md §1.1) and
// strict about structure: lengths, nesting, parameter order and fixed sizes.
// Unknown parameters follow their action bits: 00 and 01 stop with
// ErrUnknownParameter (01 also returns the parameter in ParseError.Param);
// 10 skips; 11 skips and lists it in the message's Unrecognized field.
// Unknown message types give ErrUnknownMessage; ReportUnknownMessage tells
// whether to answer. Semantic checks (IDs, ports, handle lengths) are left to
// the caller, helped by PoolElement.Validate, Transport.Validate and
// ValidatePoolHandle.
//
// Encoders write RFC 5354 lengths (excluding the final padding). Unrecognized
// parameters are not re-encoded. IPv4-mapped IPv6 addresses are sent as IPv4
// Address parameters.
//
// The PE checksum of the handlespace audit (RFC 5353 §3.6.2) is kept
// incrementally with ChecksumSum, PEChecksumPart, Add, Sub and Checksum.
//
// # Concurrency
//
// The package has no state: functions are safe for concurrent use. A decoded
// message owns all its memory (it never aliases the input buffer); its
// slices may share one backing array, so treat them as read-only or copy
// before appending. Encoding reads the message and may run concurrently
// with other readers.
//
// # Limitations
//
// Registration Life is carried as a number; whether it means seconds (RFC)
// or milliseconds (RSPLIB) is the caller's decision. Unknown policy types
// round-trip through Policy.Raw. Extra bytes at the end of a known policy's
// body are ignored on decode and not re-encoded. A parameter type is matched
// exactly, except the Handle Resolution Option, which is accepted as 0x003f
// and 0x803f and always sent as 0x803f.
package wire
