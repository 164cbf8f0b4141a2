package pucache

import (
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/rserpool/rserpool/policy"
	"github.com/rserpool/rserpool/wire"
)

// snapshot is the immutable result of a pool's last resolution: the usable
// elements in the order the registrar returned them, without duplicates and
// without PEs held down after an unreachable report.
type snapshot struct {
	policy wire.PolicyType
	elems  []Element
}

// without returns a copy of s minus the element id, or s itself if absent.
func (s *snapshot) without(id uint32) *snapshot {
	i := slices.IndexFunc(s.elems, func(e Element) bool { return e.ID == id })
	if i < 0 {
		return s
	}
	return &snapshot{policy: s.policy, elems: slices.Delete(slices.Clone(s.elems), i, i+1)}
}

// resolved is one usable element of a resolution with the policy values it
// was registered with.
type resolved struct {
	elem   Element
	policy wire.Policy
}

// chooser selects a pool's elements with the policy package, the engine the
// registrar uses (policies.md §4: an RSPLIB pool user puts every PE of a
// response into its cache and selects from it with the same engine). The
// entries persist across refreshes: a re-resolved PE keeps its place in the
// rotation and its accumulated degradation unless its policy values changed,
// and new PEs join behind the others in the order the registrar returned
// them.
type chooser struct {
	mu      sync.Mutex // guards the fields below
	typ     wire.PolicyType
	sel     policy.Selector // nil until the first resolution
	entries map[uint32]*policy.Entry
	buf     []*policy.Entry
	rng     *rand.Rand
}

// apply replaces the chooser's elements with those of a resolution of
// policy type t, in the registrar's order. An entry already present is
// updated in place. A type this package cannot select by (an unknown
// private policy) is served round robin in the registrar's order.
func (c *chooser) apply(t wire.PolicyType, elems []resolved) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !policy.Supported(t) {
		t = wire.PolicyRoundRobin
	}
	if c.sel == nil || c.typ != t {
		sel, err := policy.New(t, c.rng)
		if err != nil { // unreachable: t is supported
			panic(err)
		}
		c.sel, c.typ, c.entries = sel, t, make(map[uint32]*policy.Entry, len(elems))
	}
	seen := make(map[uint32]bool, len(elems))
	for _, r := range elems {
		if seen[r.elem.ID] {
			continue // a duplicate in a response must not skew selection
		}
		seen[r.elem.ID] = true
		pol := r.policy
		pol.Type = t
		if e := c.entries[r.elem.ID]; e != nil {
			e.Value = r.elem
			c.sel.Update(e, pol)
			continue
		}
		e := &policy.Entry{ID: r.elem.ID, Policy: pol, Value: r.elem}
		c.entries[e.ID] = e
		c.sel.Insert(e)
	}
	for id, e := range c.entries {
		if !seen[id] {
			c.sel.Remove(e)
			delete(c.entries, id)
		}
	}
}

// remove takes element id out of the selection.
func (c *chooser) remove(id uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[id]; e != nil {
		c.sel.Remove(e)
		delete(c.entries, id)
	}
}

// pick selects one element by the policy, passing over the IDs in exclude
// (a failover's tried PEs); false when none is selectable (every element
// excluded, or none the policy would ever choose, such as only PEs of
// weight 0).
func (c *chooser) pick(exclude []uint32) (Element, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sel == nil {
		return Element{}, false
	}
	var skip func(*policy.Entry) bool
	if len(exclude) > 0 {
		skip = func(e *policy.Entry) bool { return slices.Contains(exclude, e.ID) }
	}
	c.buf = c.sel.SelectExcept(1, c.buf[:0], skip)
	if len(c.buf) == 0 {
		return Element{}, false
	}
	e := c.buf[0].Value.(Element)
	c.buf[0] = nil
	return e, true
}

// newSnapshot returns the snapshot of a resolution's elements, in order,
// each ID once.
func newSnapshot(t wire.PolicyType, elems []resolved) *snapshot {
	s := &snapshot{policy: t, elems: make([]Element, 0, len(elems))}
	seen := make(map[uint32]bool, len(elems))
	for _, r := range elems {
		if !seen[r.elem.ID] {
			seen[r.elem.ID] = true
			s.elems = append(s.elems, r.elem)
		}
	}
	return s
}

// fromResponse returns the pool policy of a Handle Resolution Response and
// its usable elements in the registrar's order. Without the overall Policy
// parameter the first PE's policy is the pool's (RFC 5352: else Round
// Robin).
func fromResponse(resp *wire.HandleResolutionResponse) (wire.PolicyType, []resolved) {
	var elems []resolved
	for _, pe := range resp.Elements {
		if e, ok := ElementFromWire(pe); ok {
			elems = append(elems, resolved{e, pe.Policy})
		}
	}
	pol := wire.PolicyRoundRobin
	if resp.Policy != nil {
		pol = resp.Policy.Type
	} else if len(resp.Elements) > 0 {
		pol = resp.Elements[0].Policy.Type
	}
	return pol, elems
}
