package proxy

import (
	"context"
	_ "embed"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rserpool/rserpool/internal/admin"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/wire"
)

//go:embed status.html
var statusTemplate string

// Bounds of the status page and of the per-PE counts behind it.
const (
	statusMaxPools    = 200
	statusMaxElements = 100
	statusMaxGone     = 20   // PEs with counts that the cache no longer holds, per pool
	maxPEStats        = 4096 // (pool, PE) pairs counted; PE IDs come from registrars
	maxErrText        = 200  // bytes of a PE's last error kept
)

// peStats counts connections and failures per (pool, PE) for the status
// page (metrics never carry PE IDs). A connection costs a lock-free map
// lookup and two atomic operations. It is bounded: when full, an entry is
// dropped to make room, the least recently active of a sample. The zero
// value is ready. Safe for concurrent use.
type peStats struct {
	m  sync.Map     // peKey → *peCount
	n  atomic.Int64 // entries in m
	mu sync.Mutex   // serialises inserts and evictions
}

type peKey struct {
	pool wire.PoolHandle
	id   uint32
}

type peCount struct {
	connections, failures atomic.Uint64
	last                  atomic.Int64 // UnixNano of the last connection or failure

	mu            sync.Mutex // guards the fields below
	network, addr string
	lastFailure   time.Time
	lastErr       string
}

func (s *peStats) entry(pool wire.PoolHandle, e pucache.Element) *peCount {
	k := peKey{pool, e.ID}
	if c, ok := s.m.Load(k); ok {
		return c.(*peCount)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.m.Load(k); ok {
		return c.(*peCount)
	}
	if s.n.Load() >= maxPEStats {
		s.evict()
	}
	c := &peCount{network: e.Network, addr: e.Addr}
	s.m.Store(k, c)
	s.n.Add(1)
	return c
}

// evict drops the least recently active of up to 16 entries (map order
// is random enough that a flood of new IDs cannot pin the old ones); s.mu
// is held.
func (s *peStats) evict() {
	var victim any
	oldest, n := int64(0), 0
	s.m.Range(func(k, v any) bool {
		if last := v.(*peCount).last.Load(); n == 0 || last < oldest {
			victim, oldest = k, last
		}
		n++
		return n < 16
	})
	if victim != nil {
		s.m.Delete(victim)
		s.n.Add(-1)
	}
}

func (s *peStats) connected(pool wire.PoolHandle, e pucache.Element) {
	c := s.entry(pool, e)
	c.connections.Add(1)
	c.last.Store(time.Now().UnixNano())
}

func (s *peStats) failed(pool wire.PoolHandle, e pucache.Element, err error) {
	now := time.Now()
	c := s.entry(pool, e)
	c.failures.Add(1)
	c.last.Store(now.UnixNano())
	c.mu.Lock()
	c.network, c.addr, c.lastFailure = e.Network, e.Addr, now
	if err != nil {
		c.lastErr = err.Error()
		if len(c.lastErr) > maxErrText {
			c.lastErr = strings.ToValidUTF8(c.lastErr[:maxErrText], "") + "…"
		}
	}
	c.mu.Unlock()
}

// fill copies c's counts into pe.
func (c *peCount) fill(pe *StatusPE) {
	pe.Connections, pe.Failures = c.connections.Load(), c.failures.Load()
	c.mu.Lock()
	pe.LastFailure, pe.LastErr = c.lastFailure, c.lastErr
	if pe.Addr == "" {
		pe.Network, pe.Addr = c.network, c.addr
	}
	c.mu.Unlock()
}

// StatusView is what the proxy's status page shows.
type StatusView struct {
	Now          time.Time
	Draining     bool
	Active       int
	ConnRate     float64 // relayed connections per second, all listeners
	FailoverRate float64
	NoBackend    float64
	Listeners    []StatusListener
	Registrars   []string
	StaleTimeout time.Duration
	Pools        []StatusPool
	MorePools    int
}

// StatusListener is one listener on the status page.
type StatusListener struct {
	Label, Listen, Bound string
	Pool                 wire.PoolHandle
	Active, Max          int64
	OK, NoBackend        float64
	Refused, Aborted     float64
	Failovers            float64
	ConnRate             float64
	FailoverRate         float64
	ToBackend, ToClient  float64 // bytes, counted when connections end
}

// StatusPool is one pool of the proxy's cache on the status page.
type StatusPool struct {
	pucache.PoolStatus
	PEs  []StatusPE // the cached elements, then up to statusMaxGone others with counts
	More int
}

// StatusPE is one PE with the proxy's connections to it.
type StatusPE struct {
	ID                    uint32
	Network, Addr         string
	Weight, Priority      uint32
	Load                  uint32
	Cached                bool // in the cache's current resolution
	Connections, Failures uint64
	LastFailure           time.Time
	LastErr               string
}

// statusPage builds the proxy's page for the admin server.
func (p *Proxy) statusPage() (*admin.Page, error) {
	return admin.NewPage(admin.PageConfig{
		Daemon:  "proxy",
		Content: statusTemplate,
		Links: []admin.Link{{Path: "/metrics", What: "Prometheus"}, {Path: "/healthz", What: "health"},
			{Path: "/debug/pprof/", What: "profiles"}},
		Data: func(_ context.Context, now time.Time, rates *admin.Rates) (any, error) {
			return p.statusView(now, rates), nil
		},
	})
}

func (p *Proxy) statusView(now time.Time, rates *admin.Rates) StatusView {
	v := StatusView{Now: now, Draining: p.draining.Load(), StaleTimeout: p.cache.StaleTimeout()}
	p.mu.Lock()
	for _, l := range p.listeners {
		st := l.st.Load()
		sl := StatusListener{
			Label: l.label, Listen: l.cfg.Listen.ShortString(), Pool: st.pool, Active: l.active.Load(), Max: st.max,
			OK: admin.Value(l.lm.ok), NoBackend: admin.Value(l.lm.noBackend), Refused: admin.Value(l.lm.refused),
			Aborted: admin.Value(l.lm.aborted), Failovers: admin.Value(l.lm.failovers),
			ToBackend: admin.Value(l.lm.toBackend), ToClient: admin.Value(l.lm.toClient),
		}
		if l.ln != nil {
			sl.Bound = l.ln.Addr().String()
		}
		v.Listeners = append(v.Listeners, sl)
	}
	p.mu.Unlock()
	slices.SortFunc(v.Listeners, func(a, b StatusListener) int { return strings.Compare(a.Label, b.Label) })
	var ok, failovers float64
	for i := range v.Listeners {
		l := &v.Listeners[i]
		l.ConnRate = rates.Observe(now, "ok\x00"+l.Label, l.OK)
		l.FailoverRate = rates.Observe(now, "failover\x00"+l.Label, l.Failovers)
		v.Active += int(l.Active)
		ok += l.OK
		failovers += l.Failovers
		v.NoBackend += l.NoBackend
	}
	v.ConnRate = rates.Observe(now, "ok", ok)
	v.FailoverRate = rates.Observe(now, "failover", failovers)
	for _, a := range p.cache.Registrars() {
		v.Registrars = append(v.Registrars, a.String())
	}
	pools := p.cache.Status(now)
	if len(pools) > statusMaxPools {
		v.MorePools = len(pools) - statusMaxPools
		pools = pools[:statusMaxPools]
	}
	shown := make(map[wire.PoolHandle]int, len(pools)) // handle → index in v.Pools
	cached := map[peKey]bool{}
	for _, ps := range pools {
		sp := StatusPool{PoolStatus: ps}
		for _, e := range ps.Elements {
			k := peKey{ps.Handle, e.ID}
			cached[k] = true
			if len(sp.PEs) == statusMaxElements {
				sp.More++
				continue
			}
			pe := StatusPE{ID: e.ID, Network: e.Network, Addr: e.Addr, Weight: e.Weight, Priority: e.Priority,
				Load: e.Load, Cached: true}
			if c, ok := p.pes.m.Load(k); ok {
				c.(*peCount).fill(&pe)
			}
			sp.PEs = append(sp.PEs, pe)
		}
		shown[ps.Handle] = len(v.Pools)
		v.Pools = append(v.Pools, sp)
	}
	gone := map[wire.PoolHandle][]StatusPE{}
	p.pes.m.Range(func(key, c any) bool {
		k := key.(peKey)
		if _, ok := shown[k.pool]; ok && !cached[k] {
			pe := StatusPE{ID: k.id}
			c.(*peCount).fill(&pe)
			gone[k.pool] = append(gone[k.pool], pe)
		}
		return true
	})
	for h, list := range gone {
		sp := &v.Pools[shown[h]]
		slices.SortFunc(list, func(a, b StatusPE) int { return b.LastFailure.Compare(a.LastFailure) })
		if len(list) > statusMaxGone {
			sp.More += len(list) - statusMaxGone
			list = list[:statusMaxGone]
		}
		sp.PEs = append(sp.PEs, list...)
	}
	return v
}
