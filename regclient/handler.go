package regclient

import (
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Handler receives a client's events. Every method is called from the
// client's one goroutine (so a Handler's state needs no lock when only
// its methods and functions run by Client.Do touch it); none may block.
// A Handler acts through the client's Link.
type Handler interface {
	// Up: a connection to the registrar at addr is up. Pending requests
	// have been (re-)sent on it.
	Up(now time.Time, addr transport.Addr)
	// Down: the connection is gone (err says why). Requests sent on it
	// stay pending and go out on the next connection.
	Down(now time.Time, err error)
	// Message: m arrived and answers no pending request (a Keep-Alive, a
	// response nobody waits for, an error).
	Message(now time.Time, m wire.Message)
	// HuntFailed: a server hunt ended without a connection; pending
	// requests have failed with err (wrapping ErrNoRegistrar).
	HuntFailed(now time.Time, err error)
	// Tick runs at the time the Handler last asked for (Link.WakeAt or the
	// previous Tick's result); it returns the next such time (zero: none).
	Tick(now time.Time) time.Time
}

// NopHandler ignores every event.
type NopHandler struct{}

func (NopHandler) Up(time.Time, transport.Addr)    {}
func (NopHandler) Down(time.Time, error)           {}
func (NopHandler) Message(time.Time, wire.Message) {}
func (NopHandler) HuntFailed(time.Time, error)     {}
func (NopHandler) Tick(time.Time) time.Time        { return time.Time{} }

// Link is the Handler's side of a client: it may be used only on the
// client's goroutine, that is inside Handler methods and functions run by
// Client.Do.
type Link struct{ c *core }

// Send writes m on the current connection now (a Keep-Alive Ack): it is
// not queued and not retried. ErrNotConnected without a connection.
func (l *Link) Send(m wire.Message) error { return l.c.send(m) }

// Request queues a request (sent at once when connected, else on the next
// connection; re-sent after T1 at another registrar) and calls done once
// with its response or an error (ErrTimeout, ErrNoRegistrar, ErrClosed,
// ErrCancelled, *ErrorReply). done runs on the client's goroutine and
// must not block. The result cancels the request.
func (l *Link) Request(now time.Time, m wire.Message, done func(now time.Time, resp wire.Message, err error)) *Pending {
	return &Pending{c: l.c, r: l.c.request(now, m, false, done)}
}

// Pending is a request in flight.
type Pending struct {
	c *core
	r *request // nil when the request failed at once
}

// Cancel forgets the request, if it is still pending; its done is called
// with ErrCancelled. Only on the client's goroutine.
func (p *Pending) Cancel(now time.Time) {
	if p != nil && p.r != nil {
		p.c.cancel(now, p.r, ErrCancelled)
	}
}

// Want says whether a connection is wanted even while no request is
// pending (a pool element stays connected to its home registrar).
func (l *Link) Want(on bool) {
	if on && !l.c.want {
		l.c.kick = true
	}
	l.c.want = on
}

// WakeAt asks for a Tick at t (the earliest of all such requests wins).
func (l *Link) WakeAt(t time.Time) {
	if !t.IsZero() && (l.c.hWake.IsZero() || t.Before(l.c.hWake)) {
		l.c.hWake = t
	}
}

// Drop closes the current connection (for example when the registrar did
// not answer): Down follows, then a hunt.
func (l *Link) Drop(now time.Time, err error) { l.c.drop(now, err) }

// Home returns the registrar of the current connection; ok is false while
// there is none.
func (l *Link) Home() (addr transport.Addr, ok bool) { return l.c.addr, l.c.up }
