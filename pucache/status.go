package pucache

import (
	"slices"
	"strings"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// PoolStatus is the cache's view of one pool, for status pages.
type PoolStatus struct {
	Handle wire.PoolHandle
	// Policy is the pool's policy name; "" until the first resolution.
	Policy string
	// Elements are the usable elements (the PEs held down after an
	// unreachable report are not among them); the slice is the caller's.
	Elements []Element
	// Resolved is when the last successful resolution arrived; zero if none.
	Resolved time.Time
	// Fresh: resolved less than Config.StaleTimeout ago. A stale entry is
	// still served (the registrar did not answer the refresh).
	Fresh bool
	// Registrar is the registrar that answered the last resolution; zero
	// when not known.
	Registrar transport.Addr
	// Err is the last resolution's error when it failed (or found no PE)
	// after the last success, and ErrAt when.
	Err   error
	ErrAt time.Time
}

// Status returns the state of every pool the cache holds, sorted by
// handle, at now. The slice is the caller's. It takes each pool's lock
// briefly; it does not wait for a registrar.
func (c *Cache) Status(now time.Time) []PoolStatus {
	c.mu.Lock()
	pools := make([]*Pool, 0, len(c.pools))
	for _, p := range c.pools {
		pools = append(pools, p)
	}
	c.mu.Unlock()
	out := make([]PoolStatus, 0, len(pools))
	for _, p := range pools {
		ps := PoolStatus{Handle: p.handle}
		if s := p.snap.Load(); s != nil {
			ps.Policy = s.policy.Name()
			ps.Elements = slices.Clone(s.elems)
		}
		if f := p.fetched.Load(); f != 0 {
			ps.Resolved = time.Unix(0, f)
			ps.Fresh = now.Sub(ps.Resolved) < c.cfg.StaleTimeout
		}
		if a := p.from.Load(); a != nil {
			ps.Registrar = *a
		}
		p.mu.Lock()
		if f := p.failed; f != nil {
			ps.Err, ps.ErrAt = f.err, f.at
			if f.err == nil {
				ps.Err = ErrNoElements
			}
		}
		p.mu.Unlock()
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b PoolStatus) int { return strings.Compare(string(a.Handle), string(b.Handle)) })
	return out
}

// StaleTimeout returns the effective Config.StaleTimeout.
func (c *Cache) StaleTimeout() time.Duration { return c.cfg.StaleTimeout }

// home returns the registrar of the current connection, if any.
func (c *Cache) home() (transport.Addr, bool) {
	var a transport.Addr
	var ok bool
	if err := c.rc.Do(func(time.Time) { a, ok = c.rc.Link().Home() }); err != nil {
		return transport.Addr{}, false
	}
	return a, ok
}
