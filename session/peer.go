package session

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Peer is the PE side of one session: the association with one pool user.
// Recv must be called by one goroutine at a time; the other methods are
// safe for concurrent use.
type Peer struct {
	srv   *Server
	conn  transport.Conn
	log   *slog.Logger
	inbox queue
	done  chan struct{} // closed by Close
	once  sync.Once
	err   error // why the association ended; written before inbox.dead is closed

	mu    sync.Mutex // guards card, stats
	card  *wire.BusinessCard
	stats PeerStats
}

// PeerStats counts the control messages of one session.
type PeerStats struct {
	CookieEchoes        int // delivered to the handler
	CookieEchoesDropped int // not the first message of the session
	BusinessCards       int
	ControlIgnored      int // malformed, or of a type a PE does not take
}

func newPeer(s *Server, c transport.Conn) *Peer {
	done := make(chan struct{})
	return &Peer{
		srv: s, conn: c, done: done,
		log:   s.log.With("pu", c.RemoteAddr().String()),
		inbox: newQueue(s.cfg.RecvQueue, done),
	}
}

// readLoop reads the association until it ends: application messages and
// the one Cookie Echo that may open the session go to Recv, business cards
// are kept, other control messages are dropped.
func (p *Peer) readLoop() {
	defer p.srv.wg.Done()
	defer close(p.inbox.dead)
	first := true // nothing delivered yet: a Cookie Echo is still welcome
	for {
		m, err := p.conn.ReadMessage()
		if err != nil {
			p.err = err
			return
		}
		if m.PPID != wire.PPIDASAP {
			first = false
			data := append([]byte(nil), m.Data...)
			if !p.inbox.push(item{m: Message{PPID: m.PPID, Stream: m.Stream, Data: data}}) {
				p.err = ErrClosed
				return
			}
			continue
		}
		cookie, err := p.control(m.Data, first)
		if err != nil {
			p.err = err
			p.log.Warn("ending session", "err", err)
			p.conn.Close()
			return
		}
		if cookie != nil {
			first = false
			if !p.inbox.push(item{m: Message{PPID: wire.PPIDASAP, Data: cookie, CookieEcho: true}}) {
				p.err = ErrClosed
				return
			}
		}
	}
}

// control handles one ASAP message from the pool user; it returns the
// cookie of a Cookie Echo to deliver, or an error that ends the session.
func (p *Peer) control(b []byte, first bool) ([]byte, error) {
	msg, err := wire.ParseASAP(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.stats.ControlIgnored++
		return nil, nil
	}
	switch m := msg.(type) {
	case *wire.CookieEcho:
		if len(m.Cookie) > p.srv.cfg.MaxCookieSize {
			return nil, fmt.Errorf("%w: a Cookie Echo of %d bytes (limit %d)", ErrCookieTooLarge, len(m.Cookie), p.srv.cfg.MaxCookieSize)
		}
		if !first {
			// RFC 5352: the Cookie Echo is the first message after a
			// failover. A later one (or a second one) is not state to
			// restore; RSPLIB ignores it too.
			p.stats.CookieEchoesDropped++
			if p.stats.CookieEchoesDropped == 1 {
				p.log.Info("ignoring a Cookie Echo that does not open the session")
			}
			return nil, nil
		}
		p.stats.CookieEchoes++
		return m.Cookie, nil
	case *wire.BusinessCard:
		if len(m.Elements) > p.srv.cfg.MaxCardElements {
			m.Elements = m.Elements[:p.srv.cfg.MaxCardElements]
		}
		p.card = m
		p.stats.BusinessCards++
	default:
		p.stats.ControlIgnored++
	}
	return nil, nil
}

// Recv returns the next message of the pool user: application data, or
// (only as the first message of a session) its Cookie Echo, marked by
// Message.CookieEcho; the handler decides whether to restore that state
// (see Signer). When the association has ended it returns io.EOF for the
// pool user's orderly close, or the failure (ErrCookieTooLarge, a transport
// error); after Close, ErrClosed.
func (p *Peer) Recv(ctx context.Context) (Message, error) {
	return p.inbox.pop(ctx, func() error {
		if p.err == nil {
			return io.EOF
		}
		return p.err
	})
}

// Send sends data as one message with ServerConfig.PPID on stream 0.
func (p *Peer) Send(data []byte) error {
	return p.SendMessage(Message{PPID: p.srv.cfg.PPID, Data: data})
}

// SendMessage sends one application message. It blocks only while the
// transport's send queue is full. The session does not keep m.Data.
func (p *Peer) SendMessage(m Message) error {
	if m.PPID == wire.PPIDASAP || m.CookieEcho {
		return ErrASAPPPID
	}
	return p.conn.WriteMessage(transport.Message{PPID: m.PPID, Stream: m.Stream, Data: m.Data})
}

// SendCookie sends an ASAP Cookie: the state a pool user keeps (only the
// latest) and echoes to the next PE if this one fails. Send it before the
// answer it belongs to, so that a pool user that has the answer also has
// the cookie. Sign it (Signer) if pool users are not trusted. RSPLIB pool
// users flag cookies whose length is not a multiple of 4 as malformed (but
// keep them).
func (p *Peer) SendCookie(cookie []byte) error {
	if len(cookie) == 0 {
		return fmt.Errorf("session: empty cookie")
	}
	if len(cookie) > p.srv.cfg.MaxCookieSize {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrCookieTooLarge, len(cookie), p.srv.cfg.MaxCookieSize)
	}
	return writeASAP(p.conn, &wire.Cookie{Cookie: cookie})
}

// SendBusinessCard sends an ASAP Business Card: the PEs, in order, that the
// pool user should fail over to from this one. It may be sent any time to
// update the order.
func (p *Peer) SendBusinessCard(bc *wire.BusinessCard) error {
	return writeASAP(p.conn, bc)
}

// BusinessCard returns the last business card the pool user sent (it is
// then a PE itself: RFC 5352's PU/PE case), or nil. Do not modify it.
func (p *Peer) BusinessCard() *wire.BusinessCard {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.card
}

// Stats returns the session's control-message counters.
func (p *Peer) Stats() PeerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// RemoteAddr returns the pool user's address.
func (p *Peer) RemoteAddr() net.Addr { return p.conn.RemoteAddr() }

// Close ends the session: the association is closed, Recv returns
// ErrClosed. The handler still runs until it returns. Idempotent.
func (p *Peer) Close() error {
	p.once.Do(func() {
		close(p.done)
		p.conn.Close()
	})
	return nil
}
