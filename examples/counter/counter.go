// Package counter is the service of `rserpool demo-sessions`: a counter
// whose state lives in signed cookies, so that a pool user's count goes on
// without a lost or repeated step when the PE it talks to dies.
//
// The pool user asks for step n (the value it wants the counter to reach);
// the PE counts only if n is the next step, so a request that is sent
// again after a failover and had reached the dead PE already is answered,
// not counted twice. Before each answer the PE sends its count as a cookie
// signed with the pool's key: a pool user that has the answer has the
// cookie too, and the next PE verifies and restores it.
//
//	request: step u64
//	answer:  count u64 | PE ID u32 | flags u8 (1: this session's state came from a Cookie Echo)
//	cookie:  count u64 | HMAC-SHA256 tag (session.Signer)
//
// All in network byte order, application PPID 0 (unspecified).
package counter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/rserpool/rserpool/session"
)

// FlagRestored marks an answer of a session whose state came from a Cookie
// Echo.
const FlagRestored = 1

// Answer is a PE's answer to a step.
type Answer struct {
	Count    uint64
	PE       uint32
	Restored bool
}

// ErrStep: an answer is not the step asked for (a step lost or counted twice).
var ErrStep = errors.New("counter: wrong count")

// Event is what a PE reports through Handler's events function.
type Event struct {
	PE       uint32
	Restored bool   // a session started from a Cookie Echo
	Count    uint64 // the restored count
	Err      error  // a Cookie Echo that did not verify
}

// Handler returns the PE side for PE id. events (nil: none) hears of every
// Cookie Echo, accepted or not; it is called from the session's goroutine.
func Handler(id uint32, signer *session.Signer, events func(Event)) func(context.Context, *session.Peer) {
	if events == nil {
		events = func(Event) {}
	}
	return func(ctx context.Context, p *session.Peer) {
		var count uint64
		var flags byte
		for {
			m, err := p.Recv(ctx)
			if err != nil {
				return
			}
			if m.CookieEcho {
				state, err := signer.Verify(m.Data)
				if err == nil && len(state) != 8 {
					err = fmt.Errorf("counter: cookie state of %d bytes", len(state))
				}
				if err != nil {
					events(Event{PE: id, Err: err})
					return // not our pool's state: end the session
				}
				count, flags = binary.BigEndian.Uint64(state), FlagRestored
				events(Event{PE: id, Restored: true, Count: count})
				continue
			}
			if len(m.Data) != 8 {
				return
			}
			if step := binary.BigEndian.Uint64(m.Data); step == count+1 {
				count = step
			}
			if p.SendCookie(signer.Sign(binary.BigEndian.AppendUint64(nil, count))) != nil {
				return
			}
			a := binary.BigEndian.AppendUint64(make([]byte, 0, 13), count)
			a = binary.BigEndian.AppendUint32(a, id)
			if p.Send(append(a, flags)) != nil {
				return
			}
		}
	}
}

// Step asks for step n and returns its answer and the failovers that
// happened meanwhile. After each failover notice (from Send or Recv) it
// sends the request again. An answer other than n is ErrStep.
func Step(ctx context.Context, s *session.Session, n uint64) (Answer, []*session.FailoverError, error) {
	var fos []*session.FailoverError
	req := binary.BigEndian.AppendUint64(nil, n)
	for sent := false; ; {
		if !sent {
			err := s.Send(ctx, req)
			var fo *session.FailoverError
			if errors.As(err, &fo) {
				fos = append(fos, fo)
				continue
			}
			if err != nil {
				return Answer{}, fos, err
			}
			sent = true
		}
		m, err := s.Recv(ctx)
		var fo *session.FailoverError
		if errors.As(err, &fo) {
			fos, sent = append(fos, fo), false
			continue
		}
		if err != nil {
			return Answer{}, fos, err
		}
		if len(m.Data) != 13 {
			return Answer{}, fos, fmt.Errorf("counter: answer of %d bytes", len(m.Data))
		}
		a := Answer{Count: binary.BigEndian.Uint64(m.Data), PE: binary.BigEndian.Uint32(m.Data[8:]), Restored: m.Data[12]&FlagRestored != 0}
		if a.Count != n {
			return a, fos, fmt.Errorf("%w: step %d answered %d by PE 0x%08x", ErrStep, n, a.Count, a.PE)
		}
		return a, fos, nil
	}
}
