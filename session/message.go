package session

import (
	"errors"
	"fmt"

	"github.com/rserpool/rserpool/wire"
)

// Message is one whole message of a session's data channel.
type Message struct {
	// PPID is the payload protocol identifier of application data: anything
	// but 11, which belongs to the ASAP control channel (RFC 5352 §3.8).
	// RSPLIB's PingPong uses 33, its CalcApp 34; 0 means unspecified.
	PPID uint32
	// Stream is the SCTP stream (over the TCP mapping only a number).
	Stream uint16
	// Data is the message. A received message owns its bytes.
	Data []byte
	// CookieEcho is set, on the PE side only, when Data is the cookie of an
	// ASAP Cookie Echo: the state a previous PE of the pool sent to the pool
	// user, echoed to this PE after a failover. PPID is 11 then. It can
	// only be the first message of a session.
	CookieEcho bool
}

// Errors of sessions. Failures wrap them; test with errors.Is.
var (
	// ErrClosed: the session (or the server) was closed.
	ErrClosed = errors.New("session: closed")
	// ErrFailover is matched by every *FailoverError.
	ErrFailover = errors.New("session: failed over to another pool element")
	// ErrASAPPPID: an application message with PPID 11, which is reserved
	// for the ASAP control channel.
	ErrASAPPPID = errors.New("session: PPID 11 is reserved for the ASAP control channel")
	// ErrCookieTooLarge: a Cookie Echo (PE side) or a cookie given to
	// SendCookie is larger than the configured maximum.
	ErrCookieTooLarge = errors.New("session: cookie larger than the limit")
	// ErrNoPE: no pool element could be reached within the time allowed.
	ErrNoPE = errors.New("session: no pool element reachable")
	// ErrRequested is the Cause of a failover the application asked for.
	ErrRequested = errors.New("session: failover requested by the application")
)

// PE names the pool element at the other end of a session.
type PE struct {
	Pool wire.PoolHandle
	ID   uint32
	Addr string // "tcp://host:port" (TCP mapping) or "sctp://host:port"
}

func (p PE) String() string {
	if p.ID == 0 {
		return "none"
	}
	return fmt.Sprintf("0x%08x (%s at %s)", p.ID, p.Pool, p.Addr)
}

// FailoverError tells the application that its session moved to another
// pool element. Recv returns it once per failover, after the last message
// of the old PE and before the first of the new one; the session goes on.
// Whatever the application sent and has no answer for may have been lost
// with the old PE: this is the moment to send it again.
type FailoverError struct {
	From, To PE
	// Cause is why the old association ended: its transport error, io.EOF
	// for an orderly close by the PE, or ErrRequested.
	Cause error
	// CookieEchoed is true when the last cookie of the old PE was echoed to
	// the new one as the first control message.
	CookieEchoed bool
	// FromCard is true when the new PE came from a business card.
	FromCard bool
}

func (e *FailoverError) Error() string {
	echo := "no cookie to echo"
	if e.CookieEchoed {
		echo = "cookie echoed"
	}
	return fmt.Sprintf("session: failover from PE %v to PE %v (%s): %v", e.From, e.To, echo, e.Cause)
}

// Is reports whether target is ErrFailover. (A FailoverError does not
// unwrap to its Cause: a failover after the PE's orderly close is not the
// end of the session, so errors.Is(err, io.EOF) must stay false.)
func (e *FailoverError) Is(target error) bool { return target == ErrFailover }
