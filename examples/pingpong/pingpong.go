// Package pingpong speaks RSPLIB's PingPong service (rspserver -pingpong,
// pingpongclient) over the session layer: a pool user sends Pings, the PE
// answers each with a Pong that carries its own reply counter, and sends a
// cookie with that counter, so that after a failover the next PE goes on
// counting where the dead one stopped.
//
// Formats (RSPLIB src/pingpongpackets.h; network byte order, packed),
// application PPID 33:
//
//	Ping:   Type=0x01 u8 | Flags u8 | Length u16 (whole message) | MessageNo u64 | Data...
//	Pong:   Type=0x02 u8 | Flags u8 | Length u16 | MessageNo u64 | ReplyNo u64 | Data...
//	Cookie: "<PP-TD1>" | ReplyNo u64     (the next reply number; 16 bytes)
//
// Every decoder checks lengths before reading; Length must fit the message.
package pingpong

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/rserpool/rserpool/session"
)

// PPID is the PingPong application's payload protocol identifier.
const PPID = 33

// Message types.
const (
	TypePing = 0x01
	TypePong = 0x02
)

// CookieID starts every PingPong cookie.
const CookieID = "<PP-TD1>"

const (
	headerLen = 4
	pingLen   = headerLen + 8
	pongLen   = headerLen + 16
	cookieLen = len(CookieID) + 8
	// MaxData is the most payload a Ping or Pong carries (Length is 16 bits).
	MaxData = 0xffff - pongLen
)

// ErrFormat is wrapped by every decoding error.
var ErrFormat = errors.New("pingpong: malformed message")

// Ping is a pool user's request.
type Ping struct {
	MessageNo uint64
	Data      []byte
}

// Pong is a PE's answer: the Ping's number, the PE's reply counter and the
// Ping's data.
type Pong struct {
	MessageNo uint64
	ReplyNo   uint64
	Data      []byte
}

// AppendPing appends the encoded Ping to b.
func AppendPing(b []byte, p Ping) ([]byte, error) {
	if len(p.Data) > MaxData {
		return b, fmt.Errorf("pingpong: %d bytes of data, at most %d", len(p.Data), MaxData)
	}
	b = header(b, TypePing, pingLen+len(p.Data), p.MessageNo)
	return append(b, p.Data...), nil
}

// AppendPong appends the encoded Pong to b.
func AppendPong(b []byte, p Pong) ([]byte, error) {
	if len(p.Data) > MaxData {
		return b, fmt.Errorf("pingpong: %d bytes of data, at most %d", len(p.Data), MaxData)
	}
	b = header(b, TypePong, pongLen+len(p.Data), p.MessageNo)
	b = binary.BigEndian.AppendUint64(b, p.ReplyNo)
	return append(b, p.Data...), nil
}

// header appends the common header of a message of n bytes and its
// MessageNo.
func header(b []byte, typ byte, n int, messageNo uint64) []byte {
	b = append(b, typ, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	return binary.BigEndian.AppendUint64(b, messageNo)
}

// body checks the common header of a message of type typ and at least min
// bytes and returns the bytes its Length covers.
func body(b []byte, typ byte, min int) ([]byte, error) {
	if len(b) < headerLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrFormat, len(b))
	}
	if b[0] != typ {
		return nil, fmt.Errorf("%w: type 0x%02x, want 0x%02x", ErrFormat, b[0], typ)
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n < min || n > len(b) {
		return nil, fmt.Errorf("%w: Length %d in a message of %d bytes (minimum %d)", ErrFormat, n, len(b), min)
	}
	return b[:n], nil
}

// ParsePing decodes a Ping. Data aliases b.
func ParsePing(b []byte) (Ping, error) {
	m, err := body(b, TypePing, pingLen)
	if err != nil {
		return Ping{}, err
	}
	return Ping{MessageNo: binary.BigEndian.Uint64(m[4:]), Data: m[pingLen:]}, nil
}

// ParsePong decodes a Pong. Data aliases b.
func ParsePong(b []byte) (Pong, error) {
	m, err := body(b, TypePong, pongLen)
	if err != nil {
		return Pong{}, err
	}
	return Pong{MessageNo: binary.BigEndian.Uint64(m[4:]), ReplyNo: binary.BigEndian.Uint64(m[12:]), Data: m[pongLen:]}, nil
}

// Cookie encodes the state a PE saves: the next reply number.
func Cookie(replyNo uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(CookieID), replyNo)
}

// ParseCookie decodes a cookie (as RSPLIB's server does: exactly 16 bytes
// starting with CookieID).
func ParseCookie(b []byte) (uint64, error) {
	if len(b) != cookieLen || string(b[:len(CookieID)]) != CookieID {
		return 0, fmt.Errorf("%w: not a PingPong cookie (%d bytes)", ErrFormat, len(b))
	}
	return binary.BigEndian.Uint64(b[len(CookieID):]), nil
}

// HandlerConfig configures Handler.
type HandlerConfig struct {
	// Log gets one line per session event; nil discards them.
	Log *slog.Logger
	// FailAfter, if not zero, ends each session after that many Pongs (and
	// their cookies), like RSPLIB's failure tester (rspserver
	// -pppfailureafter): the pool user then fails over.
	FailAfter int
}

// Handler returns the PE side: each session counts its replies from 1, or
// from the reply number of a Cookie Echo; after each Pong it sends a
// cookie with the next reply number (as RSPLIB's server does). A malformed
// message or Cookie Echo ends the session.
func Handler(cfg HandlerConfig) func(ctx context.Context, p *session.Peer) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, p *session.Peer) {
		l := log.With("pu", p.RemoteAddr().String())
		l.Info("session up")
		replyNo := uint64(1)
		var out []byte
		for replies := 0; cfg.FailAfter == 0 || replies < cfg.FailAfter; replies++ {
			m, err := p.Recv(ctx)
			if err != nil {
				l.Info("session ended", "err", err)
				return
			}
			if m.CookieEcho {
				if replyNo, err = ParseCookie(m.Data); err != nil {
					l.Warn("bad cookie echo, ending the session", "err", err)
					return
				}
				l.Info("cookie echo: going on from the previous PE's state", "reply", replyNo)
				replies--
				continue
			}
			ping, err := ParsePing(m.Data)
			if err != nil {
				l.Warn("ending the session", "err", err)
				return
			}
			out, _ = AppendPong(out[:0], Pong{MessageNo: ping.MessageNo, ReplyNo: replyNo, Data: ping.Data})
			if err := p.SendMessage(session.Message{PPID: PPID, Data: out}); err != nil {
				return
			}
			replyNo++
			if err := p.SendCookie(Cookie(replyNo)); err != nil {
				return
			}
			l.Debug("pong", "message", ping.MessageNo, "reply", replyNo-1)
		}
		l.Info("failure tester: ending the session", "replies", cfg.FailAfter)
	}
}
