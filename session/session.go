package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Config tunes a pool user's session. Every zero field takes its documented
// default; only Cache is required.
type Config struct {
	// Cache resolves the pool handle and selects pool elements by the
	// pool's policy; the session reports failed PEs to it. Required.
	Cache *pucache.Cache
	// PPID is the payload protocol identifier of Send and Write. Zero means
	// 0 (unspecified); 11 is refused.
	PPID uint32
	// Transport configures the associations to PEs (heartbeats, message
	// size, TLS roots); nil means transport defaults.
	Transport *transport.Config
	// ConnectTimeout bounds one connection attempt to a PE. Zero means 5 s
	// (RSPLIB's default).
	ConnectTimeout time.Duration
	// FailoverTimeout bounds one failover: selection, connection attempts
	// and waiting for the pool to have a usable PE again. When it passes
	// without a new association, the session fails for good. Zero means 30 s.
	FailoverTimeout time.Duration
	// RetryDelay is the pause before the pool is resolved again when it has
	// no usable PE left. Zero means 250 ms (RSPLIB's default).
	RetryDelay time.Duration
	// MaxCookieSize bounds a cookie the session keeps: a larger one from a
	// PE is dropped and the previous cookie kept. Zero means 8192 bytes.
	MaxCookieSize int
	// MaxCardElements bounds how many PEs of a business card are kept.
	// Zero means 16.
	MaxCardElements int
	// RecvQueue is how many received messages wait for Recv. While it is
	// full the session stops reading, so the transport's flow control
	// stops the PE. Zero means 64.
	RecvQueue int
	// BusinessCard, if set, is sent to each PE right after connecting (after
	// the Cookie Echo): this pool user is itself a PE of the card's pool,
	// and the card tells the PE where to reach it (RFC 5352 §3.9).
	BusinessCard *wire.BusinessCard
	// Dial replaces transport.Dial(ctx, addr, Transport); nil means that.
	Dial func(ctx context.Context, addr transport.Addr) (transport.Conn, error)
	// Logger receives the session's events; nil discards them.
	Logger *slog.Logger
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.ConnectTimeout <= 0 {
		d.ConnectTimeout = 5 * time.Second
	}
	if d.FailoverTimeout <= 0 {
		d.FailoverTimeout = 30 * time.Second
	}
	if d.RetryDelay <= 0 {
		d.RetryDelay = 250 * time.Millisecond
	}
	if d.MaxCookieSize <= 0 {
		d.MaxCookieSize = DefaultMaxCookieSize
	}
	if d.MaxCardElements <= 0 {
		d.MaxCardElements = 16
	}
	if d.RecvQueue <= 0 {
		d.RecvQueue = 64
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Dial == nil {
		tc := d.Transport
		d.Dial = func(ctx context.Context, addr transport.Addr) (transport.Conn, error) {
			return transport.Dial(ctx, addr, tc)
		}
	}
	return d
}

// DefaultMaxCookieSize is the default bound of a cookie on both sides.
const DefaultMaxCookieSize = 8192

// Stats counts a session's control-channel events. Safe to copy.
type Stats struct {
	Failovers      int // completed failovers
	Cookies        int // cookies received and kept
	CookiesDropped int // cookies over MaxCookieSize
	BusinessCards  int // business cards received
	ControlIgnored int // control messages that were malformed or of another type
}

// Session is a pool user's session with a pool: one association at a time
// to a PE chosen by the pool's policy, failing over to another PE (with a
// Cookie Echo of the last cookie) when the association ends. It is safe for
// concurrent use, except that Read must not be called concurrently.
type Session struct {
	cfg    Config
	handle wire.PoolHandle
	log    *slog.Logger
	ctx    context.Context // cancelled by Close; bounds every failover
	cancel context.CancelFunc
	wg     sync.WaitGroup // the run loop
	inbox  queue          // received messages and failover notices, in order; dead when the session failed for good

	mu        sync.Mutex // guards the fields below
	conn      transport.Conn
	pe        target
	gen       uint64        // +1 for every association the session publishes
	changed   chan struct{} // closed and replaced when conn, gen or err change
	cookie    []byte
	card      []target
	notice    *FailoverError // the last failover, until Send, Recv or Failover delivers it
	requested bool           // the application asked for a failover
	report    bool           // ... and for the PE to be reported unreachable
	err       error
	closed    bool
	stats     Stats

	rbuf []byte // unread rest of the message Read returned from; Read's own
}

// item is one entry of the receive queue: a message or a failover notice.
type item struct {
	m   Message
	err error
}

// Dial opens a session with the pool: it resolves the handle through
// cfg.Cache, picks a PE by the pool's policy and connects, trying further
// PEs (and reporting those that fail) until one answers or ctx ends.
func Dial(ctx context.Context, handle wire.PoolHandle, cfg Config) (*Session, error) {
	if cfg.Cache == nil {
		return nil, errors.New("session: Config.Cache is required")
	}
	if cfg.PPID == wire.PPIDASAP {
		return nil, ErrASAPPPID
	}
	if err := wire.ValidatePoolHandle(handle); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	if bc := cfg.BusinessCard; bc != nil {
		if _, err := bc.AppendBinary(nil); err != nil {
			return nil, fmt.Errorf("session: Config.BusinessCard: %w", err)
		}
	}
	d := cfg.withDefaults()
	sctx, cancel := context.WithCancel(context.Background())
	s := &Session{
		cfg: d, handle: handle, ctx: sctx, cancel: cancel,
		log:     d.Logger.With("pool", handle),
		inbox:   newQueue(d.RecvQueue, sctx.Done()),
		changed: make(chan struct{}),
	}
	stop := context.AfterFunc(ctx, cancel)
	c, t, _, err := s.connect(sctx, nil)
	if !stop() && err == nil { // ctx ended just as the connection came up
		c.Close()
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("session: dial %q: %w", handle, ctx.Err())
		}
		return nil, fmt.Errorf("session: dial %q: %w", handle, err)
	}
	s.conn, s.pe, s.gen = c, t, 1
	s.log.Info("session up", "pe", t.pe)
	s.wg.Add(1)
	go s.run(c)
	return s, nil
}

// Send sends data as one message with Config.PPID on stream 0.
func (s *Session) Send(ctx context.Context, data []byte) error {
	return s.SendMessage(ctx, Message{PPID: s.cfg.PPID, Data: data})
}

// SendMessage sends one application message to the current PE. A nil
// error means the message was handed to the association, not that the PE
// received it.
//
// If the session has failed over since the application last heard of it
// (from Send, Recv or Failover), SendMessage does not send m: it returns
// the *FailoverError (waiting, bounded by ctx, for the new association if
// the failover still runs). The application then sends again what has no
// answer yet, m included. The notice is delivered once, to whichever of
// Send and Recv meets it first. The session does not keep m.Data.
func (s *Session) SendMessage(ctx context.Context, m Message) error {
	if m.PPID == wire.PPIDASAP || m.CookieEcho {
		return ErrASAPPPID
	}
	for {
		s.mu.Lock()
		c, ch, err, closed, fo := s.conn, s.changed, s.err, s.closed, s.notice
		if c != nil && fo != nil {
			s.notice = nil
		}
		s.mu.Unlock()
		switch {
		case closed:
			return ErrClosed
		case err != nil:
			return err
		case c != nil && fo != nil:
			return fo
		case c != nil:
			werr := c.WriteMessage(transport.Message{PPID: m.PPID, Stream: m.Stream, Data: m.Data})
			if werr == nil {
				return nil
			}
			if errors.Is(werr, transport.ErrTooLarge) {
				return fmt.Errorf("session: %w", werr)
			}
			// The association is gone and m was not sent: make sure the
			// run loop notices, and report the failover when it is done.
			c.Close()
			s.mu.Lock()
			if s.conn != c {
				ch = nil // replaced meanwhile: look again at once
			}
			s.mu.Unlock()
			if ch == nil {
				continue
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return ErrClosed
		}
	}
}

// Recv returns the next application message. After a failover it returns
// the *FailoverError (which matches ErrFailover), unless Send met it
// first, between the messages of the old PE and those of the new one; the
// session goes on. When the session has failed for good, Recv returns the
// remaining messages and then that error. Received messages own their
// bytes.
func (s *Session) Recv(ctx context.Context) (Message, error) {
	for {
		m, err := s.inbox.pop(ctx, s.Err)
		if fo, ok := err.(*FailoverError); ok {
			s.mu.Lock()
			mine := s.notice == fo
			if mine {
				s.notice = nil
			}
			s.mu.Unlock()
			if !mine {
				continue // delivered by Send or Failover already
			}
		}
		return m, err
	}
}

// Read is the stream view of the session (io.Reader): it returns the bytes
// of the received messages in order, message boundaries dropped. At a
// failover it returns 0 and the *FailoverError (unless Write or Send met it
// first); reading may go on.
// Read must not be called concurrently with itself or with Recv.
func (s *Session) Read(p []byte) (int, error) {
	if len(s.rbuf) == 0 {
		if len(p) == 0 {
			return 0, nil
		}
		m, err := s.Recv(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil {
				return 0, ErrClosed
			}
			return 0, err
		}
		s.rbuf = m.Data
	}
	n := copy(p, s.rbuf)
	s.rbuf = s.rbuf[n:]
	return n, nil
}

// streamChunk is the largest message Write sends.
const streamChunk = 16 << 10

// Write is the stream view of the session (io.Writer): it sends p as one
// or more messages with Config.PPID, each at most 16 KiB (or the transport's
// MaxMessageSize if that is smaller). Like Send it may return a
// *FailoverError, with n the bytes sent before the failover.
func (s *Session) Write(p []byte) (int, error) {
	chunk := streamChunk
	if t := s.cfg.Transport; t != nil && t.MaxMessageSize > 0 {
		chunk = min(chunk, t.MaxMessageSize)
	}
	n := 0
	for n < len(p) {
		k := min(len(p)-n, chunk)
		if err := s.Send(s.ctx, p[n:n+k]); err != nil {
			if s.ctx.Err() != nil {
				err = ErrClosed
			}
			return n, err
		}
		n += k
	}
	return n, nil
}

// FailoverFlags modify Failover.
type FailoverFlags uint8

// ReportUnreachable makes Failover report the current PE to the registrar
// as unreachable (ASAP Endpoint Unreachable), as after a failure.
const ReportUnreachable FailoverFlags = 1 << 0

// Failover ends the association to the current PE and moves the session to
// another one (RSPLIB's rsp_forcefailover), for example when the
// application's own keep-alive timed out. It returns once the new
// association is up; a nil error stands for the failover's notice (Send and
// Recv do not report it again), so send again what has no answer yet. If
// a failover is running already, Failover waits for it.
func (s *Session) Failover(ctx context.Context, flags FailoverFlags) error {
	s.mu.Lock()
	gen := s.gen
	if c := s.conn; c != nil && s.err == nil && !s.closed {
		s.requested, s.report = true, flags&ReportUnreachable != 0
		c.Close() // ends the run loop's read
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		g, up, ch, err, closed := s.gen, s.conn != nil, s.changed, s.err, s.closed
		s.mu.Unlock()
		switch {
		case closed:
			return ErrClosed
		case err != nil:
			return err
		case g > gen && up:
			s.mu.Lock()
			s.notice = nil
			s.mu.Unlock()
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// PE returns the pool element the session is connected to, or the last one
// while a failover runs.
func (s *Session) PE() PE {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pe.pe
}

// Cookie returns a copy of the last cookie a PE sent (nil if none).
func (s *Session) Cookie() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.cookie...)
}

// Stats returns the session's counters.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Err returns the error that ended the session for good, or nil.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the session: it closes the association (the PE sees the
// session end) and waits for the session's goroutine. Idempotent.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c := s.conn
	s.bump()
	s.mu.Unlock()
	s.cancel()
	if c != nil {
		c.Close()
	}
	s.wg.Wait()
	return nil
}

// bump wakes everyone waiting for a change; s.mu is held.
func (s *Session) bump() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// run owns the association: it reads it until it ends, then fails over,
// for the whole life of the session.
func (s *Session) run(c transport.Conn) {
	defer s.wg.Done()
	for {
		cause := s.read(c)
		c.Close()
		if s.ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		from, requested, report := s.pe, s.requested, s.report
		s.conn, s.requested, s.report = nil, false, false
		s.bump()
		s.mu.Unlock()
		if requested {
			cause = ErrRequested
		}
		if !requested || report {
			s.cfg.Cache.Pool(from.pe.Pool).ReportUnreachable(from.pe.ID)
		}
		s.log.Info("association to PE ended, failing over", "pe", from.pe, "cause", cause)

		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.FailoverTimeout)
		next, to, echoed, err := s.connect(ctx, &from)
		cancel()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.fail(fmt.Errorf("session: failover from PE %v: %w", from.pe, err))
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			next.Close()
			return
		}
		fo := &FailoverError{From: from.pe, To: to.pe, Cause: cause, CookieEchoed: echoed, FromCard: to.card}
		s.conn, s.pe, s.notice = next, to, fo
		s.gen++
		s.stats.Failovers++
		s.bump()
		s.mu.Unlock()
		s.log.Info("failed over", "from", from.pe, "to", to.pe, "cookie_echoed", echoed, "from_card", to.card)
		// The notice goes into the queue in order, for Recv; Send may
		// deliver it first (the queue is full when nobody reads).
		if !s.inbox.push(item{err: fo}) {
			return
		}
		c = next
	}
}

// read delivers the messages of one association until it ends, and returns
// why it ended.
func (s *Session) read(c transport.Conn) error {
	for {
		m, err := c.ReadMessage()
		if err != nil {
			return err
		}
		if m.PPID == wire.PPIDASAP {
			s.control(m.Data)
			continue
		}
		data := append([]byte(nil), m.Data...)
		if !s.inbox.push(item{m: Message{PPID: m.PPID, Stream: m.Stream, Data: data}}) {
			return ErrClosed
		}
	}
}

// control handles one ASAP message of the control channel from the PE.
func (s *Session) control(b []byte) {
	msg, err := wire.ParseASAP(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.stats.ControlIgnored++
		return
	}
	switch m := msg.(type) {
	case *wire.Cookie:
		if len(m.Cookie) > s.cfg.MaxCookieSize {
			s.stats.CookiesDropped++
			if s.stats.CookiesDropped == 1 {
				s.log.Warn("dropping cookies over the size limit", "pe", s.pe.pe, "size", len(m.Cookie), "limit", s.cfg.MaxCookieSize)
			}
			return
		}
		s.cookie = m.Cookie // a decoded message owns its bytes
		s.stats.Cookies++
	case *wire.BusinessCard:
		s.card = cardTargets(m, s.cfg.MaxCardElements)
		s.stats.BusinessCards++
	default:
		s.stats.ControlIgnored++
	}
}

// fail ends the session for good with err.
func (s *Session) fail(err error) {
	s.log.Warn("session failed", "err", err)
	s.mu.Lock()
	s.err = err
	s.bump()
	s.mu.Unlock()
	close(s.inbox.dead)
}
