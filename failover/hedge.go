package failover

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the adaptive hedge delay (Config.HedgeDelay zero).
const (
	// MinHedgeDelay keeps a scheduling hiccup on a loaded host from
	// doubling connects.
	MinHedgeDelay = 5 * time.Millisecond
	// MaxHedgeDelay is the most a PE that drops SYNs adds to a new client
	// connection before another PE is tried; also the delay until enough
	// connect times were observed.
	MaxHedgeDelay = 50 * time.Millisecond
)

// connectSamples is how many recent connect times the adaptive delay
// looks at; the delay is recomputed every hedgeRecompute observations.
const (
	connectSamples = 128
	hedgeRecompute = 32
)

// hedger keeps the recent connect times of a pool and its suspect PEs: PEs
// whose connect was overtaken by a hedged attempt and not yet known to be
// alive or dead.
type hedger struct {
	fixed time.Duration // > 0: fixed delay; < 0: hedging off; 0: adaptive
	ttl   time.Duration // how long a suspect stays one without news
	delay atomic.Int64  // current delay (ns)

	mu       sync.Mutex // guards the fields below
	times    [connectSamples]time.Duration
	n        int // samples held (≤ connectSamples)
	next     int // next slot to write
	since    int // observations since the last recomputation
	suspects map[uint32]time.Time
	nsusp    atomic.Int32 // len(suspects), read without the lock
}

func newHedger(fixed, ttl time.Duration) *hedger {
	h := &hedger{fixed: fixed, ttl: ttl, suspects: map[uint32]time.Time{}}
	switch {
	case fixed != 0:
		h.delay.Store(int64(fixed))
	default:
		h.delay.Store(int64(MaxHedgeDelay))
	}
	return h
}

// observe records how long a successful connect took.
func (h *hedger) observe(d time.Duration) {
	if h.fixed != 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.times[h.next] = d
	h.next = (h.next + 1) % connectSamples
	h.n = min(h.n+1, connectSamples)
	h.since++
	if h.since < hedgeRecompute || h.n < 16 {
		return
	}
	h.since = 0
	s := slices.Clone(h.times[:h.n])
	slices.Sort(s)
	p99 := s[(len(s)*99)/100]
	h.delay.Store(int64(min(max(p99, MinHedgeDelay), MaxHedgeDelay)))
}

// suspect marks id as suspect from now on.
func (h *hedger) suspect(id uint32, now time.Time) {
	h.mu.Lock()
	if _, ok := h.suspects[id]; !ok {
		h.nsusp.Add(1)
	}
	h.suspects[id] = now.Add(h.ttl)
	h.mu.Unlock()
}

// clear forgets id as suspect (it connected, or it was reported).
func (h *hedger) clear(id uint32) {
	if h.nsusp.Load() == 0 {
		return
	}
	h.mu.Lock()
	if _, ok := h.suspects[id]; ok {
		delete(h.suspects, id)
		h.nsusp.Add(-1)
	}
	h.mu.Unlock()
}

// isSuspect reports whether id is a suspect at now.
func (h *hedger) isSuspect(id uint32, now time.Time) bool {
	if h.nsusp.Load() == 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	until, ok := h.suspects[id]
	if ok && !now.Before(until) {
		delete(h.suspects, id)
		h.nsusp.Add(-1)
		return false
	}
	return ok
}

// HedgeDelay returns how long a connect to the PE id may take before the
// next PE in policy order is tried alongside it: zero for a suspect PE
// (both start at once), and false when hedging is off.
func (d *Dialer) HedgeDelay(id uint32, now time.Time) (time.Duration, bool) {
	h := d.hedge
	if h.fixed < 0 {
		return 0, false
	}
	if h.isSuspect(id, now) {
		return 0, true
	}
	return time.Duration(h.delay.Load()), true
}

// Connected records a successful connect to the PE id that took took: it
// feeds the adaptive hedge delay and clears a suspicion.
func (d *Dialer) Connected(id uint32, took time.Duration) {
	d.hedge.observe(took)
	d.hedge.clear(id)
}

// Overtaken marks the PE id as suspect: another PE connected first while
// its attempt was still pending. A suspect is not reported unreachable;
// it is hedged at once until it connects, fails, or the suspicion expires
// (ten connect timeouts).
func (d *Dialer) Overtaken(id uint32, now time.Time) { d.hedge.suspect(id, now) }
