package registrar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rserpool/rserpool/internal/admin"
	"github.com/rserpool/rserpool/registrar/enrp"
	"github.com/rserpool/rserpool/transport"
)

// Options are the registrar's dependencies.
type Options struct {
	// Logger receives every log line; nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics; nil = a private registry.
	Registerer prometheus.Registerer
	// Gatherer serves /metrics; nil = Registerer if it is a Gatherer (as
	// *prometheus.Registry is), else the private registry.
	Gatherer prometheus.Gatherer
	// OnChange is called on the loop goroutine for every change of a PE
	// this registrar owns (the feed for ENRP Handle Updates). It must not
	// block and must not call back into the Registrar.
	OnChange func(Change)
}

// Registrar is an RSerPool registrar (ASAP server). Create it with New,
// bind with Start, stop with Shutdown or Close. Its methods are safe for
// concurrent use.
type Registrar struct {
	id       ServerID
	log      *slog.Logger
	m        *metrics
	gatherer prometheus.Gatherer
	loop     *loop
	limits   atomic.Pointer[LimitsConfig]
	tcfg     transport.Config

	stop     chan struct{} // closed to end the loop
	loopDone chan struct{}
	wg       sync.WaitGroup // every goroutine except the loop

	mu        sync.Mutex // guards the fields below
	cfg       Config
	started   bool
	closed    bool
	listeners []transport.Listener
	asapAddrs []string
	conns     map[*conn]struct{}
	perSource map[netip.Addr]int // accepted ASAP connections per source address
	admin     *admin.Server
	adminAddr string
	announce  *announcer
	nextConn  uint64

	nconns  atomic.Int64
	serving atomic.Bool
	closers chan struct{} // one token per background closeRefused

	ready     chan struct{} // closed when ASAP may be served (ENRP start-up done)
	enrpLns   []transport.Listener
	enrpAddrs []string
	peerMgr   *peerMgr
	mcRecv    *transport.MulticastReceiver
	// parker holds idle ASAP connections (nil without epoll); set by
	// Start before the accept loops, read by serveConn.
	parker *transport.Parker
}

// New validates cfg and builds a registrar; nothing is bound until Start.
func New(cfg Config, opts Options) (*Registrar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ID == 0 {
		cfg.ID = randomID()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	gath := opts.Gatherer
	if reg == nil {
		pr := prometheus.NewRegistry()
		reg = pr
		if gath == nil {
			gath = pr
		}
	}
	if gath == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			gath = g
		} else {
			gath = prometheus.NewRegistry()
		}
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registrar: metrics: %w", err)
	}
	r := &Registrar{
		id:        cfg.ID,
		log:       log.With("registrar", cfg.ID.String()),
		m:         m,
		gatherer:  gath,
		cfg:       cfg,
		stop:      make(chan struct{}),
		loopDone:  make(chan struct{}),
		conns:     map[*conn]struct{}{},
		perSource: map[netip.Addr]int{},
		closers:   make(chan struct{}, maxClosers),
	}
	lim := cfg.Limits
	r.limits.Store(&lim)
	// The loop hands each change of an owned PE to the ENRP node itself,
	// then to opts.OnChange.
	l := newLoop(uint32(cfg.ID), cfg, r.log, m, opts.OnChange)
	l.dial = r.dialPE
	r.loop = l
	m.poolGauge.refresh = func() {
		r.do(func(l *loop) { poolSizes(l.hs, m.poolElements, l.cfg.Limits.MetricPools) })
	}
	if err := reg.Register(newPeerGauges(r)); err != nil {
		return nil, fmt.Errorf("registrar: metrics: %w", err)
	}
	r.ready = make(chan struct{})
	r.tcfg = transport.Config{
		HeartbeatInterval:  cfg.Timers.ConnHeartbeatInterval,
		HeartbeatMaxMissed: cfg.Timers.ConnHeartbeatMaxMissed,
		MaxMessageSize:     cfg.Limits.MaxMessageSize,
		Logger:             r.log,
	}
	return r, nil
}

// ID returns the registrar's server identifier.
func (r *Registrar) ID() ServerID { return r.id }

// Start binds every listener (returning the first bind error, with nothing
// left open), starts the event loop, the accept loops, the admin server and
// the announcer.
func (r *Registrar) Start() (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.closed {
		return errors.New("registrar: already started or closed")
	}
	cfg := r.cfg
	defer func() {
		if err != nil {
			for _, ln := range r.listeners {
				ln.Close()
			}
			r.listeners, r.asapAddrs = nil, nil
			for _, ln := range r.enrpLns {
				ln.Close()
			}
			r.enrpLns, r.enrpAddrs = nil, nil
			if r.mcRecv != nil {
				r.mcRecv.Close()
				r.mcRecv = nil
			}
			if r.loop.enrp != nil && r.loop.enrp.mc != nil {
				r.loop.enrp.mc.Close()
			}
			r.loop.enrp = nil
			if r.admin != nil {
				r.admin.Close()
				r.admin = nil
			}
		}
	}()
	for _, a := range cfg.ASAP.Listen {
		tc := r.tcfg
		la, err := transport.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("registrar: asap.listen: %w", err)
		}
		if la.Scheme() == transport.SchemeTLS {
			if tc.TLS, err = serverTLS(cfg.TLS); err != nil {
				return fmt.Errorf("registrar: tls: %w", err)
			}
		}
		ln, err := transport.Listen(la, &tc)
		if err != nil {
			return fmt.Errorf("registrar: listen %q: %w", a, err)
		}
		r.listeners = append(r.listeners, ln)
		r.asapAddrs = append(r.asapAddrs, boundAddr(la.Scheme(), ln))
	}
	if cfg.ENRP.Enabled() {
		if err := r.startENRP(cfg); err != nil {
			return err
		}
	} else {
		close(r.ready)
	}
	if cfg.Admin.Listen != "" {
		srv, err := admin.Listen(cfg.Admin.Listen, r.adminHandler(), r.log)
		if err != nil {
			return fmt.Errorf("registrar: admin.listen %q: %w", cfg.Admin.Listen, err)
		}
		r.admin, r.adminAddr = srv, srv.Addr()
	}
	if cfg.Announce.Enabled {
		a, err := newAnnouncer(cfg.Announce, uint32(r.id), r.asapAddrs, r.log, r.m)
		if err != nil {
			return fmt.Errorf("registrar: announce: %w", err)
		}
		r.announce = a
		r.wg.Add(1)
		go func() { defer r.wg.Done(); a.run(r.stop) }()
	}
	go func() {
		defer close(r.loopDone)
		r.loop.run(r.stop)
		if es := r.loop.enrp; es != nil && es.mc != nil {
			es.mc.Close()
		}
	}()
	if r.peerMgr != nil {
		for i, ln := range r.enrpLns {
			r.wg.Add(1)
			go r.peerMgr.accept(ln, schemeOf(cfg.ENRP.Listen[i]))
			r.log.Info("listening", "proto", "enrp", "addr", r.enrpAddrs[i])
		}
		if r.mcRecv != nil {
			r.wg.Add(1)
			go r.peerMgr.receiveMulticast(r.mcRecv)
		}
	}
	// Idle ASAP connections wait in the Parker rather than each in a
	// goroutine; without it (no epoll) each keeps its goroutine.
	if p, err := transport.NewParker(); err == nil {
		r.parker = p
	} else {
		r.log.Warn("idle connections keep a goroutine each", "err", err)
	}
	for i, ln := range r.listeners {
		r.wg.Add(1)
		go r.acceptLoop(ln, schemeOf(cfg.ASAP.Listen[i]))
		r.log.Info("listening", "proto", "asap", "addr", r.asapAddrs[i])
	}
	if r.adminAddr != "" {
		r.log.Info("listening", "proto", "admin", "addr", r.adminAddr)
	}
	r.started = true
	if r.peerMgr == nil {
		r.serving.Store(true)
		return nil
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case <-r.ready:
			r.serving.Store(true)
		case <-r.stop:
		}
	}()
	return nil
}

// startENRP binds the ENRP listeners and the multicast channel and builds
// the protocol node; the caller's deferred cleanup closes what was opened
// when it fails.
func (r *Registrar) startENRP(cfg Config) error {
	var sctpLocal transport.Addr
	for _, a := range cfg.ENRP.Listen {
		tc := r.tcfg
		tc.MaxMessageSize = 0 // Handle Table Responses are larger than ASAP messages
		la, err := transport.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("registrar: enrp.listen: %w", err)
		}
		// Peers are dialed from the SCTP listener's endpoint (see
		// peerMgr.sctpLocal), which therefore shares its port.
		tc.ReusePort = la.Scheme() == transport.SchemeSCTP && sctpLocal.IsZero()
		if la.Scheme() == transport.SchemeTLS {
			if tc.TLS, err = serverTLS(cfg.TLS); err != nil {
				return fmt.Errorf("registrar: tls: %w", err)
			}
			if tc.TLS.ClientCAs != nil {
				tc.TLS.ClientAuth = tls.RequireAndVerifyClientCert
			}
		}
		ln, err := transport.Listen(la, &tc)
		if err != nil {
			return fmt.Errorf("registrar: listen %q: %w", a, err)
		}
		r.enrpLns = append(r.enrpLns, ln)
		r.enrpAddrs = append(r.enrpAddrs, boundAddr(la.Scheme(), ln))
		if tc.ReusePort {
			sctpLocal, _ = transport.ParseAddr(r.enrpAddrs[len(r.enrpAddrs)-1])
		}
	}
	cli, err := clientTLS(cfg.TLS)
	if err != nil {
		return fmt.Errorf("registrar: tls: %w", err)
	}
	tcfg := r.tcfg
	tcfg.MaxMessageSize = 0
	pm := &peerMgr{
		log: r.log, tcfg: tcfg, tlsCli: cli, events: r.loop.events, stop: r.stop, wg: &r.wg,
		dialTO: 3 * time.Second, conns: map[string]*peerConn{},
		allow: parsePrefixes(cfg.ENRP.Allow), closeRefused: r.closeRefused, m: r.m,
		sctpLocal: sctpLocal, accepted: make(chan struct{}),
	}
	pm.ctx, pm.cancel = context.WithCancel(context.Background())
	pm.tlsOnly = len(cfg.ENRP.Listen) > 0 && !slices.ContainsFunc(cfg.ENRP.Listen, func(a string) bool {
		return schemeOf(a) != transport.SchemeTLS
	})
	// Peers that reach us (listeners) or that we learn of by multicast
	// are unauthenticated unless every ENRP connection is TLS.
	if len(pm.allow) == 0 && !pm.tlsOnly && (len(cfg.ENRP.Listen) > 0 || cfg.ENRP.Multicast.Enabled) {
		r.log.Warn("ENRP accepts unauthenticated peers from any source; set enrp.allow or use tls://",
			"listen", strings.Join(cfg.ENRP.Listen, ","), "multicast", cfg.ENRP.Multicast.Enabled)
	}
	if len(cfg.ENRP.PeerIdentities) > 0 {
		pm.ids = map[string]bool{}
		for _, id := range cfg.ENRP.PeerIdentities {
			pm.ids[id] = true
		}
	}
	if cfg.ENRP.MaxTimeNoResponse > 0 {
		pm.dialTO = cfg.ENRP.MaxTimeNoResponse
	}
	es := &enrpSide{pm: pm, ready: make(chan struct{})}
	if mc := cfg.ENRP.Multicast; mc.Enabled {
		es.mc, err = transport.NewMulticastSender(mc.Group, mc.Interface, mc.TTL, true)
		if err != nil {
			return fmt.Errorf("registrar: enrp.multicast: %w", err)
		}
		r.mcRecv, err = transport.ListenMulticast(mc.Group, mc.Interface)
		if err != nil {
			es.mc.Close()
			return fmt.Errorf("registrar: enrp.multicast: %w", err)
		}
	}
	now := time.Now()
	es.node = enrp.New(enrpConfig(cfg, serverInfo(r.enrpAddrs)), r.loop.hs, cfg.ENRP.Peers, now)
	r.loop.enrp = es
	r.peerMgr = pm
	// ASAP waits for the node's start-up synchronisation (RFC 5353 §3.2).
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case <-es.ready:
			close(r.ready)
		case <-r.stop:
		}
	}()
	return nil
}

// ENRPAddrs returns the bound ENRP addresses with their scheme. The slice
// is the caller's.
func (r *Registrar) ENRPAddrs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.enrpAddrs...)
}

// Ready returns a channel closed once the registrar serves ASAP: at Start
// without ENRP, after the ENRP start-up synchronisation with it.
func (r *Registrar) Ready() <-chan struct{} { return r.ready }

func serverTLS(c TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pool, err := loadCAPool(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// loadCAPool reads the PEM certificates in file into a pool.
func loadCAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificates", file)
	}
	return pool, nil
}

// acceptLoop accepts connections until the listener closes.
func (r *Registrar) acceptLoop(ln transport.Listener, scheme transport.Scheme) {
	defer r.wg.Done()
	select {
	case <-r.ready:
	case <-r.stop:
		return
	}
	for {
		tc, err := ln.Accept()
		if err != nil {
			r.mu.Lock()
			closed := r.closed
			r.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("accept failed", "err", err)
			select {
			case <-r.stop:
				return
			case <-time.After(10 * time.Millisecond): // back off on e.g. EMFILE
			}
			continue
		}
		lim := r.limits.Load()
		var src netip.Addr
		if addrs, _ := peerAddrs(tc); len(addrs) > 0 {
			src = addrs[0]
		}
		if n := r.nconns.Add(1); n > int64(lim.MaxConnections) {
			r.nconns.Add(-1)
			r.refuse(tc, limitConnections, "connection refused: max_connections reached")
			continue
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			r.nconns.Add(-1)
			r.closeRefused(tc)
			return
		}
		if src.IsValid() && r.perSource[src] >= lim.MaxSourceConnections {
			r.mu.Unlock()
			r.nconns.Add(-1)
			r.refuse(tc, limitSourceConnections, "connection refused: max_source_connections reached")
			continue
		}
		if src.IsValid() {
			r.perSource[src]++
		}
		r.nextConn++
		c := newConn(r.nextConn, tc, scheme, lim.SendQueueBytes, r.log, &r.wg)
		c.src = src
		r.conns[c] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		r.m.connections.Inc()
		r.m.connectionsTotal.WithLabelValues("accepted").Inc()
		c.resume = func() { r.serveConn(c) }
		go r.serveConn(c)
	}
}

// refuse closes an accepted connection that a limit turns away, counts it
// and logs it (one line per message text and second with the daemons'
// handler).
func (r *Registrar) refuse(tc transport.Conn, limit, msg string) {
	peer := tc.RemoteAddr().String()
	r.closeRefused(tc)
	r.m.connectionsTotal.WithLabelValues("refused").Inc()
	r.m.limitRejections.WithLabelValues(limit).Inc()
	r.log.Warn(msg, "peer", peer)
}

// maxClosers bounds the refused connections being closed in the
// background at once.
const maxClosers = 256

// closeRefused closes tc without holding up the caller (an accept loop):
// the transport's Close waits up to its close timeout (2 s) for the peer's
// end of stream, which a flooding peer never sends. At most maxClosers run
// in the background; beyond that the caller closes inline, which slows
// accepting down instead of piling up goroutines.
func (r *Registrar) closeRefused(tc transport.Conn) {
	select {
	case r.closers <- struct{}{}:
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			transport.Abort(tc)
			<-r.closers
		}()
	default:
		transport.Abort(tc)
	}
}

// ASAPAddrs returns the bound ASAP addresses with their scheme, for example
// "tcp://127.0.0.1:40123". The slice is the caller's.
func (r *Registrar) ASAPAddrs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.asapAddrs...)
}

// AdminAddr returns the bound admin HTTP address ("" when disabled).
func (r *Registrar) AdminAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.adminAddr
}

// Reload applies what can change at run time: limits, authorization,
// timers (from the next timer on), registration rules. Listeners, the ID,
// TLS and announces keep their values (a warning names what differs).
func (r *Registrar) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	old := r.cfg
	cfg.ID = old.ID
	if fmt.Sprint(cfg.ASAP, cfg.Admin, cfg.TLS, cfg.Announce, cfg.ENRP) != fmt.Sprint(old.ASAP, old.Admin, old.TLS, old.Announce, old.ENRP) {
		r.log.Warn("reload: listeners, TLS, announce and ENRP settings need a restart; keeping the old ones")
	}
	cfg.ASAP, cfg.Admin, cfg.TLS, cfg.Announce, cfg.ENRP = old.ASAP, old.Admin, old.TLS, old.Announce, old.ENRP
	cfg.Limits.MaxMessageSize = old.Limits.MaxMessageSize // bound into the transport
	r.cfg = cfg
	started := r.started
	r.mu.Unlock()
	lim := cfg.Limits
	r.limits.Store(&lim)
	if !started {
		r.loop.apply(cfg, time.Now())
		return nil
	}
	done := make(chan struct{})
	select {
	case r.loop.events <- evReload{cfg, done}:
	case <-r.loopDone:
		return errors.New("registrar: closed")
	}
	select {
	case <-done:
	case <-r.loopDone:
	}
	r.log.Info("configuration reloaded")
	return nil
}

// Shutdown stops accepting, closes every connection and stops the loop and
// the admin server, waiting for every goroutine or until ctx ends.
func (r *Registrar) Shutdown(ctx context.Context) error {
	r.serving.Store(false)
	r.mu.Lock()
	admin := r.admin
	r.mu.Unlock()
	if admin != nil {
		_ = admin.Shutdown(ctx)
	}
	return r.shutdown(ctx)
}

// Close aborts: like Shutdown without waiting for admin requests.
func (r *Registrar) Close() error {
	r.serving.Store(false)
	return r.shutdown(context.Background())
}

func (r *Registrar) shutdown(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return r.wait(ctx)
	}
	r.closed = true
	started := r.started
	for _, ln := range r.listeners {
		ln.Close()
	}
	for _, ln := range r.enrpLns {
		ln.Close()
	}
	if r.mcRecv != nil {
		r.mcRecv.Close()
	}
	// ENRP first: the connections closed below are closed by us, not by
	// their PEs, and must not be announced to peers as removals. The peers
	// take this registrar's PEs over, and the PEs re-register elsewhere.
	if r.peerMgr != nil {
		r.peerMgr.closeAll()
	}
	for c := range r.conns {
		c.close()
	}
	if r.admin != nil {
		r.admin.Close()
	}
	parker := r.parker
	r.mu.Unlock()
	close(r.stop)
	if parker != nil {
		// Every connection is closed: the parked ones resume and end.
		parker.Close()
	}
	if !started {
		close(r.loopDone)
	}
	return r.wait(ctx)
}

func (r *Registrar) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.wg.Wait(); <-r.loopDone; close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Do runs fn on the loop goroutine and waits for it: a way to inspect the
// handlespace consistently (tests, in-process tools). fn must not block.
func (r *Registrar) do(fn func(*loop)) error {
	done := make(chan struct{})
	select {
	case r.loop.events <- evFunc{func(l *loop) { fn(l); close(done) }}:
	case <-r.loopDone:
		return errors.New("registrar: closed")
	}
	select {
	case <-done:
		return nil
	case <-r.loopDone:
		return errors.New("registrar: closed")
	}
}

// boundAddr is the text form of a listener's bound address.
func boundAddr(s transport.Scheme, ln transport.Listener) string {
	if a, err := transport.AddrFromNet(s, ln.Addr()); err == nil {
		return a.String()
	}
	return string(s) + "://" + ln.Addr().String()
}
