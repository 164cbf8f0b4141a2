package policy

import (
	"math"

	"github.com/rserpool/rserpool/wire"
)

// ordered implements the ordered policies of policies.md §4 (WRR, PRIO, LU,
// LUD, PLU, PLUD and the DPF variants): entries sorted by (k1, k2, SeqNumber)
// in a treap; a selection returns the first n and re-keys the first
// min(n, maxIncrement) of them. Insert, Remove and each re-key are
// O(log n) expected.
type ordered struct {
	base
	root  *Entry
	prng  uint64   // state of the treap priorities (splitmix64)
	stack []*Entry // in-order traversal scratch
}

// excluded is the k1 of entries that must never be selected (WRR weight 0).
const excluded = math.MaxUint64

func newOrdered(b base) *ordered { return &ordered{base: b, prng: 0x9e3779b97f4a7c15} }

func (o *ordered) nextPrio() uint32 {
	o.prng += 0x9e3779b97f4a7c15
	z := o.prng
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return uint32(z ^ (z >> 31))
}

// setKey computes e's sort key from its policy values and state.
func (o *ordered) setKey(e *Entry) {
	p := &e.Policy
	e.k2 = 0
	switch o.typ {
	case wire.PolicyWeightedRoundRobin:
		// k1 = RoundCounter and k2 = VirtualCounter are the state itself;
		// they are maintained by Insert, Update and the update step.
	case wire.PolicyPriority:
		e.k1 = uint64(MaxValue - p.Priority)
	case wire.PolicyLeastUsed:
		e.k1 = uint64(p.Load)
	case wire.PolicyLeastUsedDegradation:
		e.k1 = clampKey(uint64(p.Load) + uint64(e.degradation))
	case wire.PolicyPriorityLeastUsed:
		e.k1 = clampKey(uint64(p.Load) + uint64(p.LoadDegradation))
	case wire.PolicyPriorityLeastUsedDegr:
		e.k1 = clampKey(uint64(p.Load) + uint64(p.LoadDegradation) + uint64(e.degradation))
	case wire.PolicyLeastUsedDPF:
		e.k1 = clampRound(float64(p.Load) + dpfPenalty(p.Distance, p.LoadDPF))
	case wire.PolicyLeastUsedDegradationDPF:
		e.k1 = clampRound(float64(p.Load) + float64(e.degradation) + dpfPenalty(p.Distance, p.LoadDPF))
	case wire.PolicyPriorityLeastUsedDPF:
		e.k1 = clampRound(float64(p.Load) + float64(p.LoadDegradation) + dpfPenalty(p.Distance, p.LoadDPF))
	case wire.PolicyPriorityLeastUsedDegrDPF:
		e.k1 = clampRound(float64(p.Load) + float64(p.LoadDegradation) + float64(e.degradation) +
			dpfPenalty(p.Distance, p.LoadDPF))
	}
}

// wrrStart sets the round counters of an entry that (re)enters the WRR
// order: the round of the current first entry, VirtualCounter = Weight.
func (o *ordered) wrrStart(e *Entry) {
	if e.Policy.Weight == 0 {
		e.k1, e.k2 = excluded, 0
		return
	}
	e.k1 = 0
	if f := o.first(); f != nil && f.k1 != excluded {
		e.k1 = f.k1
	}
	e.k2 = e.Policy.Weight
}

func (o *ordered) first() *Entry {
	t := o.root
	if t == nil {
		return nil
	}
	for t.left != nil {
		t = t.left
	}
	return t
}

func (o *ordered) Insert(e *Entry) {
	o.attach(e)
	e.prio = o.nextPrio()
	if o.typ == wire.PolicyWeightedRoundRobin {
		o.wrrStart(e)
	} else {
		o.setKey(e)
	}
	o.root = insert(o.root, e)
}

func (o *ordered) Remove(e *Entry) {
	if e.owner != &o.base {
		return
	}
	o.root = remove(o.root, e)
	o.detach(e)
}

func (o *ordered) Update(e *Entry, p wire.Policy) {
	if e.owner != &o.base {
		e.Policy = p
		return
	}
	if !valuesChanged(&e.Policy, &p) && e.degradation == 0 {
		e.Policy = p
		return
	}
	o.root = remove(o.root, e)
	e.left, e.right = nil, nil
	weightChanged := e.Policy.Weight != p.Weight
	e.Policy = p
	e.degradation = 0
	if o.typ == wire.PolicyWeightedRoundRobin {
		if weightChanged {
			o.wrrStart(e)
		}
	} else {
		o.setKey(e)
	}
	o.root = insert(o.root, e)
}

func (o *ordered) Select(n int, dst []*Entry) []*Entry { return o.SelectExcept(n, dst, nil) }

func (o *ordered) SelectExcept(n int, dst []*Entry, skip func(*Entry) bool) []*Entry {
	if n <= 0 || o.root == nil {
		return dst
	}
	start := len(dst)
	// In-order traversal of the first n entries.
	st := o.stack[:0]
	for t := o.root; t != nil || len(st) > 0; {
		for t != nil {
			st = append(st, t)
			t = t.left
		}
		t = st[len(st)-1]
		st = st[:len(st)-1]
		if t.k1 == excluded || len(dst)-start == n {
			break
		}
		if skip == nil || !skip(t) {
			dst = append(dst, t)
		}
		t = t.right
	}
	clear(st)
	o.stack = st[:0]
	for i, e := range dst[start:] {
		e.selected()
		if !o.updates(i) {
			continue
		}
		o.root = remove(o.root, e)
		e.left, e.right = nil, nil
		e.seq = o.seq()
		o.step(e)
		o.root = insert(o.root, e)
	}
	return dst
}

// step applies the policy's update step to a selected entry (not in the tree).
func (o *ordered) step(e *Entry) {
	if o.typ == wire.PolicyWeightedRoundRobin {
		if e.k2 > 1 {
			e.k2--
		} else {
			e.k1++
			e.k2 = e.Policy.Weight
		}
		return
	}
	if degrades(o.typ) {
		e.degradation = satAdd(e.degradation, e.Policy.LoadDegradation)
	}
	o.setKey(e)
}

// less orders entries by (k1, k2, seq).
func less(a, b *Entry) bool {
	if a.k1 != b.k1 {
		return a.k1 < b.k1
	}
	if a.k2 != b.k2 {
		return a.k2 < b.k2
	}
	return a.seq < b.seq
}

// insert adds e (children nil) to the treap rooted at t and returns the new root.
func insert(t, e *Entry) *Entry {
	if t == nil {
		return e
	}
	if e.prio > t.prio {
		e.left, e.right = split(t, e)
		return e
	}
	if less(e, t) {
		t.left = insert(t.left, e)
	} else {
		t.right = insert(t.right, e)
	}
	return t
}

// split divides t into the entries ordered before k and those after it.
func split(t, k *Entry) (l, r *Entry) {
	if t == nil {
		return nil, nil
	}
	if less(t, k) {
		t.right, r = split(t.right, k)
		return t, r
	}
	l, t.left = split(t.left, k)
	return l, t
}

// remove deletes e from the treap rooted at t and returns the new root.
func remove(t, e *Entry) *Entry {
	if t == nil {
		return nil
	}
	if t == e {
		return merge(t.left, t.right)
	}
	if less(e, t) {
		t.left = remove(t.left, e)
	} else {
		t.right = remove(t.right, e)
	}
	return t
}

// merge joins two treaps where every entry of a orders before every entry of b.
func merge(a, b *Entry) *Entry {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.right = merge(a.right, b)
		return a
	default:
		b.left = merge(a, b.left)
		return b
	}
}
