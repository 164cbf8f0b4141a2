package handlespace

import (
	"container/heap"
	"time"
)

// expiryHeap is a binary min-heap of the elements with a non-zero Expiry,
// ordered by (Expiry, pool handle, ID); Element.heapIndex is each element's
// position.
type expiryHeap []*Element

func expiresBefore(a, b *Element) bool {
	if c := a.Expiry.Compare(b.Expiry); c != 0 {
		return c < 0
	}
	if a.Pool != b.Pool {
		return a.Pool < b.Pool
	}
	return a.ID < b.ID
}

func (x expiryHeap) Len() int           { return len(x) }
func (x expiryHeap) Less(i, j int) bool { return expiresBefore(x[i], x[j]) }
func (x expiryHeap) Swap(i, j int) {
	x[i], x[j] = x[j], x[i]
	x[i].heapIndex = int32(i)
	x[j].heapIndex = int32(j)
}
func (x *expiryHeap) Push(v any) {
	e := v.(*Element)
	e.heapIndex = int32(len(*x))
	*x = append(*x, e)
}
func (x *expiryHeap) Pop() any {
	old := *x
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*x = old[:len(old)-1]
	e.heapIndex = -1
	return e
}

// set changes e's Expiry and its place in the heap (zero = not in the heap).
func (x *expiryHeap) set(e *Element, t time.Time) {
	e.Expiry = t
	switch {
	case t.IsZero() && e.heapIndex >= 0:
		x.remove(e)
	case t.IsZero():
	case e.heapIndex >= 0:
		heap.Fix(x, int(e.heapIndex))
	default:
		heap.Push(x, e)
	}
}

func (x *expiryHeap) remove(e *Element) {
	heap.Remove(x, int(e.heapIndex))
}

// upTo appends the elements expiring not after now in heap order without
// changing the heap: a best-first walk that stops at the first later entry.
func (x expiryHeap) upTo(now time.Time, dst []*Element) []*Element {
	if len(x) == 0 || x[0].Expiry.After(now) {
		return dst
	}
	var cand candidates
	cand.h = x
	heap.Push(&cand, int32(0))
	for cand.Len() > 0 {
		i := heap.Pop(&cand).(int32)
		e := x[i]
		if e.Expiry.After(now) {
			break
		}
		dst = append(dst, e)
		for _, c := range [2]int32{2*i + 1, 2*i + 2} {
			if int(c) < len(x) {
				heap.Push(&cand, c)
			}
		}
	}
	return dst
}

// candidates is a heap of indexes into an expiryHeap.
type candidates struct {
	h   expiryHeap
	idx []int32
}

func (c *candidates) Len() int           { return len(c.idx) }
func (c *candidates) Less(i, j int) bool { return expiresBefore(c.h[c.idx[i]], c.h[c.idx[j]]) }
func (c *candidates) Swap(i, j int)      { c.idx[i], c.idx[j] = c.idx[j], c.idx[i] }
func (c *candidates) Push(v any)         { c.idx = append(c.idx, v.(int32)) }
func (c *candidates) Pop() any {
	v := c.idx[len(c.idx)-1]
	c.idx = c.idx[:len(c.idx)-1]
	return v
}
