// Package calcapp speaks RSPLIB's CalcApp service (rspserver -calcapp,
// calcappclient) over the session layer: a pool user hands a job of
// JobSize "calculations" to a worker PE, which works on it at its capacity
// (shared by its jobs), sends its progress as cookies, and reports the job
// complete. When the worker dies, the pool user's session fails over and
// echoes the last cookie; the next worker takes the job over from there
// instead of starting again.
//
// Formats (RSPLIB src/calcapppackets.h; network byte order, packed),
// application PPID 34:
//
//	message: Type u8 | Flags u8 | Length u16 (24) | JobID u32 | JobSize u64 | Completed u64
//	cookie:  JobID u32 | JobSize u64 | Completed u64      (20 bytes)
//
// Types: 1 Request, 2 Accept, 3 Reject, 4 Abort, 5 Complete, 6 KeepAlive,
// 7 KeepAliveAck. Decoders check lengths before reading.
package calcapp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PPID is CalcApp's payload protocol identifier.
const PPID = 34

// Message types.
const (
	TypeRequest      = 1
	TypeAccept       = 2
	TypeReject       = 3
	TypeAbort        = 4
	TypeComplete     = 5
	TypeKeepAlive    = 6
	TypeKeepAliveAck = 7
)

// MessageLen and CookieLen are the encoded sizes.
const (
	MessageLen = 24
	CookieLen  = 20
)

// ErrFormat is wrapped by every decoding error.
var ErrFormat = errors.New("calcapp: malformed message")

// Message is one CalcApp message; JobSize and Completed are only
// meaningful in Request, Complete (and cookies).
type Message struct {
	Type      uint8
	JobID     uint32
	JobSize   uint64
	Completed uint64
}

// AppendMessage appends the encoded message to b.
func AppendMessage(b []byte, m Message) []byte {
	b = append(b, m.Type, 0)
	b = binary.BigEndian.AppendUint16(b, MessageLen)
	return AppendCookie(b, Cookie{JobID: m.JobID, JobSize: m.JobSize, Completed: m.Completed})
}

// ParseMessage decodes a message. Like RSPLIB it needs at least 24 bytes;
// Length must cover them and fit the message.
func ParseMessage(b []byte) (Message, error) {
	if len(b) < MessageLen {
		return Message{}, fmt.Errorf("%w: %d bytes, want %d", ErrFormat, len(b), MessageLen)
	}
	if n := int(binary.BigEndian.Uint16(b[2:])); n < MessageLen || n > len(b) {
		return Message{}, fmt.Errorf("%w: Length %d in a message of %d bytes", ErrFormat, n, len(b))
	}
	j := decodeJob(b[4:])
	m := Message{Type: b[0], JobID: j.JobID, JobSize: j.JobSize, Completed: j.Completed}
	if m.Type < TypeRequest || m.Type > TypeKeepAliveAck {
		return m, fmt.Errorf("%w: type %d", ErrFormat, m.Type)
	}
	return m, nil
}

// Cookie is a worker's saved progress on a job.
type Cookie struct {
	JobID     uint32
	JobSize   uint64
	Completed uint64
}

// AppendCookie appends the encoded cookie to b.
func AppendCookie(b []byte, c Cookie) []byte {
	b = binary.BigEndian.AppendUint32(b, c.JobID)
	b = binary.BigEndian.AppendUint64(b, c.JobSize)
	return binary.BigEndian.AppendUint64(b, c.Completed)
}

// ParseCookie decodes a cookie (20 bytes; RSPLIB's worker takes longer
// ones too and reads the first 20). Completed may not exceed JobSize.
func ParseCookie(b []byte) (Cookie, error) {
	if len(b) < CookieLen {
		return Cookie{}, fmt.Errorf("%w: cookie of %d bytes, want %d", ErrFormat, len(b), CookieLen)
	}
	c := decodeJob(b)
	if c.Completed > c.JobSize {
		return c, fmt.Errorf("%w: cookie says %d of %d calculations done", ErrFormat, c.Completed, c.JobSize)
	}
	return c, nil
}

// decodeJob decodes the 20 bytes JobID | JobSize | Completed that cookies and
// messages share; b holds at least 20 bytes.
func decodeJob(b []byte) Cookie {
	return Cookie{JobID: binary.BigEndian.Uint32(b), JobSize: binary.BigEndian.Uint64(b[4:]), Completed: binary.BigEndian.Uint64(b[12:])}
}
