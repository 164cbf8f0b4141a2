package peagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rserpool/rserpool/internal/admin"
	"github.com/rserpool/rserpool/wire"
)

// Agent registers legacy servers (backends) as pool elements: one Element
// per configured [[element]], all sharing one registrar connection, each
// with its own health check and load reporting. Its methods are safe for
// concurrent use.
type Agent struct {
	log     *slog.Logger
	metrics *metrics
	reg     prometheus.Registerer
	sess    *session

	mu      sync.Mutex // guards cfg, members, admin, started, closed
	cfg     AgentConfig
	members map[ElementConfig]*member
	admin   *admin.Server
	started bool
	closed  bool
}

// member is one running element of the agent.
type member struct {
	cfg     ElementConfig
	el      *Element
	backend netip.AddrPort
	policy  wire.Policy // base policy; Load is filled from samples
	cancel  context.CancelFunc
	done    chan struct{} // closed when run returns

	mu      sync.Mutex // guards healthy, load, reg
	healthy bool
	load    uint32
	reg     bool

	history healthHistory // recent checks, for the status page
}

// ElementStatus is the observable state of one agent element.
type ElementStatus struct {
	Pool    wire.PoolHandle
	Backend string
	ID      uint32
	Healthy bool   // backend passes its health check (rise/fall applied)
	Load    uint32 // last load sent, 32-bit scale
	State          // registration state
}

// NewAgent validates cfg and builds an agent; nothing runs until Start.
func New(cfg AgentConfig, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.Normalize()
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("peagent: metrics: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{log: log, metrics: m, reg: opts.Registerer, cfg: cfg, members: map[ElementConfig]*member{}}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(newElementsGauge(a)); err != nil {
			return nil, fmt.Errorf("peagent: metrics: %w", err)
		}
	}
	a.sess = newSession(sessionConfig{
		Registrars:        cfg.Registrars,
		ResponseTimeout:   cfg.ResponseTimeout,
		ConnectTimeout:    cfg.ConnectTimeout,
		RetryInterval:     cfg.RetryInterval,
		AnnounceGroup:     cfg.Announce.Group,
		AnnounceInterface: cfg.Announce.Interface,
		AnnounceTTL:       cfg.Announce.TTL,
		RebalanceAfter:    cfg.RebalanceAfter,
		RebalanceProbe:    cfg.Elements[0].Pool,
	}, log, &sessionHooks{
		registration: func(pool wire.PoolHandle, result string) {
			m.registrations.WithLabelValues(pool.String(), result).Inc()
		},
		keepAlive: func(pool wire.PoolHandle) { m.keepAlives.WithLabelValues(pool.String()).Inc() },
	})
	for _, ec := range cfg.Elements {
		mb, err := a.newMember(ec)
		if err != nil {
			a.sess.close()
			return nil, err
		}
		a.members[ec] = mb
	}
	return a, nil
}

func (a *Agent) newMember(ec ElementConfig) (*member, error) {
	bk, err := resolveBackend(ec.Backend)
	if err != nil {
		return nil, fmt.Errorf("peagent: element %s %s: %w", ec.Pool, ec.Backend, err)
	}
	pol, err := ec.policyFor(0)
	if err != nil {
		return nil, err
	}
	tt := wire.TransportTCP
	if ec.Transport == "sctp" {
		tt = wire.TransportSCTP
	}
	mb := &member{cfg: ec, backend: bk, policy: pol}
	pool := ec.Pool.String()    // metric label
	onState := func(st State) { // called from the session loop only
		mb.mu.Lock()
		was := mb.reg
		mb.reg = st.Registered
		mb.mu.Unlock()
		if was != st.Registered {
			if st.Registered {
				a.metrics.registered.WithLabelValues(pool).Inc()
			} else {
				a.metrics.registered.WithLabelValues(pool).Dec()
			}
		}
	}
	el, err := a.sess.newElement(PEConfig{
		PoolHandle:             ec.Pool,
		Transport:              wire.Transport{Type: tt, Port: bk.Port(), Addrs: []netip.Addr{bk.Addr()}, Use: wire.UseData},
		Policy:                 pol,
		ID:                     ec.ID,
		ReregistrationInterval: a.cfg.ReregistrationInterval,
	}, onState)
	if err != nil {
		return nil, err
	}
	a.metrics.registered.WithLabelValues(pool).Add(0)
	a.metrics.backendUp.WithLabelValues(pool).Add(0)
	mb.el = el
	return mb, nil
}

// Start starts the admin server (when configured), the registrar client,
// and the health checks and registration of every element, and returns:
// the Agent is ready (registration proceeds in the background; /healthz
// says when every healthy backend is registered).
func (a *Agent) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if a.started {
		return errors.New("peagent: agent already started")
	}
	if a.cfg.Admin != "" {
		srv, err := admin.Listen(a.cfg.Admin, a.adminHandler(), a.log)
		if err != nil {
			return fmt.Errorf("peagent: %w", err)
		}
		a.admin = srv
	}
	if err := a.sess.start(); err != nil {
		if a.admin != nil {
			a.admin.Close()
			a.admin = nil
		}
		return err
	}
	a.started = true
	for _, mb := range a.members {
		a.startMember(mb)
	}
	a.log.Info("pe-agent started", "registrars", a.cfg.Registrars, "elements", len(a.members), "admin", a.adminAddrLocked())
	return nil
}

// AdminAddr returns the bound admin address ("" without one).
func (a *Agent) AdminAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.adminAddrLocked()
}

func (a *Agent) adminAddrLocked() string {
	if a.admin == nil {
		return ""
	}
	return a.admin.Addr()
}

func (a *Agent) startMember(mb *member) {
	ctx, cancel := context.WithCancel(context.Background())
	mb.cancel, mb.done = cancel, make(chan struct{})
	go a.run(ctx, mb)
}

// run drives one element: health checks switch registration on and off,
// load samples update the policy. It returns when ctx ends.
func (a *Agent) run(ctx context.Context, mb *member) {
	defer close(mb.done)
	ec := mb.cfg
	pool := ec.Pool.String() // metric label
	log := a.log.With("pool", pool, "backend", ec.Backend)
	hs := newHealthState(ec.Health.Rise, ec.Health.Fall)
	reader := loadReader{cfg: ec.Load, backend: mb.backend, timeout: ec.Health.Timeout}
	gate := newLoadGate(ec.Load.Step, ec.Load.MinInterval)
	reportLoad := ec.Load.Source != LoadNone && usesLoad(mb.policy.Type)

	sampleLoad := func() {
		raw, err := reader.read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("load sample failed", "err", err)
			}
			return
		}
		load := ScaleLoad(raw, ec.Load.FullScale)
		if !gate.offer(load, time.Now()) {
			return
		}
		mb.mu.Lock()
		mb.load = load
		mb.mu.Unlock()
		p := mb.policy
		p.Load = load
		a.metrics.loadReports.WithLabelValues(pool).Inc()
		_ = mb.el.SetPolicy(p)
	}
	setUp := func(up bool) {
		mb.history.changed(time.Now())
		mb.mu.Lock()
		mb.healthy = up
		mb.mu.Unlock()
		if up {
			a.metrics.backendUp.WithLabelValues(pool).Inc()
			log.Info("backend up")
			_ = mb.el.Start()
		} else {
			log.Warn("backend down")
			_ = mb.el.Suspend()
		}
	}
	check := func() {
		err := CheckBackend(ctx, ec.Backend, ec.Health)
		if ctx.Err() != nil {
			return
		}
		res := "ok"
		if err != nil {
			res = "fail"
			log.Debug("health check failed", "err", err)
		}
		a.metrics.healthChecks.WithLabelValues(pool, res).Inc()
		mb.history.add(time.Now(), err)
		wasKnown, wasUp := hs.known, hs.up
		if hs.observe(classify(err)) {
			if wasKnown && wasUp {
				a.metrics.backendUp.WithLabelValues(pool).Dec()
			}
			setUp(hs.up)
		}
	}
	defer func() {
		mb.mu.Lock()
		up := mb.healthy
		mb.mu.Unlock()
		if up {
			a.metrics.backendUp.WithLabelValues(pool).Dec()
		}
	}()

	if reportLoad {
		sampleLoad()
	}
	var healthC, loadC <-chan time.Time
	if ec.Health.Disable {
		setUp(true)
	} else {
		check()
		t := time.NewTicker(ec.Health.Interval)
		defer t.Stop()
		healthC = t.C
	}
	if reportLoad {
		t := time.NewTicker(ec.Load.Interval)
		defer t.Stop()
		loadC = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-healthC:
			check()
		case <-loadC:
			sampleLoad()
		}
	}
}

// stopMember stops the member's checks and deregisters its element.
func (a *Agent) stopMember(ctx context.Context, mb *member) error {
	if mb.cancel != nil {
		mb.cancel()
		<-mb.done
	}
	return mb.el.Close(ctx)
}

// Reload applies a new configuration: elements that are new register,
// elements no longer present deregister, identical ones are untouched.
// A changed element is replaced (new PE identifier unless configured).
// New registrars apply from the next server hunt; new timers apply to
// new elements.
func (a *Agent) Reload(cfg AgentConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.Normalize()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	a.sess.setRegistrars(cfg.Registrars)
	want := map[ElementConfig]bool{}
	for _, ec := range cfg.Elements {
		want[ec] = true
	}
	var errs []error
	for ec, mb := range a.members {
		if want[ec] {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ResponseTimeout+time.Second)
		if err := a.stopMember(ctx, mb); err != nil {
			errs = append(errs, fmt.Errorf("element %s %s: %w", ec.Pool, ec.Backend, err))
		}
		cancel()
		delete(a.members, ec)
		a.log.Info("element removed", "pool", ec.Pool, "backend", ec.Backend)
	}
	a.cfg = cfg
	for _, ec := range cfg.Elements {
		if _, ok := a.members[ec]; ok {
			continue
		}
		mb, err := a.newMember(ec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a.members[ec] = mb
		if a.started {
			a.startMember(mb)
		}
		a.log.Info("element added", "pool", ec.Pool, "backend", ec.Backend)
	}
	return errors.Join(errs...)
}

// Status returns the state of every element, sorted by pool and backend.
// The slice belongs to the caller.
func (a *Agent) Status() []ElementStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]ElementStatus, 0, len(a.members))
	for _, mb := range a.members {
		mb.mu.Lock()
		es := ElementStatus{Pool: mb.cfg.Pool, Backend: mb.cfg.Backend, ID: mb.el.ID(), Healthy: mb.healthy, Load: mb.load}
		mb.mu.Unlock()
		es.State = mb.el.State()
		out = append(out, es)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pool != out[j].Pool {
			return out[i].Pool < out[j].Pool
		}
		return out[i].Backend < out[j].Backend
	})
	return out
}

// Shutdown stops the health checks, deregisters every element (in
// parallel, each bounded by ctx and the registrar client's request time),
// closes the registrar connection, then waits Config.Drain (bounded by
// ctx) so that connections already sent to the backends finish, and
// closes the admin server. It returns the first deregistration error.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	a.closed = true
	drain, started := a.cfg.Drain, a.started
	members := make([]*member, 0, len(a.members))
	for _, mb := range a.members {
		members = append(members, mb)
	}
	a.mu.Unlock()

	errc := make(chan error, len(members))
	var wg sync.WaitGroup
	for _, mb := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- a.stopMember(ctx, mb)
		}()
	}
	wg.Wait()
	close(errc)
	a.sess.close()
	var errs []error
	for err := range errc {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if drain > 0 && started {
		a.log.Info("draining", "for", drain)
		t := time.NewTimer(drain)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	a.closeAdmin()
	return errors.Join(errs...)
}

func (a *Agent) closeAdmin() {
	a.mu.Lock()
	srv := a.admin
	a.admin = nil
	a.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Close stops everything at once without deregistering; the registrar
// removes the elements when the connection closes.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	a.closed = true
	members := a.members
	a.mu.Unlock()
	for _, mb := range members {
		if mb.cancel != nil {
			mb.cancel()
			<-mb.done
		}
	}
	a.sess.close()
	a.closeAdmin()
	return nil
}

// Ready reports whether every healthy element is registered (for /healthz).
func (a *Agent) Ready() bool {
	for _, s := range a.Status() {
		if s.Healthy && !s.Registered {
			return false
		}
	}
	return true
}
