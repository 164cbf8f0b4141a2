package policy

import (
	"math/bits"

	"github.com/rserpool/rserpool/wire"
)

// uniform implements Random: entries in an array; a selection is a partial
// Fisher-Yates shuffle (O(1) per picked entry, no entry twice).
type uniform struct {
	base
	entries []*Entry
}

func (u *uniform) Insert(e *Entry) {
	u.attach(e)
	e.slot = int32(len(u.entries))
	u.entries = append(u.entries, e)
}

func (u *uniform) Remove(e *Entry) {
	if e.owner != &u.base {
		return
	}
	last := len(u.entries) - 1
	u.swap(int(e.slot), last)
	u.entries[last] = nil
	u.entries = u.entries[:last]
	u.detach(e)
}

func (u *uniform) swap(i, j int) {
	u.entries[i], u.entries[j] = u.entries[j], u.entries[i]
	u.entries[i].slot = int32(i)
	u.entries[j].slot = int32(j)
}

func (u *uniform) Update(e *Entry, p wire.Policy) {
	e.Policy = p
	e.degradation = 0
}

func (u *uniform) Select(n int, dst []*Entry) []*Entry { return u.SelectExcept(n, dst, nil) }

func (u *uniform) SelectExcept(n int, dst []*Entry, skip func(*Entry) bool) []*Entry {
	k := min(n, len(u.entries))
	for d, i := 0, 0; i < k && d < len(u.entries); d++ {
		j := d + int(u.rng.Uint64()%uint64(len(u.entries)-d))
		u.swap(d, j)
		e := u.entries[d]
		if skip != nil && skip(e) {
			continue
		}
		e.selected()
		if u.updates(i) {
			e.seq = u.seq()
		}
		dst = append(dst, e)
		i++
	}
	return dst
}

// weighted implements the weighted random policies: each entry has a slot
// holding its selection value in a Fenwick tree, so drawing the entry whose
// cumulative range contains a random number is O(log n), as are insertion,
// removal and value changes. Picked entries get value 0 for the rest of the
// selection (no entry twice) and are put back afterwards.
type weighted struct {
	base
	tree    []uint64 // Fenwick tree, 1-based, len = capacity+1
	vals    []uint64 // value per slot
	entries []*Entry // entry per slot, nil = free
	free    []int32  // free slots
	picked  []*Entry // scratch of one selection
}

func newWeighted(b base) *weighted {
	return &weighted{base: b, tree: make([]uint64, 1)}
}

func (w *weighted) capacity() int { return len(w.vals) }

// add adds d (two's complement for subtraction) to slot i's value.
func (w *weighted) add(i int, d uint64) {
	w.vals[i] += d
	for j := i + 1; j < len(w.tree); j += j & -j {
		w.tree[j] += d
	}
}

func (w *weighted) total() uint64 {
	var s uint64
	for j := w.capacity(); j > 0; j -= j & -j {
		s += w.tree[j]
	}
	return s
}

// find returns the slot whose cumulative range contains r < total().
func (w *weighted) find(r uint64) int {
	pos := 0
	for step := 1 << (bits.Len(uint(w.capacity())) - 1); step > 0; step >>= 1 {
		if next := pos + step; next <= w.capacity() && w.tree[next] <= r {
			pos = next
			r -= w.tree[next]
		}
	}
	return pos
}

// grow doubles the capacity and rebuilds the tree in O(n).
func (w *weighted) grow() {
	c := max(8, 2*w.capacity())
	old := w.capacity()
	w.vals = append(w.vals, make([]uint64, c-old)...)
	w.entries = append(w.entries, make([]*Entry, c-old)...)
	for i := c - 1; i >= old; i-- {
		w.free = append(w.free, int32(i))
	}
	w.tree = make([]uint64, c+1)
	for i := 1; i <= c; i++ {
		w.tree[i] += w.vals[i-1]
		if p := i + i&-i; p <= c {
			w.tree[p] += w.tree[i]
		}
	}
}

func (w *weighted) Insert(e *Entry) {
	w.attach(e)
	if len(w.free) == 0 {
		w.grow()
	}
	s := w.free[len(w.free)-1]
	w.free = w.free[:len(w.free)-1]
	e.slot = s
	w.entries[s] = e
	w.add(int(s), randomValue(w.typ, e))
}

func (w *weighted) Remove(e *Entry) {
	if e.owner != &w.base {
		return
	}
	s := int(e.slot)
	w.add(s, -w.vals[s])
	w.entries[s] = nil
	w.free = append(w.free, int32(s))
	w.detach(e)
}

func (w *weighted) Update(e *Entry, p wire.Policy) {
	if e.owner != &w.base {
		e.Policy = p
		return
	}
	if !valuesChanged(&e.Policy, &p) && e.degradation == 0 {
		e.Policy = p
		return
	}
	e.Policy = p
	e.degradation = 0
	w.revalue(e)
}

func (w *weighted) revalue(e *Entry) {
	s := int(e.slot)
	w.add(s, randomValue(w.typ, e)-w.vals[s])
}

func (w *weighted) Select(n int, dst []*Entry) []*Entry { return w.SelectExcept(n, dst, nil) }

func (w *weighted) SelectExcept(n int, dst []*Entry, skip func(*Entry) bool) []*Entry {
	k := min(n, w.n)
	picked := w.picked[:0]
	for i := 0; i < k; {
		t := w.total()
		if t < 1 {
			break
		}
		s := w.find(w.rng.Uint64() % t)
		e := w.entries[s]
		if skip != nil && skip(e) {
			w.add(s, -w.vals[s]) // out of this draw; revalued below
			picked = append(picked, e)
			continue
		}
		e.selected()
		if w.updates(i) {
			e.seq = w.seq()
			if degrades(w.typ) {
				e.degradation = satAdd(e.degradation, e.Policy.LoadDegradation)
			}
		}
		i++
		w.add(s, -w.vals[s])
		picked = append(picked, e)
		dst = append(dst, e)
	}
	for _, e := range picked {
		w.revalue(e)
	}
	clear(picked)
	w.picked = picked[:0]
	return dst
}
