package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rserpool/rserpool/failover"
	"github.com/rserpool/rserpool/internal/admin"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Options carries the injected dependencies of a Proxy.
type Options struct {
	// Cache resolves the listeners' pools. Nil: the Proxy builds one from
	// Config (registrars, announces, [cache]) and owns it (starts, reloads
	// and closes it). A given Cache is used as it is and not closed.
	Cache      *pucache.Cache
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers nothing; served at /metrics when a Gatherer
}

// Proxy accepts client connections on its listeners and relays each one to
// a live PE of the listener's pool. Its methods are safe for concurrent use.
type Proxy struct {
	cache    *pucache.Cache
	ownCache bool
	log      *slog.Logger
	reg      prometheus.Registerer
	m        *metrics
	ctx      context.Context // cancelled by Close: aborts PE dials
	abort    context.CancelFunc
	wg       sync.WaitGroup // accept loops and connections (of both engines)
	draining atomic.Bool    // Shutdown began: /healthz answers 503
	// loopConns counts the connections the event loops own (the
	// goroutine relay's are in conns).
	loopConns atomic.Int64

	mu        sync.Mutex // guards the fields below
	cfg       *Config
	listeners map[transport.Addr]*listener
	conns     map[*relay]struct{}
	pools     []wire.PoolHandle // pools of the current listeners
	admin     *admin.Server
	loops     *loops  // the event-loop engine; nil until a listener uses it
	pes       peStats // connections and failures per PE, for the status page
	started   bool
	stopping  bool // Shutdown or Close called: no new listeners
}

// New builds a Proxy for cfg (validated: see Config.Validate); it starts
// nothing (see Start).
func New(cfg *Config, opts Options) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	cache, own := opts.Cache, false
	if cache == nil {
		if cache, err = pucache.New(cfg.cacheConfig(), pucache.Options{Logger: log.With("component", "pucache"), Registerer: opts.Registerer}); err != nil {
			return nil, err
		}
		own = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		cache: cache, ownCache: own, log: log, reg: opts.Registerer, m: m, ctx: ctx, abort: cancel, cfg: cfg,
		listeners: map[transport.Addr]*listener{}, conns: map[*relay]struct{}{},
	}
	seen := map[wire.PoolHandle]bool{}
	for _, lc := range cfg.Listeners {
		l := p.newListener(lc)
		p.listeners[lc.Listen] = l
		if !seen[lc.Pool] {
			seen[lc.Pool] = true
			p.pools = append(p.pools, lc.Pool)
		}
	}
	return p, nil
}

// Start starts the cache it owns, resolves every configured pool once (so
// that the first client does not wait for a registrar; a failure is logged,
// the pool is resolved again on the first connection), binds every
// listener and the admin server, and starts accepting. The Proxy is ready
// when Start returns; on error nothing stays bound.
func (p *Proxy) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.stopping {
		return errors.New("proxy: already started or stopped")
	}
	if p.ownCache {
		if err := p.cache.Start(); err != nil {
			return err
		}
		if g := p.cfg.Announces(); g != "" {
			p.log.Info("listening for registrar announces", "group", g)
		}
	}
	p.warm()
	var bound []*listener
	unbind := func() {
		for _, b := range bound {
			b.ln.Close()
		}
		if p.loops != nil {
			p.loops.stop()
			p.loops = nil
		}
	}
	for _, l := range p.listeners {
		if err := p.bind(l); err != nil {
			unbind()
			return err
		}
		bound = append(bound, l)
	}
	if p.cfg.Admin != "" {
		srv, err := admin.Listen(p.cfg.Admin, p.adminHandler(), p.log)
		if err != nil {
			unbind()
			return fmt.Errorf("proxy: admin: %w", err)
		}
		p.admin = srv
		p.log.Info("listening", "proto", "admin", "addr", srv.Addr())
	}
	for _, l := range bound {
		p.startListener(l)
	}
	p.started = true
	return nil
}

// warm resolves every configured pool once, within 5 s in all. With
// announced registrars only, it waits for the first announce (registrars
// announce about once a second) rather than giving up at once.
func (p *Proxy) warm() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	announced := p.ownCache && len(p.cfg.Registrars) == 0 && p.cfg.Announces() != ""
	for _, pool := range p.pools {
		for {
			err := p.cache.Pool(pool).Refresh(ctx)
			if err == nil {
				break
			}
			if !announced || !errors.Is(err, pucache.ErrNoRegistrar) || ctx.Err() != nil {
				p.log.Warn("pool not resolvable yet", "pool", pool, "err", err)
				break
			}
			t := time.NewTimer(250 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
}

// adminHandler serves the status page (/), /metrics, /healthz (503 while
// draining) and the Go profiling endpoints under /debug/pprof/.
func (p *Proxy) adminHandler() http.Handler {
	mux := admin.Mux(admin.Gatherer(p.reg), func() error {
		if p.draining.Load() {
			return errors.New("draining")
		}
		return nil
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if page, err := p.statusPage(); err != nil {
		p.log.Error("no status page", "err", err)
	} else {
		page.Handle(mux)
	}
	return mux
}

// AdminAddr returns the bound admin address ("" without one).
func (p *Proxy) AdminAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.admin == nil {
		return ""
	}
	return p.admin.Addr()
}

// Bound returns the bound address of every listener, by its configured
// listen address in short form ("127.0.0.1:0" → "127.0.0.1:40123").
func (p *Proxy) Bound() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]string{}
	for a, l := range p.listeners {
		if l.ln != nil {
			out[a.ShortString()] = l.ln.Addr().String()
		}
	}
	return out
}

// Addr returns the bound address of the listener configured with listen
// (its "listen" key), or nil.
func (p *Proxy) Addr(listen transport.Addr) net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.listeners[listen]; l != nil && l.ln != nil {
		return l.ln.Addr()
	}
	return nil
}

// Reload applies a new configuration without touching established
// connections: new listeners are bound (if one fails, nothing changes and
// the error is returned), listeners with the same listen address take the
// new settings for their next connections, removed listeners stop
// accepting while their connections run on, and a cache the Proxy owns
// takes the new registrar list. Admin address, announce group and [cache]
// timers apply at the next start.
func (p *Proxy) Reload(cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := p.reloadListeners(cfg.Listeners); err != nil {
		return err
	}
	p.mu.Lock()
	p.cfg = cfg
	p.mu.Unlock()
	if p.ownCache {
		p.cache.SetRegistrars(cfg.Registrars)
	}
	return nil
}

func (p *Proxy) reloadListeners(listeners []ListenerConfig) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return errors.New("proxy: stopping")
	}
	want := map[transport.Addr]ListenerConfig{}
	for _, lc := range listeners {
		want[lc.Listen] = lc
	}
	var added []*listener
	for addr, lc := range want {
		if p.listeners[addr] != nil {
			continue
		}
		l := p.newListener(lc)
		if p.started {
			if err := p.bind(l); err != nil {
				for _, a := range added {
					a.ln.Close()
				}
				return err
			}
		}
		added = append(added, l)
	}
	for addr, l := range p.listeners {
		lc, keep := want[addr]
		if keep {
			l.set(p.settingsFor(lc, l.lm))
			continue
		}
		if l.ln != nil {
			l.ln.Close()
		}
		delete(p.listeners, addr)
		p.log.Info("listener removed", "listener", l.label)
	}
	for _, l := range added {
		p.listeners[l.cfg.Listen] = l
		if p.started {
			p.startListener(l)
		}
		p.log.Info("listener added", "listener", l.label, "pool", l.cfg.Pool)
	}
	// Pools no listener uses any more stop being refreshed (connections
	// still relaying keep their PE).
	inUse := map[wire.PoolHandle]bool{}
	for _, lc := range want {
		inUse[lc.Pool] = true
	}
	for _, pool := range p.pools {
		if !inUse[pool] {
			p.cache.Forget(pool)
		}
	}
	p.pools = p.pools[:0]
	for pool := range inUse {
		p.pools = append(p.pools, pool)
	}
	return nil
}

// Shutdown drains: it stops accepting (and /healthz answers 503), waits
// for established connections to finish until ctx ends or DrainTimeout
// passed, then closes the remaining ones, the admin server and a cache the
// Proxy owns. It returns context.DeadlineExceeded (or ctx's error) when
// connections had to be closed.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.draining.Store(true)
	p.mu.Lock()
	d := p.cfg.DrainTimeout
	p.mu.Unlock()
	if d <= 0 {
		d = DefaultDrainTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	p.log.Info("draining", "drain_timeout", d, "active", p.Active())
	p.stopAccepting()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		p.closeConns()
		<-done
		err = ctx.Err()
	}
	p.closeRest()
	return err
}

// Close stops accepting, closes every connection at once and waits for
// every goroutine of the Proxy.
func (p *Proxy) Close() error {
	p.stopAccepting()
	p.closeConns()
	p.wg.Wait()
	p.closeRest()
	return nil
}

// closeRest stops the event loops and closes the admin server and an
// owned cache.
func (p *Proxy) closeRest() {
	p.mu.Lock()
	srv := p.admin
	p.admin = nil
	lps := p.loops
	p.loops = nil
	p.mu.Unlock()
	if lps != nil {
		p.abort() // helpers waiting for a registrar give up
		lps.stop()
	}
	if srv != nil {
		srv.Close()
	}
	if p.ownCache {
		p.cache.Close()
	}
}

// Active returns the number of open client connections over all listeners.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) + int(p.loopConns.Load())
}

func (p *Proxy) stopAccepting() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopping = true
	for _, l := range p.listeners {
		if l.ln != nil {
			l.ln.Close()
		}
	}
}

func (p *Proxy) closeConns() {
	p.abort()
	p.mu.Lock()
	lps := p.loops
	for r := range p.conns {
		r.closeBoth()
	}
	p.mu.Unlock()
	if lps != nil {
		lps.closeConns()
	}
}

// listener is one [[listener]]: its socket and its current settings.
type listener struct {
	p      *Proxy
	cfg    ListenerConfig // as first configured (listen address and label)
	label  string
	lm     *listenerMetrics
	ln     acceptor     // bound socket of either engine
	gln    net.Listener // the goroutine engine's (serve accepts from it)
	st     atomic.Pointer[settings]
	active atomic.Int64

	refusedSince  atomic.Int64 // refused connections not yet logged
	lastRefuseLog atomic.Int64 // UnixNano of the last refusal log line
}

// settings are what a connection needs from its listener's configuration;
// replaced as a whole by Reload.
type settings struct {
	pool    wire.PoolHandle
	dialer  *failover.Dialer
	pools   *interceptPools // by original destination; nil: dialer for all
	max     int64
	idle    time.Duration
	replay  bool
	srcIP   bool // connect from the client's address
	ppv     string
	connect time.Duration
}

func (p *Proxy) newListener(lc ListenerConfig) *listener {
	l := &listener{p: p, cfg: lc, label: lc.Label()}
	l.lm = p.m.forListener(l.label)
	l.set(p.settingsFor(lc, l.lm))
	return l
}

func (p *Proxy) settingsFor(lc ListenerConfig, lm *listenerMetrics) *settings {
	d := p.dialerFor(lc, lc.Pool, lm)
	var pools *interceptPools
	if lc.Intercept != "" || len(lc.InterceptPools) > 0 {
		pools = &interceptPools{m: map[netip.AddrPort]*failover.Dialer{}}
		if lc.Intercept != "" {
			pools.m[mustAddrPort(lc.Intercept)] = d
		}
		for a, pool := range lc.InterceptPools {
			pools.m[mustAddrPort(a)] = p.dialerFor(lc, pool, lm)
		}
	}
	max := int64(lc.MaxConnections)
	switch {
	case max == 0:
		max = 10000
	case max < 0:
		max = 0
	}
	return &settings{
		pool: lc.Pool, dialer: d, pools: pools, max: max, idle: lc.IdleTimeout,
		replay: lc.ReplayBuffer > 0, srcIP: lc.TransparentSource, ppv: lc.ProxyProtocol, connect: d.Config().ConnectTimeout,
	}
}

// dialerFor builds the failover dialer of one pool of a listener.
func (p *Proxy) dialerFor(lc ListenerConfig, pool wire.PoolHandle, lm *listenerMetrics) *failover.Dialer {
	fc := failover.Config{
		Attempts:         lc.Attempts(),
		ConnectTimeout:   lc.ConnectTimeout,
		Deadline:         lc.FailoverTimeout,
		HedgeDelay:       lc.HedgeDelay,
		ReplayBuffer:     lc.ReplayBuffer,
		FirstByteTimeout: lc.FirstByteTimeout,
	}
	d := failover.NewDialer(p.cache.Pool(pool), fc)
	log := p.log.With("listener", lc.Label(), "pool", pool)
	d.OnConnect = func(e pucache.Element) { p.pes.connected(pool, e) }
	d.OnFailure = func(e pucache.Element, err error) {
		p.pes.failed(pool, e, err)
		lm.failovers.Inc()
		log.Warn("pool element failed, trying another", "pe", fmt.Sprintf("0x%08x", e.ID), "addr", e.Addr, "err", err)
	}
	return d
}

func (l *listener) set(s *settings) { l.st.Store(s) }

// bind binds l on the event-loop engine (TCP on Linux, unless the
// listener asks for the goroutine relay) or on the goroutine relay; p.mu
// is held.
func (p *Proxy) bind(l *listener) error {
	if l.cfg.Listen.Scheme() == transport.SchemeTCP && l.cfg.Engine != EngineGoroutine && loopsAvailable {
		if p.loops == nil {
			lps, err := newLoops(p)
			if err != nil {
				return fmt.Errorf("proxy: event loops: %w", err)
			}
			p.loops = lps
		}
		ln, err := p.loops.listen(l)
		if err != nil {
			return err
		}
		l.ln = ln
		return nil
	}
	lc := listenConfigFor(l.cfg)
	ln, err := transport.ListenStream(l.cfg.Listen, &lc)
	if err != nil {
		return fmt.Errorf("proxy: listener %s: %w", l.label, err)
	}
	l.ln, l.gln = ln, ln
	return nil
}

// startListener starts accepting; p.mu is held.
func (p *Proxy) startListener(l *listener) {
	engine := EngineLoop
	if l.gln != nil {
		engine = EngineGoroutine
		p.wg.Add(1)
		go l.serve()
	}
	p.log.Info("listening", "listener", l.label, "addr", l.ln.Addr().String(), "pool", l.cfg.Pool, "engine", engine)
}

// serve is the accept loop of one listener.
func (l *listener) serve() {
	p := l.p
	defer p.wg.Done()
	var delay time.Duration
	for {
		c, err := l.gln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.log.Error("accept failed", "listener", l.label, "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		st := l.st.Load()
		if st.max > 0 && l.active.Load() >= st.max {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
			l.refused(st.max)
			continue
		}
		l.active.Add(1)
		l.lm.active.Inc()
		p.wg.Add(1)
		go l.handle(c, st)
	}
}

// refused counts a connection reset for the limit and logs at most once a
// second.
func (l *listener) refused(limit int64) {
	l.lm.refused.Inc()
	n := l.refusedSince.Add(1)
	now := time.Now().UnixNano()
	last := l.lastRefuseLog.Load()
	if now-last >= int64(time.Second) && l.lastRefuseLog.CompareAndSwap(last, now) {
		l.refusedSince.Add(-n)
		l.p.log.Warn("max_connections reached, refusing connections", "listener", l.label, "max_connections", limit, "refused", n)
	}
}
