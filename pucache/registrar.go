package pucache

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

var errRequestTimeout = errors.New("pucache: registrar did not answer in time (T1)")

// registrars keeps the known registrar addresses and the one connection to
// the current (home) registrar.
type registrars struct {
	c      *Cache
	huntMu sync.Mutex // serialises server hunts

	mu      sync.Mutex // guards the fields below
	static  []transport.Addr
	learned map[transport.Addr]time.Time // announced address → expiry (T7)
	order   []transport.Addr             // announced addresses in order of first announce
	cur     *session
	next    int // hunt starts at this index of candidates()
	closed  bool
}

func (r *registrars) init(c *Cache, static []transport.Addr) {
	r.c = c
	r.static = slices.Clone(static)
	r.learned = map[transport.Addr]time.Time{}
}

// LearnRegistrar adds a registrar address learned from an ASAP Server
// Announce (or any other discovery); it is forgotten after
// Config.AnnounceLifetime unless learned again. Static addresses are
// always tried first.
func (c *Cache) LearnRegistrar(addr transport.Addr) {
	r := &c.regs
	r.mu.Lock()
	if slices.Contains(r.static, addr) {
		r.mu.Unlock()
		return
	}
	_, known := r.learned[addr]
	if !known {
		if len(r.learned) >= 64 { // announces are unauthenticated: bound them
			r.mu.Unlock()
			return
		}
		r.order = append(r.order, addr)
	}
	r.learned[addr] = time.Now().Add(c.cfg.AnnounceLifetime)
	r.mu.Unlock()
	if !known {
		c.clearNegative()
	}
}

// clearNegative forgets failed resolutions, so that the next selection asks
// again (a registrar was added).
func (c *Cache) clearNegative() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pools {
		p.mu.Lock()
		p.failed = nil
		p.mu.Unlock()
	}
}

// HandleAnnounce learns the registrar addresses of an ASAP Server Announce
// received from src. Without transport parameters the registrar is assumed
// at the source address on the ASAP port over the TCP mapping.
func (c *Cache) HandleAnnounce(a *wire.ServerAnnounce, src netip.AddrPort) {
	if len(a.Transports) == 0 {
		c.LearnRegistrar(transport.AddrFrom(transport.SchemeTCP, netip.AddrPortFrom(src.Addr(), wire.PortASAP)))
		return
	}
	for _, t := range a.Transports {
		if len(t.Addrs) == 0 {
			t.Addrs = []netip.Addr{src.Addr()}
		}
		if ra, err := transport.AddrFromTransport(t); err == nil {
			c.LearnRegistrar(ra)
		}
	}
}

// Registrars returns the addresses the cache would try, static ones first.
func (c *Cache) Registrars() []transport.Addr {
	r := &c.regs
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.candidatesLocked()
}

func (r *registrars) candidatesLocked() []transport.Addr {
	out := slices.Clone(r.static)
	for _, a := range r.order {
		if _, ok := r.learned[a]; ok {
			out = append(out, a)
		}
	}
	return out
}

func (r *registrars) expire(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for a, until := range r.learned {
		if now.After(until) {
			delete(r.learned, a)
			r.order = slices.DeleteFunc(r.order, func(x transport.Addr) bool { return x == a })
		}
	}
}

func (r *registrars) close() {
	r.mu.Lock()
	r.closed = true
	s := r.cur
	r.cur = nil
	r.mu.Unlock()
	if s != nil {
		s.conn.Close()
	}
}

// session returns the connection to the home registrar, hunting for one
// (static addresses, then announced ones, starting after the last one that
// failed) if there is none.
func (r *registrars) session(ctx context.Context) (*session, error) {
	if s := r.current(); s != nil {
		return s, nil
	}
	r.huntMu.Lock()
	defer r.huntMu.Unlock()
	if s := r.current(); s != nil {
		return s, nil
	}
	r.mu.Lock()
	list := r.candidatesLocked()
	start := 0
	if len(list) > 0 {
		start = r.next % len(list)
	}
	r.mu.Unlock()
	if len(list) == 0 {
		return nil, fmt.Errorf("%w: none configured or announced", ErrNoRegistrar)
	}
	var errs []error
	for i := range list {
		addr := list[(start+i)%len(list)]
		dctx, cancel := context.WithTimeout(ctx, r.c.cfg.ConnectTimeout)
		conn, err := transport.Dial(dctx, addr, r.c.cfg.Transport)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			r.c.log.Debug("registrar connect failed", "registrar", addr, "err", err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		s := &session{addr: addr, conn: conn, done: make(chan struct{}), pending: map[wire.PoolHandle][]chan *wire.HandleResolutionResponse{}}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			conn.Close()
			return nil, ErrClosed
		}
		r.cur = s
		r.next = start + i
		r.c.wg.Add(1)
		r.mu.Unlock()
		go s.readLoop(r.c)
		r.c.log.Info("connected to registrar", "registrar", addr)
		return s, nil
	}
	return nil, fmt.Errorf("%w: %w", ErrNoRegistrar, errors.Join(errs...))
}

func (r *registrars) current() *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil {
		select {
		case <-r.cur.done:
			r.cur = nil
			r.next++
		default:
			return r.cur
		}
	}
	return nil
}

// drop closes a session that failed so that the next request hunts,
// starting with the next registrar.
func (r *registrars) drop(s *session, why error) {
	r.mu.Lock()
	if r.cur == s {
		r.cur = nil
		r.next++
	}
	r.mu.Unlock()
	s.conn.Close()
	r.c.log.Warn("dropping registrar connection", "registrar", s.addr, "err", why)
}

func (r *registrars) attempts() int {
	r.mu.Lock()
	n := len(r.static) + len(r.learned)
	r.mu.Unlock()
	return min(max(n, 2), 4)
}

// resolve sends a Handle Resolution and waits for the answer, moving to the
// next registrar on a timeout or a broken connection.
func (r *registrars) resolve(ctx context.Context, handle wire.PoolHandle) (*wire.HandleResolutionResponse, error) {
	var lastErr error
	for range r.attempts() {
		s, err := r.session(ctx)
		if err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("%w (after: %v)", err, lastErr)
			}
			return nil, err
		}
		resp, err := s.roundTrip(ctx, handle, r.c.cfg.Items, r.c.cfg.RequestTimeout)
		if err == nil {
			if resp.Error != nil {
				return nil, fmt.Errorf("%w %q (registrar %s: %s)", ErrUnknownPool, handle, s.addr, causes(resp.Error))
			}
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		lastErr = err
		r.drop(s, err)
	}
	return nil, fmt.Errorf("%w: %w", ErrNoRegistrar, lastErr)
}

func causes(e *wire.OperationError) string {
	if len(e.Causes) == 0 {
		return "no cause"
	}
	s := ""
	for i, c := range e.Causes {
		if i > 0 {
			s += ", "
		}
		s += "cause 0x" + strconv.FormatUint(uint64(c.Code), 16)
	}
	return s
}

// send writes one message to the home registrar, hunting once if the
// connection is broken.
func (r *registrars) send(ctx context.Context, m wire.Message) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	var lastErr error
	for range 2 {
		s, err := r.session(ctx)
		if err != nil {
			return err
		}
		if err = s.conn.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b}); err == nil {
			return nil
		}
		lastErr = err
		r.drop(s, err)
	}
	return lastErr
}

// session is one connection to a registrar. Responses are matched to
// requests by pool handle, oldest request first.
type session struct {
	addr transport.Addr
	conn transport.Conn
	done chan struct{} // closed when readLoop returns

	mu      sync.Mutex // guards pending and err
	pending map[wire.PoolHandle][]chan *wire.HandleResolutionResponse
	err     error
}

func (s *session) readLoop(c *Cache) {
	defer c.wg.Done()
	defer close(s.done)
	for {
		m, err := s.conn.ReadMessage()
		if err != nil {
			s.mu.Lock()
			s.err = fmt.Errorf("registrar %s: %w", s.addr, err)
			s.mu.Unlock()
			s.conn.Close()
			return
		}
		if m.PPID != wire.PPIDASAP {
			continue
		}
		msg, err := wire.ParseASAP(m.Data)
		if err != nil {
			c.log.Warn("undecodable message from registrar", "registrar", s.addr, "err", err)
			continue
		}
		if hr, ok := msg.(*wire.HandleResolutionResponse); ok {
			s.deliver(hr)
		}
	}
}

func (s *session) deliver(hr *wire.HandleResolutionResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := hr.PoolHandle
	if len(s.pending[key]) == 0 && len(s.pending) == 1 {
		// A negative response may omit the handle; with one handle
		// outstanding the match is unambiguous.
		for k := range s.pending {
			key = k
		}
	}
	q := s.pending[key]
	if len(q) == 0 {
		return
	}
	q[0] <- hr
	if len(q) == 1 {
		delete(s.pending, key)
	} else {
		s.pending[key] = q[1:]
	}
}

func (s *session) forget(handle wire.PoolHandle, ch chan *wire.HandleResolutionResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := slices.DeleteFunc(s.pending[handle], func(x chan *wire.HandleResolutionResponse) bool { return x == ch })
	if len(q) == 0 {
		delete(s.pending, handle)
	} else {
		s.pending[handle] = q
	}
}

func (s *session) roundTrip(ctx context.Context, handle wire.PoolHandle, items uint32, timeout time.Duration) (*wire.HandleResolutionResponse, error) {
	req := &wire.HandleResolution{PoolHandle: handle, HasItems: true, Items: items}
	b, err := req.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	ch := make(chan *wire.HandleResolutionResponse, 1)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return nil, err
	}
	s.pending[handle] = append(s.pending[handle], ch)
	s.mu.Unlock()
	if err := s.conn.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b}); err != nil {
		s.forget(handle, ch)
		return nil, fmt.Errorf("registrar %s: %w", s.addr, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case resp := <-ch:
		return resp, nil
	case <-t.C:
		s.forget(handle, ch)
		return nil, fmt.Errorf("registrar %s: %w", s.addr, errRequestTimeout)
	case <-s.done:
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		return nil, err
	case <-ctx.Done():
		s.forget(handle, ch)
		return nil, ctx.Err()
	}
}

// SetRegistrars replaces the static registrar list (for a configuration
// reload). The current registrar connection is kept if its address is still
// listed, and dropped otherwise.
func (c *Cache) SetRegistrars(addrs []transport.Addr) {
	r := &c.regs
	r.mu.Lock()
	r.static = slices.Clone(addrs)
	var stale *session
	if r.cur != nil && !slices.Contains(r.static, r.cur.addr) {
		if _, learned := r.learned[r.cur.addr]; !learned {
			stale, r.cur = r.cur, nil
		}
	}
	r.next = 0
	r.mu.Unlock()
	if stale != nil {
		stale.conn.Close()
	}
	c.clearNegative()
}
