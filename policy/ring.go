package policy

import "github.com/rserpool/rserpool/wire"

// ring implements Round Robin: the entries in SeqNumber order form a circular
// list; a selection returns entries from the head and moves the first
// min(n, maxIncrement) of them behind all others, which is the head advancing
// (policies.md §3.1, §4). Every operation is O(1) per entry.
type ring struct {
	base
	head *Entry // left = previous, right = next
}

func (r *ring) Insert(e *Entry) {
	r.attach(e)
	if r.head == nil {
		e.left, e.right = e, e
		r.head = e
		return
	}
	tail := r.head.left
	e.left, e.right = tail, r.head
	tail.right = e
	r.head.left = e
}

func (r *ring) Remove(e *Entry) {
	if e.owner != &r.base {
		return
	}
	if e.right == e {
		r.head = nil
	} else {
		e.left.right = e.right
		e.right.left = e.left
		if r.head == e {
			r.head = e.right
		}
	}
	r.detach(e)
}

func (r *ring) Update(e *Entry, p wire.Policy) {
	if e.owner != &r.base {
		e.Policy = p
		return
	}
	e.Policy = p
	e.degradation = 0
}

func (r *ring) Select(n int, dst []*Entry) []*Entry {
	k := min(n, r.n)
	e := r.head
	for i := 0; i < k; i++ {
		dst = append(dst, e)
		e.selected()
		if r.updates(i) {
			e.seq = r.seq()
			r.head = e.right
		}
		e = e.right
	}
	return dst
}
