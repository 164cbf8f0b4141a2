package registrar

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rserpool/rserpool/registrar/asap"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// conn is one ASAP connection. Its reader goroutine decodes and forwards
// requests to the loop; its writer goroutine sends what the loop (or the
// reader, for errors) queued on out. A full queue closes the connection, so
// that a client that does not read never blocks the loop.
type conn struct {
	id   uint64
	tc   transport.Conn // nil in loop unit tests
	q    sendQueue
	done chan struct{}
	// slots bounds the requests of this connection queued for the loop
	// (one token per request, returned by the loop), so that one
	// pipelining client cannot fill the loop's queue ahead of the others.
	slots  chan struct{}
	once   sync.Once
	wg     *sync.WaitGroup // tracks the background Close of tc; nil: Close inline
	remote []netip.Addr    // peer addresses (all SCTP paths, or the TCP peer)
	asap   wire.Transport
	// tlsIDs is set by the reader once the first message has arrived (the
	// TLS handshake is complete by then) and read by the loop afterwards.
	tlsIDs  []string
	baseLog *slog.Logger // see log

	dropped   atomic.Bool // closed because the send queue was full
	lastLog   atomic.Int64
	suppessed atomic.Int64

	// src is the source address counted against
	// limits.max_source_connections; invalid for dialed associations.
	// Set before the reader starts; read under Registrar.mu.
	src netip.Addr

	// Owned by the goroutine serving the connection (serveConn; one at a
	// time: a parked connection has none).
	resume  func() // serveConn(c), for the Parker
	started bool   // a message arrived
	errs    int    // malformed or unexpected messages
	rate    bucket // message rate

	// Owned by the loop.
	cid  asap.ConnID // the core's identifier; 0 until the first message
	gone bool        // the reader ended (evClosed)
}

func newConn(id uint64, tc transport.Conn, scheme transport.Scheme, queueBytes int, log *slog.Logger, wg *sync.WaitGroup) *conn {
	c := &conn{id: id, tc: tc, wg: wg, done: make(chan struct{}), slots: make(chan struct{}, maxInflight)}
	c.q.init(queueBytes, func(b []byte) error {
		err := tc.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b})
		if err != nil {
			c.close()
		}
		return err
	})
	var port uint16
	c.remote, port = peerAddrs(tc)
	c.asap = wire.Transport{Type: wire.TransportTCP, Port: port, Addrs: c.remote}
	if scheme == transport.SchemeSCTP {
		c.asap.Type = wire.TransportSCTP
	} else if len(c.asap.Addrs) > 1 {
		c.asap.Addrs = c.asap.Addrs[:1]
	}
	c.baseLog = log
	return c
}

// peerAddrs returns the peer's addresses, unmapped (every SCTP path, or
// the TCP peer), and its port. The first address is the connection's
// source for the per-source caps.
func peerAddrs(tc transport.Conn) ([]netip.Addr, uint16) {
	var addrs []netip.Addr
	var port uint16
	for _, a := range tc.PeerAddrs() {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			addrs = append(addrs, ap.Addr().Unmap())
			port = ap.Port()
		}
	}
	if ra := tc.RemoteAddr(); len(addrs) == 0 && ra != nil {
		// A multi-homed SCTP RemoteAddr prints as "a/b:port"; PeerAddrs
		// has them one by one.
		if ap, err := netip.ParseAddrPort(ra.String()); err == nil {
			addrs = append(addrs, ap.Addr().Unmap())
			port = ap.Port()
		}
	}
	return addrs, port
}

// tlsIdentities returns the verified client certificate's common name and
// DNS, URI and e-mail SANs, if the connection is TLS.
func tlsIdentities(tc transport.Conn) []string {
	type stater interface {
		ConnectionState() (tls.ConnectionState, bool)
	}
	s, ok := tc.(stater)
	if !ok {
		return nil
	}
	cs, ok := s.ConnectionState()
	if !ok {
		return nil
	}
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	cert := cs.PeerCertificates[0]
	ids := []string{}
	if cert.Subject.CommonName != "" {
		ids = append(ids, cert.Subject.CommonName)
	}
	ids = append(ids, cert.DNSNames...)
	ids = append(ids, cert.EmailAddresses...)
	for _, u := range cert.URIs {
		ids = append(ids, u.String())
	}
	return ids
}

// log returns the connection's logger, built when needed (logging is rare)
// so that an idle connection does not hold one.
func (c *conn) log() *slog.Logger {
	return c.baseLog.With("conn", c.id, "peer", c.tc.RemoteAddr().String())
}

// send queues b without blocking; a full queue closes the connection.
func (c *conn) send(b []byte) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	if !c.q.push(b) {
		c.dropped.Store(true)
		c.close()
		return false
	}
	return true
}

// sendQueue is a connection's outgoing queue, bounded in bytes. The loop
// pushes without blocking; a writer goroutine, started when there is
// something to send and ending when the queue is empty (so idle connections
// have none), drains it. The reader stops reading requests while more than a
// quarter of the bound is queued, so that a pipelining client slows down
// instead of being disconnected; only a client that stops reading
// altogether fills it and is then disconnected.
type sendQueue struct {
	mu      sync.Mutex // guards the fields up to room
	q       [][]byte
	bytes   int
	max     int
	running bool          // a writer goroutine is draining q
	closed  bool          // no writer may start any more
	room    chan struct{} // reader: below the soft bound again
	writers sync.WaitGroup
	write   func([]byte) error
}

func (s *sendQueue) init(max int, write func([]byte) error) {
	s.max = max
	s.room = make(chan struct{}, 1)
	s.write = write
}

// push queues b, starting a writer if none runs. It reports false when the
// queue is full or closed.
func (s *sendQueue) push(b []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.bytes+len(b) > s.max {
		return false
	}
	s.q = append(s.q, b)
	s.bytes += len(b)
	if !s.running && s.write != nil {
		s.running = true
		s.writers.Add(1)
		go s.drain()
	}
	return true
}

// drain is the writer goroutine: it sends until the queue is empty.
func (s *sendQueue) drain() {
	defer s.writers.Done()
	var batch [][]byte
	for {
		s.mu.Lock()
		if len(s.q) == 0 || s.closed {
			s.running = false
			s.mu.Unlock()
			return
		}
		batch, s.q = s.q, batch[:0]
		s.mu.Unlock()
		for i, b := range batch {
			batch[i] = nil
			if s.write(b) != nil {
				s.mu.Lock()
				s.running = false
				s.closed = true
				s.mu.Unlock()
				return
			}
			s.done(len(b))
		}
		if cap(batch) > 1024 {
			batch = nil // do not keep a burst's backing array
		}
	}
}

// take moves every queued message into dst (for tests without a writer).
func (s *sendQueue) take(dst [][]byte) [][]byte {
	s.mu.Lock()
	dst = append(dst, s.q...)
	clear(s.q)
	s.q = s.q[:0]
	s.mu.Unlock()
	return dst
}

func (s *sendQueue) done(n int) {
	s.mu.Lock()
	s.bytes -= n
	below := s.bytes <= s.max/4
	s.mu.Unlock()
	if below {
		select {
		case s.room <- struct{}{}:
		default:
		}
	}
}

// close stops the queue and waits for its writer.
func (s *sendQueue) close() {
	s.mu.Lock()
	s.closed = true
	s.q = nil
	s.mu.Unlock()
	s.writers.Wait()
}

// waitRoom blocks while more than a quarter of the bound is queued.
func (s *sendQueue) waitRoom(closed <-chan struct{}) bool {
	for {
		s.mu.Lock()
		ok := s.bytes <= s.max/4
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-s.room:
		case <-closed:
			return false
		}
	}
}

// close ends the connection without blocking: the transport's Close,
// which waits up to its close timeout for the peer, runs in the background
// (a client that does not read must not hold up the loop).
func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		switch {
		case c.tc == nil:
		case c.wg == nil:
			c.tc.Close()
		default:
			c.wg.Add(1)
			go func() { defer c.wg.Done(); c.tc.Close() }()
		}
	})
}

// logLimited logs at most one line per second per connection, so that a
// hostile client cannot flood the log (the daemons' log handler also
// limits each message text; msg must be constant). c may be nil.
func (c *conn) logLimited(l *slog.Logger, msg string, args ...any) {
	if c == nil {
		l.Warn(msg, args...)
		return
	}
	now := time.Now().UnixNano()
	last := c.lastLog.Load()
	if now-last < int64(time.Second) || !c.lastLog.CompareAndSwap(last, now) {
		c.suppessed.Add(1)
		return
	}
	if c.baseLog != nil {
		l = c.log()
	}
	if n := c.suppessed.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	l.Warn(msg, args...)
}

// bucket is a token bucket for one connection's message rate.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// parkAfter is how long a connection's reader waits for input before the
// connection is parked: a client in a request-response exchange keeps its
// reader (parking and resuming costs system calls and a goroutine start per
// message), one that went quiet gives it up.
const parkAfter = 50 * time.Millisecond

// serveConn reads one connection until it ends. When the connection has
// had nothing to read for parkAfter it is parked (r.parker) and the
// goroutine ends; the Parker starts serveConn again on a new goroutine once
// there is input or the connection ended, so that an idle connection holds
// no goroutine. A parked connection still counts in r.wg.
func (r *Registrar) serveConn(c *conn) {
	parkable := r.parker != nil && r.parker.CanPark(c.tc)
	for {
		if !c.q.waitRoom(c.done) {
			break
		}
		var msg transport.Message
		var err error
		if parkable {
			msg, err = transport.ReadMessageWithin(c.tc, parkAfter)
			if errors.Is(err, transport.ErrIdle) {
				if r.parker.Park(c.tc, c.resume) {
					return
				}
				continue
			}
		} else {
			msg, err = c.tc.ReadMessage()
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.log().Debug("connection ended", "err", err)
			}
			break
		}
		if !c.started {
			c.started = true
			c.tlsIDs = tlsIdentities(c.tc)
		}
		if msg.PPID != wire.PPIDASAP {
			r.m.malformed.Inc()
			c.logLimited(r.log, "dropping message with a PPID other than ASAP (11)", "ppid", msg.PPID)
			c.errs++
		} else {
			lim := r.limits.Load()
			m, err := wire.ParseASAP(msg.Data)
			if !c.rate.take(time.Now(), float64(lim.MessagesPerSecond), float64(lim.Burst)) {
				r.rateLimited(c, m)
			} else if !r.screen(c, msg.Data, m, err, lim.MaxMessageSize) {
				c.errs++
			}
		}
		if c.errs >= r.limits.Load().MaxErrors {
			r.m.limitRejections.WithLabelValues(limitErrors).Inc()
			c.log().Warn("closing connection after too many malformed messages", "errors", c.errs)
			break
		}
	}
	c.close()
	c.q.close()
	if c.dropped.Load() {
		r.m.limitRejections.WithLabelValues(limitSendQueue).Inc()
		c.log().Warn("closed connection whose send queue was full (client not reading)")
	}
	r.connDone(c)
	r.wg.Done()
}

// connDone tells the loop and forgets the connection.
func (r *Registrar) connDone(c *conn) {
	select {
	case r.loop.events <- evClosed{c}:
	case <-r.loopDone:
	}
	r.mu.Lock()
	delete(r.conns, c)
	if c.src.IsValid() {
		if r.perSource[c.src]--; r.perSource[c.src] <= 0 {
			delete(r.perSource, c.src)
		}
	}
	r.mu.Unlock()
	r.nconns.Add(-1)
	r.m.connections.Dec()
}

// screen answers and forwards one received message (asap.Screen); it
// reports false for a malformed or unexpected one.
func (r *Registrar) screen(c *conn, raw []byte, m wire.Message, err error, maxSize int) bool {
	v := asap.Screen(raw, m, err, maxSize)
	switch {
	case err != nil:
		r.m.malformed.Inc()
		var pe *wire.ParseError
		offset := -1
		if errors.As(err, &pe) {
			offset = pe.Offset
		}
		c.logLimited(r.log, "malformed ASAP message", "err", err, "offset", offset)
	case v.Bad:
		r.m.malformed.Inc()
		c.logLimited(r.log, "unexpected ASAP message", "type", m.Type())
	case v.Msg == nil:
		if e, ok := m.(*wire.ASAPError); ok {
			c.logLimited(r.log, "peer sent ASAP_ERROR", "causes", len(e.Error.Causes))
		}
	}
	if v.Reply != nil {
		r.sendError(c, v.Reply)
	}
	if v.Msg != nil {
		r.forward(c, v.Msg)
	}
	return !v.Bad
}

// forward hands a request to the loop, waiting for one of the
// connection's slots.
func (r *Registrar) forward(c *conn, m wire.Message) {
	select {
	case c.slots <- struct{}{}:
	case <-c.done:
		return
	}
	select {
	case r.loop.events <- evMsg{c, m}:
	case <-r.loopDone:
	}
}

// maxInflight is the number of requests per connection queued for the loop.
const maxInflight = 64

func (r *Registrar) sendError(c *conn, e *wire.ASAPError) {
	b, err := e.AppendBinary(nil)
	if err != nil {
		return
	}
	for _, cs := range e.Error.Causes {
		r.m.errorsSent.WithLabelValues(fmt.Sprintf("0x%04x", uint16(cs.Code))).Inc()
	}
	c.send(b)
}

// rateLimited answers a request beyond the connection's message rate with
// cause 0x6 Lack of Resources; other messages are dropped, except
// keep-alive acks, which go on.
func (r *Registrar) rateLimited(c *conn, m wire.Message) {
	r.m.limitRejections.WithLabelValues(limitRate).Inc()
	c.logLimited(r.log, "message rate limit exceeded")
	reply, forward := asap.RateLimited(m)
	if _, ok := m.(*wire.Registration); ok {
		r.m.registrations.WithLabelValues(resultLimit).Inc()
	}
	if reply != nil {
		if b, err := reply.AppendBinary(nil); err == nil {
			c.send(b)
		}
	}
	if forward {
		r.forward(c, m)
	}
}
