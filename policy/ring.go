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

func (r *ring) Select(n int, dst []*Entry) []*Entry { return r.SelectExcept(n, dst, nil) }

func (r *ring) SelectExcept(n int, dst []*Entry, skip func(*Entry) bool) []*Entry {
	k := min(n, r.n)
	e, seen := r.head, r.n
	for i := 0; i < k && seen > 0; seen-- {
		next := e.right
		if skip != nil && skip(e) {
			e = next
			continue
		}
		dst = append(dst, e)
		e.selected()
		if r.updates(i) {
			e.seq = r.seq()
			r.toTail(e)
		}
		i++
		e = next
	}
	return dst
}

// toTail moves e behind every other entry: the head advances past it, or,
// when skipped entries precede it, it is relinked just before the head.
func (r *ring) toTail(e *Entry) {
	if e == r.head {
		r.head = e.right
		return
	}
	if e.right == r.head {
		return // already the tail
	}
	e.left.right, e.right.left = e.right, e.left
	tail := r.head.left
	e.left, e.right = tail, r.head
	tail.right, r.head.left = e, e
}
