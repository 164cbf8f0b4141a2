package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	peagent "github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// ServerConfig configures the pool element side. Every zero field takes its
// documented default; Element (registrars, pool handle) and Handler are
// required.
type ServerConfig struct {
	// Element is this PE's registration: Registrars, PoolHandle, Policy, ID
	// and timers. When Element.Transport.Type is zero, Serve fills in the
	// listener's address (which must then be a specific address, not a
	// wildcard). Transport Use is always "data plus control": the PE runs
	// an ASAP control channel on its associations.
	Element peagent.PEConfig
	// Handler serves one session, in a goroutine of its own; the session
	// (the association) ends when it returns. Its context is cancelled by
	// Shutdown and Close: a handler may then send a last cookie and return.
	Handler func(ctx context.Context, p *Peer)
	// PPID is the payload protocol identifier of Peer.Send. Zero means 0.
	PPID uint32
	// MaxCookieSize bounds a Cookie Echo from a pool user (a larger one ends
	// the session with ErrCookieTooLarge) and a cookie given to SendCookie.
	// Zero means 8192 bytes.
	MaxCookieSize int
	// MaxSessions bounds concurrent sessions; further associations are
	// closed at once. Zero means 1024.
	MaxSessions int
	// RecvQueue is how many received messages wait for Peer.Recv per
	// session. Zero means 64.
	RecvQueue int
	// MaxCardElements bounds the PEs kept of a business card a pool user
	// sends. Zero means 16.
	MaxCardElements int
	// BusinessCard, if set, is called for each new session and the card it
	// returns (if not nil) is sent to the pool user before anything else:
	// the PEs this PE prefers for a failover from it (RFC 5352 §3.9). RSPLIB
	// pool users cannot decode business cards; they ignore them.
	BusinessCard func() *wire.BusinessCard
	// Logger receives the server's events; nil discards them.
	Logger *slog.Logger
}

// Server is a pool element that serves sessions: it registers itself with
// peagent (Transport Use "data plus control"), accepts pool users on its
// user transport and runs Handler for each. Its methods are safe for
// concurrent use.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	ctx     context.Context // parent of the handlers' contexts
	cancel  context.CancelFunc
	wg      sync.WaitGroup // every session's reader and handler
	started chan struct{}  // closed once Serve has created the element
	refused atomic.Int64   // sessions refused for MaxSessions

	mu      sync.Mutex // guards the fields below
	ln      transport.Listener
	el      *peagent.Element
	self    wire.PoolElement
	peers   map[*Peer]struct{}
	closing bool
	drained chan struct{} // closed when closing and no session is left
}

// NewServer checks cfg and returns a server; it does nothing until Serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("session: ServerConfig.Handler is required")
	}
	if cfg.PPID == wire.PPIDASAP {
		return nil, ErrASAPPPID
	}
	if err := wire.ValidatePoolHandle(cfg.Element.PoolHandle); err != nil {
		return nil, fmt.Errorf("session: ServerConfig.Element.PoolHandle: %w", err)
	}
	if cfg.MaxCookieSize <= 0 {
		cfg.MaxCookieSize = DefaultMaxCookieSize
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1024
	}
	if cfg.RecvQueue <= 0 {
		cfg.RecvQueue = 64
	}
	if cfg.MaxCardElements <= 0 {
		cfg.MaxCardElements = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg, log: cfg.Logger.With("pool", cfg.Element.PoolHandle),
		ctx: ctx, cancel: cancel,
		started: make(chan struct{}),
		peers:   map[*Peer]struct{}{},
		drained: make(chan struct{}),
	}, nil
}

// Serve registers the pool element for ln's address and serves the
// sessions of ln until ctx ends (which closes the server like Close), or
// until Shutdown or Close; then it returns ErrClosed. Serve closes ln. It
// may be called once.
func (s *Server) Serve(ctx context.Context, ln transport.Listener) error {
	s.mu.Lock()
	if s.closing || s.ln != nil {
		s.mu.Unlock()
		ln.Close()
		if s.closing {
			return ErrClosed
		}
		return errors.New("session: Serve called twice")
	}
	s.ln = ln
	s.mu.Unlock()

	pe := s.cfg.Element
	if pe.Transport.Type == 0 {
		t, err := userTransport(ln.Addr())
		if err != nil {
			ln.Close()
			return err
		}
		pe.Transport = t
	}
	pe.Transport.Use = wire.UseDataAndControl
	el, err := peagent.NewElement(pe, peagent.Options{Logger: s.log})
	if err == nil {
		err = el.Start()
	}
	if err != nil {
		ln.Close()
		return fmt.Errorf("session: register the pool element: %w", err)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		closeElement(context.Background(), el, false)
		return ErrClosed
	}
	s.el = el
	s.self = wire.PoolElement{ID: el.ID(), User: pe.Transport, Policy: pe.Policy}
	close(s.started)
	s.mu.Unlock()
	s.log.Info("serving sessions", "pe", fmt.Sprintf("0x%08x", el.ID()), "addr", ln.Addr())

	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	var delay time.Duration // backoff after accept errors
	for {
		c, err := ln.Accept()
		if err == nil {
			delay = 0
			s.start(c)
			continue
		}
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if closing {
			return ErrClosed
		}
		if errors.Is(err, net.ErrClosed) {
			s.Close()
			return fmt.Errorf("session: accept: %w", err)
		}
		// Out of file descriptors, say: wait a little and go on, as
		// net/http does, rather than give up serving.
		if delay == 0 {
			s.log.Warn("accept failed, backing off", "err", err)
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return ErrClosed
		}
	}
}

// start runs a new session on c, unless the server is closing or full.
func (s *Server) start(c transport.Conn) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.Close()
		return
	}
	if len(s.peers) >= s.cfg.MaxSessions {
		s.mu.Unlock()
		// Abort, not Close: Close waits up to the transport's CloseTimeout
		// for the peer's end of stream, which a flooder never sends.
		transport.Abort(c)
		// A flood must not flood the log: the 1st, 2nd, 4th, 8th... refusal.
		if n := s.refused.Add(1); n&(n-1) == 0 {
			s.log.Warn("refusing sessions: too many", "remote", c.RemoteAddr(), "limit", s.cfg.MaxSessions, "refused", n)
		}
		return
	}
	p := newPeer(s, c)
	s.peers[p] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go p.readLoop()
	go s.serveSession(p)
}

// serveSession runs the handler of one session and ends the session after it.
func (s *Server) serveSession(p *Peer) {
	defer s.wg.Done()
	defer func() {
		p.Close()
		s.mu.Lock()
		delete(s.peers, p)
		if s.closing && len(s.peers) == 0 {
			s.closeDrained()
		}
		s.mu.Unlock()
	}()
	p.log.Debug("session up")
	if f := s.cfg.BusinessCard; f != nil {
		if bc := f(); bc != nil {
			if err := p.SendBusinessCard(bc); err != nil {
				p.log.Info("business card not sent", "err", err)
			}
		}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	s.cfg.Handler(ctx, p)
}

// closeDrained closes drained once; s.mu is held.
func (s *Server) closeDrained() {
	select {
	case <-s.drained:
	default:
		close(s.drained)
	}
}

// Element returns the registered pool element once Serve has created it,
// else nil.
func (s *Server) Element() *peagent.Element {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.el
}

// Self returns this PE as a Pool Element parameter (ID, user transport,
// policy), for example for a business card; zero before Serve registered it.
// The caller owns the result.
func (s *Server) Self() wire.PoolElement {
	s.mu.Lock()
	defer s.mu.Unlock()
	pe := s.self
	pe.User.Addrs = append([]netip.Addr(nil), pe.User.Addrs...)
	return pe
}

// WaitRegistered waits until Serve has registered the pool element at a
// registrar (or ctx ends). It consumes the element's Changes notifications.
func (s *Server) WaitRegistered(ctx context.Context) error {
	select {
	case <-s.started:
	case <-ctx.Done():
		return ctx.Err()
	}
	el := s.Element()
	for !el.State().Registered {
		select {
		case <-el.Changes():
		case <-ctx.Done():
			return fmt.Errorf("session: not registered (%v): %w", el.State().LastErr, ctx.Err())
		}
	}
	return nil
}

// Shutdown deregisters the pool element, stops accepting, cancels the
// handlers' contexts and waits for them to return; when ctx ends first the
// remaining sessions are closed. It returns the deregistration error.
func (s *Server) Shutdown(ctx context.Context) error {
	ln, el := s.beginClose()
	var err error
	if el != nil {
		err = closeElement(ctx, el, true)
	}
	if ln != nil {
		ln.Close()
	}
	s.cancel()
	select {
	case <-s.drained:
	case <-ctx.Done():
		s.closePeers()
	}
	s.wg.Wait()
	return err
}

// Close aborts the server: it closes the listener and every session at once
// and leaves the registration like a crash would (the registrar removes
// the PE when its connection ends). Idempotent.
func (s *Server) Close() error {
	ln, el := s.beginClose()
	s.cancel()
	if ln != nil {
		ln.Close()
	}
	s.closePeers()
	if el != nil {
		closeElement(context.Background(), el, false)
	}
	s.wg.Wait()
	return nil
}

// beginClose marks the server closing and takes the listener and element
// (each is closed once).
func (s *Server) beginClose() (transport.Listener, *peagent.Element) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	if len(s.peers) == 0 {
		s.closeDrained()
	}
	ln, el := s.ln, s.el
	s.el = nil
	if ln != nil {
		s.ln = closedListener{ln}
	}
	return ln, el
}

func (s *Server) closePeers() {
	s.mu.Lock()
	peers := make([]*Peer, 0, len(s.peers))
	for p := range s.peers {
		peers = append(peers, p)
	}
	s.mu.Unlock()
	for _, p := range peers {
		// One by one, each Close could wait CloseTimeout for its peer.
		s.wg.Add(1)
		go func() { defer s.wg.Done(); p.Close() }()
	}
}

// closeElement ends the registration: with deregister, by an ASAP
// Deregistration bounded by ctx; without, at once (the registrar notices
// the connection's end).
func closeElement(ctx context.Context, el *peagent.Element, deregister bool) error {
	if !deregister {
		c, cancel := context.WithCancel(ctx)
		cancel()
		ctx = c
	}
	err := el.Close(ctx)
	if !deregister {
		return nil
	}
	return err
}

// closedListener stands for a listener that was already closed, so that a
// second Shutdown or Close does not close it again.
type closedListener struct{ transport.Listener }

func (closedListener) Close() error { return nil }

// userTransport derives the registered user transport from a listener's
// address: a *net.TCPAddr (TCP mapping, TLS) or an SCTP address
// ("a1/a2:port").
func userTransport(a net.Addr) (wire.Transport, error) {
	t := wire.Transport{Type: wire.TransportTCP, Use: wire.UseDataAndControl}
	i := strings.LastIndexByte(a.String(), ':')
	if i < 0 {
		return t, fmt.Errorf("session: listener address %q: no port", a)
	}
	host, port := a.String()[:i], a.String()[i+1:]
	if a.Network() == "sctp" {
		t.Type = wire.TransportSCTP
	}
	for _, h := range strings.Split(host, "/") {
		ip, err := netip.ParseAddr(strings.Trim(h, "[]"))
		if err != nil {
			return t, fmt.Errorf("session: listener address %q: %w", a, err)
		}
		if ip.IsUnspecified() {
			return t, fmt.Errorf("session: listener address %q is a wildcard: listen on a specific address or set ServerConfig.Element.Transport", a)
		}
		t.Addrs = append(t.Addrs, ip.Unmap())
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return t, fmt.Errorf("session: listener address %q: bad port", a)
	}
	t.Port = uint16(p)
	if t.Type == wire.TransportTCP && len(t.Addrs) != 1 {
		return t, fmt.Errorf("session: listener address %q: a TCP transport has one address", a)
	}
	return t, nil
}
