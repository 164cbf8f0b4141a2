package pucache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rserpool/rserpool/regclient"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Errors returned by the cache. Resolution failures wrap them; test with errors.Is.
var (
	// ErrNoRegistrar: no registrar could be reached (all static and announced
	// addresses failed or none is known).
	ErrNoRegistrar = errors.New("pucache: no registrar reachable")
	// ErrUnknownPool: the registrar answered with Operation Error "Unknown
	// Pool Handle" (or another negative response).
	ErrUnknownPool = errors.New("pucache: registrar does not know the pool handle")
	// ErrNoElements: the pool exists but holds no usable element, or every
	// element was excluded by the caller.
	ErrNoElements = errors.New("pucache: no usable pool element")
	// ErrClosed: the cache was closed.
	ErrClosed = errors.New("pucache: closed")
)

// Config tunes a Cache. The zero value of every field takes its documented default.
type Config struct {
	// Registrars is the static list of registrar ASAP addresses, tried
	// first, in order; announced registrars (LearnRegistrar, AnnounceGroup)
	// are tried after them.
	Registrars []transport.Addr
	// Transport configures the registrar connections; nil means defaults.
	Transport *transport.Config
	// StaleTimeout is how long a resolution result is considered fresh
	// (RFC 5352 stale_cache_value). Entries are refreshed in the background
	// after half of it. A stale entry is still served while the registrar is
	// unreachable. Zero means 5 s.
	StaleTimeout time.Duration
	// RequestTimeout is T1-ENRPrequest: how long to wait for a Handle
	// Resolution Response before re-sending it at another registrar (twice
	// at most, MAX-REQUEST-RETRANSMIT). Zero means 3 s.
	RequestTimeout time.Duration
	// ConnectTimeout is the initial T5 of the server hunt (up to three
	// registrars tried at once; doubled when none answers in time) and
	// bounds one connection attempt of Dial to a PE. Zero means 2 s.
	ConnectTimeout time.Duration
	// Items is the number of PEs asked for with RSPLIB's Handle Resolution
	// Option. Zero means 128 (RSPLIB's cap).
	Items uint32
	// AnnounceGroup, if set, is the multicast group ("239.0.0.50:3863",
	// RSPLIB's) on which ASAP Server Announces add registrars;
	// AnnounceInterface names the interface ("" = the routing table's).
	AnnounceGroup     string
	AnnounceInterface string
	// AnnounceLifetime is T7-ENRPoutdate: how long a registrar address learned
	// from an ASAP Server Announce stays known. Zero means 5 s.
	AnnounceLifetime time.Duration
	// HoldDown is how long a PE reported unreachable stays out of this cache
	// even if a registrar still lists it. Zero means StaleTimeout.
	HoldDown time.Duration
}

// Options carries the injected dependencies of a Cache.
type Options struct {
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers nothing
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.StaleTimeout <= 0 {
		d.StaleTimeout = 5 * time.Second
	}
	if d.RequestTimeout <= 0 {
		d.RequestTimeout = 3 * time.Second
	}
	if d.ConnectTimeout <= 0 {
		d.ConnectTimeout = 2 * time.Second
	}
	if d.Items == 0 {
		d.Items = 128
	}
	if d.AnnounceLifetime <= 0 {
		d.AnnounceLifetime = 5 * time.Second
	}
	if d.HoldDown <= 0 {
		d.HoldDown = d.StaleTimeout
	}
	return d
}

// Cache is a pool user's view of the handlespace: it resolves pool handles
// at a registrar, keeps the results fresh in the background and selects PEs
// by each pool's policy. It is safe for concurrent use. Start runs it;
// Close stops it.
type Cache struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	rc      *regclient.Client
	ctx     context.Context // cancelled by Close; owns every background request
	cancel  context.CancelFunc
	wg      sync.WaitGroup // every goroutine the cache starts

	mu      sync.Mutex // guards pools, started
	pools   map[wire.PoolHandle]*Pool
	started bool

	reports chan report // Endpoint Unreachable queue, drained by reportLoop
}

type report struct {
	handle wire.PoolHandle
	id     uint32
}

// New builds a Cache; it starts nothing (see Start) and does not contact
// a registrar until the first resolution.
func New(cfg Config, opts Options) (*Cache, error) {
	d := cfg.withDefaults()
	for _, a := range d.Registrars {
		if a.IsZero() {
			return nil, errors.New("pucache: empty registrar address")
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cache{
		cfg: d, log: log, metrics: m, ctx: ctx, cancel: cancel,
		pools:   make(map[wire.PoolHandle]*Pool),
		reports: make(chan report, 256),
	}
	c.rc = regclient.New(regclient.Config{
		Registrars:        d.Registrars,
		Transport:         d.Transport,
		ConnectTimeout:    d.ConnectTimeout,
		RequestTimeout:    d.RequestTimeout,
		AnnounceLifetime:  d.AnnounceLifetime,
		AnnounceGroup:     d.AnnounceGroup,
		AnnounceInterface: d.AnnounceInterface,
		Logger:            log,
	})
	return c, nil
}

// Start starts the registrar client (and the announce listener when
// Config.AnnounceGroup is set) and the background refresh and report
// loops. Resolutions wait for Start.
func (c *Cache) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.ctx.Err() != nil {
		return errors.New("pucache: already started or closed")
	}
	if err := c.rc.Start(); err != nil {
		return fmt.Errorf("pucache: %w", err)
	}
	c.started = true
	c.wg.Add(2)
	go c.refreshLoop()
	go c.reportLoop()
	return nil
}

// Close stops background refreshes, closes the registrar connection and
// waits for every goroutine of the cache. Pending resolutions fail with
// ErrClosed. Close is idempotent.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.cancel()
	c.mu.Unlock()
	c.rc.Close()
	c.wg.Wait()
	return nil
}

// Pool returns the cache entry of a pool handle, creating it (without
// resolving) if needed. Holding the *Pool avoids a map lookup per selection;
// the entry lives until Forget or Close and is refreshed in the background
// once it has been resolved.
func (c *Cache) Pool(handle wire.PoolHandle) *Pool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pools[handle]
	if p == nil {
		p = &Pool{c: c, handle: handle, holdDown: map[uint32]time.Time{}}
		c.pools[handle] = p
	}
	return p
}

// Forget drops the cache entry of a handle; it stops being refreshed.
func (c *Cache) Forget(handle wire.PoolHandle) {
	c.mu.Lock()
	delete(c.pools, handle)
	c.mu.Unlock()
}

// Resolve returns the current elements of a pool (sorted by ID; the caller
// owns the slice), resolving at a registrar only when the cache has nothing
// usable.
func (c *Cache) Resolve(ctx context.Context, handle wire.PoolHandle) ([]Element, error) {
	s, err := c.Pool(handle).usable(ctx)
	if err != nil {
		return nil, err
	}
	return append([]Element(nil), s.elems...), nil
}

// Select returns one element of the pool chosen by the pool's policy.
func (c *Cache) Select(ctx context.Context, handle wire.PoolHandle) (Element, error) {
	return c.Pool(handle).Pick(ctx, nil)
}

// ReportUnreachable removes the PE from the local cache at once and sends
// ASAP Endpoint Unreachable to a registrar in the background.
func (c *Cache) ReportUnreachable(handle wire.PoolHandle, id uint32) {
	c.Pool(handle).ReportUnreachable(id)
}

// Dial connects to an element of the pool by its registered user
// transport, TCP or SCTP (transport.DialStream), trying up to three
// elements in policy order and reporting each one that refuses the
// connection. Each attempt is bounded by Config.ConnectTimeout and ctx.
func (c *Cache) Dial(ctx context.Context, handle wire.PoolHandle) (net.Conn, error) {
	p := c.Pool(handle)
	var tried [3]uint32
	var lastErr error
	for n := 0; n < len(tried); n++ {
		e, err := p.Pick(ctx, tried[:n])
		if err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("%w (last error: %v)", err, lastErr)
			}
			return nil, err
		}
		addr, err := e.TransportAddr()
		var conn net.Conn
		if err == nil {
			dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
			conn, err = transport.DialStream(dctx, addr)
			cancel()
		}
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		lastErr = err
		tried[n] = e.ID
		p.ReportUnreachable(e.ID)
	}
	return nil, fmt.Errorf("pucache: dial %q: %w", handle, lastErr)
}

// TransportAddr returns the address to connect to e: tcp:// or sctp://.
func (e Element) TransportAddr() (transport.Addr, error) {
	switch e.Network {
	case "tcp", "sctp":
		return transport.ParseAddr(e.Network + "://" + e.Addr)
	}
	return transport.Addr{}, fmt.Errorf("pucache: PE 0x%08x: cannot connect over %q", e.ID, e.Network)
}

// Pool is the cache entry of one pool handle. Its methods are safe for
// concurrent use.
type Pool struct {
	c      *Cache
	handle wire.PoolHandle
	snap   atomic.Pointer[snapshot] // nil until the first successful resolution
	choose chooser                  // selection by the pool's policy
	// fetched is the wall-clock time (UnixNano) of the last successful
	// resolution, 0 if none.
	fetched atomic.Int64
	// from is the registrar that answered the last successful resolution.
	from atomic.Pointer[transport.Addr]

	mu       sync.Mutex // guards inflight, holdDown, failed
	inflight *call
	holdDown map[uint32]time.Time // PE ID → end of hold-down
	failed   *call                // last resolution, if it failed or found no PE
}

type call struct {
	done chan struct{}
	snap *snapshot
	err  error
	at   time.Time // when the result arrived
}

// Handle returns the pool handle.
func (p *Pool) Handle() wire.PoolHandle { return p.handle }

// Pick selects an element by the pool's policy, skipping the IDs in exclude.
// It waits for a registrar only when the cache holds no element for the pool;
// a stale entry is served while a background refresh runs.
func (p *Pool) Pick(ctx context.Context, exclude []uint32) (Element, error) {
	s := p.snap.Load()
	if s == nil || len(s.elems) == 0 {
		var err error
		if s, err = p.usable(ctx); err != nil {
			return Element{}, err
		}
	}
	if e, ok := p.choose.pick(exclude); ok {
		return e, nil
	}
	if len(exclude) > 0 {
		return Element{}, fmt.Errorf("%w: the %d elements of %q that the policy selects were excluded",
			ErrNoElements, len(s.elems), p.handle)
	}
	return Element{}, fmt.Errorf("%w: policy %s selects none of the %d elements of %q",
		ErrNoElements, s.policy.Name(), len(s.elems), p.handle)
}

// Elements returns a copy of the cached elements (nil if none).
func (p *Pool) Elements() []Element {
	s := p.snap.Load()
	if s == nil {
		return nil
	}
	return append([]Element(nil), s.elems...)
}

// Refresh resolves the handle now (joining a resolution already in flight)
// and waits for the result.
func (p *Pool) Refresh(ctx context.Context) error {
	_, err := p.wait(ctx, p.start())
	return err
}

// negativeTTL is how long a failed or empty resolution answers selections
// without asking a registrar again, so that a missing pool under load does
// not turn every client connection into a registrar request.
const negativeTTL = 250 * time.Millisecond

// usable returns the cached snapshot if it has elements, or resolves.
func (p *Pool) usable(ctx context.Context) (*snapshot, error) {
	if s := p.snap.Load(); s != nil && len(s.elems) > 0 {
		return s, nil
	}
	p.mu.Lock()
	f := p.failed
	p.mu.Unlock()
	if f != nil && time.Since(f.at) < negativeTTL {
		return p.wait(ctx, f)
	}
	return p.wait(ctx, p.start())
}

func (p *Pool) wait(ctx context.Context, cl *call) (*snapshot, error) {
	if cl == nil {
		return nil, ErrClosed
	}
	select {
	case <-cl.done:
		if cl.err != nil {
			return nil, cl.err
		}
		if len(cl.snap.elems) == 0 {
			return nil, fmt.Errorf("%w: pool %q", ErrNoElements, p.handle)
		}
		return cl.snap, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// start returns the resolution in flight for this pool, starting one if
// none is. Concurrent callers share one request. It returns nil after Close.
func (p *Pool) start() *call {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inflight != nil {
		return p.inflight
	}
	if p.c.ctx.Err() != nil {
		return nil
	}
	cl := &call{done: make(chan struct{})}
	p.inflight = cl
	p.c.wg.Add(1)
	go p.resolve(cl)
	return cl
}

// resolve runs one handle resolution on behalf of every waiter of cl. It
// uses the cache's context, not a caller's, so that one caller giving up
// does not fail the others.
func (p *Pool) resolve(cl *call) {
	defer p.c.wg.Done()
	resp, err := p.c.resolve(p.c.ctx, p.handle)
	now := time.Now()
	if err == nil {
		if a, ok := p.c.home(); ok {
			p.from.Store(&a)
		}
		cl.snap, cl.at = p.apply(resp, now, cl), now
		close(cl.done)
		p.c.metrics.resolutions.WithLabelValues("ok").Inc()
		return
	}
	cl.err, cl.at = err, now
	p.mu.Lock()
	p.inflight = nil
	p.failed = cl
	p.mu.Unlock()
	result := "error"
	if errors.Is(err, ErrUnknownPool) {
		result = "unknown_pool"
	}
	p.c.metrics.resolutions.WithLabelValues(result).Inc()
	p.c.log.Warn("handle resolution failed", "pool", p.handle, "err", err)
	close(cl.done)
}

// apply installs a registrar's Handle Resolution Response (whatever it
// holds: a hostile registrar may send anything) as the pool's elements,
// without the PEs held down, and ends the resolution cl (nil: none). It
// returns the new snapshot.
func (p *Pool) apply(resp *wire.HandleResolutionResponse, now time.Time, cl *call) *snapshot {
	pol, elems := fromResponse(resp)
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := elems[:0:0]
	for _, e := range elems {
		if until, held := p.holdDown[e.elem.ID]; held && now.Before(until) {
			continue
		}
		kept = append(kept, e)
	}
	for id, until := range p.holdDown {
		if !now.Before(until) {
			delete(p.holdDown, id)
		}
	}
	if len(kept) == 0 && len(elems) > 0 {
		// Every listed PE is held down: the registrar still believes in
		// them and this cache knows nothing better. Serving them lets
		// the caller's failover decide instead of failing outright.
		kept = elems
	}
	p.choose.apply(pol, kept)
	snap := newSnapshot(pol, kept)
	p.snap.Store(snap)
	p.fetched.Store(now.UnixNano())
	if p.inflight == cl {
		p.inflight = nil
	}
	p.failed = nil
	if len(kept) == 0 && cl != nil {
		p.failed = cl
	}
	return snap
}

// ReportUnreachable removes the PE from this pool's cache at once, holds it
// down for Config.HoldDown, and queues an ASAP Endpoint Unreachable for a
// registrar. Repeated reports of a PE already held down are not re-sent.
func (p *Pool) ReportUnreachable(id uint32) {
	now := time.Now()
	p.mu.Lock()
	until, held := p.holdDown[id]
	p.holdDown[id] = now.Add(p.c.cfg.HoldDown)
	if s := p.snap.Load(); s != nil {
		p.snap.Store(s.without(id))
	}
	p.choose.remove(id)
	p.mu.Unlock()
	if held && now.Before(until) {
		return
	}
	select {
	case p.c.reports <- report{p.handle, id}:
	default:
		p.c.metrics.reports.WithLabelValues("dropped").Inc()
	}
}

// refreshLoop refreshes every resolved pool once half of StaleTimeout has
// passed since its last resolution, so that selections never wait on a
// registrar while an entry is in use.
func (c *Cache) refreshLoop() {
	defer c.wg.Done()
	tick := time.NewTicker(max(c.cfg.StaleTimeout/8, 10*time.Millisecond))
	defer tick.Stop()
	var due []*Pool
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-tick.C:
			due = due[:0]
			c.mu.Lock()
			for _, p := range c.pools {
				f := p.fetched.Load()
				if f != 0 && now.Sub(time.Unix(0, f)) >= c.cfg.StaleTimeout/2 {
					due = append(due, p)
				}
			}
			c.mu.Unlock()
			for _, p := range due {
				p.start()
			}
		}
	}
}

// reportLoop sends queued Endpoint Unreachable messages.
func (c *Cache) reportLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case r := <-c.reports:
			err := c.rc.Send(c.ctx, &wire.EndpointUnreachable{PoolHandle: r.handle, ID: r.id})
			if err != nil {
				c.metrics.reports.WithLabelValues("error").Inc()
				c.log.Warn("endpoint unreachable report failed", "pool", r.handle, "pe", fmt.Sprintf("0x%08x", r.id), "err", err)
				continue
			}
			c.metrics.reports.WithLabelValues("sent").Inc()
			c.log.Info("reported unreachable pool element", "pool", r.handle, "pe", fmt.Sprintf("0x%08x", r.id))
		}
	}
}

type metrics struct {
	resolutions *prometheus.CounterVec
	reports     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		resolutions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rserpool_pu_handle_resolutions_total",
			Help: "Handle resolutions sent by the pool-user cache, by result.",
		}, []string{"result"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rserpool_pu_unreachable_reports_total",
			Help: "ASAP Endpoint Unreachable reports, by result (sent, error, dropped).",
		}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.resolutions, m.reports} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("pucache: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
