package asap

import (
	"container/heap"
	"net/netip"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// owned is the monitoring state of a PE this registrar owns, kept in its
// handlespace.Element (Owner). It is an item of the timer heap and, while
// the PE has a connection, of that connection's list.
type owned struct {
	e          *handlespace.Element // valid until the PE is removed
	c          *conn                // nil while the PE has no connection
	prev, next *owned
	src        *source       // the source it was registered from; nil after a takeover
	at         time.Duration // next timer (keep-alive send or ack deadline), since Core.epoch
	idx        int32         // heap index, -1 when not in the heap
	waiting    bool          // a keep-alive is outstanding
	lost       bool          // waiting: its connection ended; removal is ReasonConnection
	reasserted time.Duration // last reclaim (see Disown), since Core.epoch; 0 = never
}

// ownedOf returns the monitoring state kept in e, or nil when e is not
// monitored here.
func ownedOf(e *handlespace.Element) *owned {
	o, _ := e.Owner.(*owned)
	return o
}

type timerHeap []*owned

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].idx = int32(i); h[j].idx = int32(j) }
func (h *timerHeap) Push(x any)        { o := x.(*owned); o.idx = int32(len(*h)); *h = append(*h, o) }
func (h *timerHeap) Pop() any {
	old := *h
	o := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	o.idx = -1
	return o
}

func (h timerHeap) holds(o *owned) bool { return o.idx >= 0 && int(o.idx) < len(h) && h[o.idx] == o }

// ownedPE returns the monitoring state of an owned PE, or nil.
func (c *Core) ownedPE(handle wire.PoolHandle, id uint32) *owned {
	e, ok := c.hs.Get(handle, id)
	if !ok {
		return nil
	}
	return ownedOf(e)
}

// monitor returns e's monitoring state, creating it.
func (c *Core) monitor(e *handlespace.Element) *owned {
	o := ownedOf(e)
	if o == nil {
		o = &owned{e: e, idx: -1}
		e.Owner = o
	}
	return o
}

// schedule (re)arms the timer of o.
func (c *Core) schedule(o *owned, at time.Time) {
	o.at = at.Sub(c.epoch)
	if c.timers.holds(o) {
		heap.Fix(&c.timers, int(o.idx))
		return
	}
	heap.Push(&c.timers, o)
}

// attach moves o to connection cn's list.
func (c *Core) attach(o *owned, cn *conn) {
	if o.c == cn {
		return
	}
	c.detach(o)
	o.c = cn
	if cn != nil {
		o.next = cn.head
		if cn.head != nil {
			cn.head.prev = o
		}
		cn.head = o
	}
}

func (c *Core) detach(o *owned) {
	if o.c == nil {
		return
	}
	if o.prev != nil {
		o.prev.next = o.next
	} else {
		o.c.head = o.next
	}
	if o.next != nil {
		o.next.prev = o.prev
	}
	o.prev, o.next, o.c = nil, nil, nil
}

// count moves o's registration to source address a (invalid: none).
func (c *Core) count(o *owned, a netip.Addr) {
	if o.src != nil && o.src.addr == a {
		return
	}
	c.uncount(o)
	if !a.IsValid() {
		return
	}
	s := c.sources[a]
	if s == nil {
		s = &source{addr: a}
		c.sources[a] = s
	}
	s.pes++
	o.src = s
}

func (c *Core) uncount(o *owned) {
	if s := o.src; s != nil {
		o.src = nil
		if s.pes--; s.pes <= 0 {
			delete(c.sources, s.addr)
		}
	}
}

// drop forgets the monitoring state of o without touching the handlespace.
func (c *Core) drop(o *owned) {
	c.detach(o)
	if c.timers.holds(o) {
		heap.Remove(&c.timers, int(o.idx))
	}
	c.uncount(o)
	if o.e.Owner == o {
		o.e.Owner = nil
	}
}

// remove deletes a PE from the handlespace and every index and announces
// the change when this registrar owned it. It reports whether the PE
// existed.
func (c *Core) remove(handle wire.PoolHandle, id uint32, reason Reason) bool {
	e, ok := c.hs.Get(handle, id)
	if !ok {
		return false
	}
	if o := ownedOf(e); o != nil {
		c.drop(o)
	}
	c.removeElement(e, reason)
	return true
}

// removeElement deletes e, which is in the handlespace and not monitored.
func (c *Core) removeElement(e *handlespace.Element, reason Reason) {
	handle := e.Pool
	gone, ok := c.hs.Deregister(handle, e.ID)
	if !ok {
		return
	}
	c.emit(Output{Kind: Removed, Handle: handle, PEID: gone.ID, Reason: reason, N: gone.Unreachable,
		PoolGone: c.hs.PoolLen(handle) == 0})
	if gone.HomeServer == c.cfg.ID {
		c.emit(Output{Kind: Change, Action: wire.ActionDelPE, Handle: handle, PEID: gone.ID, Element: gone.PoolElement()})
	}
}

// fire runs every keep-alive timer that is due.
func (c *Core) fire(now time.Time) {
	due := now.Sub(c.epoch)
	for len(c.timers) > 0 && c.timers[0].at <= due {
		o := c.timers[0]
		if cur, ok := c.hs.Get(o.e.Pool, o.e.ID); !ok || cur != o.e || cur.HomeServer != c.cfg.ID {
			c.drop(o) // a peer owns it now, or it is gone: not ours to monitor
			continue
		}
		if o.waiting {
			reason := ReasonKeepAlive
			if o.lost {
				reason = ReasonConnection
			}
			c.remove(o.e.Pool, o.e.ID, reason)
			continue
		}
		o.waiting, o.lost = true, false
		c.schedule(o, now.Add(c.cfg.KeepAliveTimeout))
		if o.c != nil {
			c.send(o.c.id, &wire.EndpointKeepAlive{ServerID: c.cfg.ID, PoolHandle: o.e.Pool, HasID: true, ID: o.e.ID})
		} else {
			c.reach(o)
		}
	}
}

// expire removes the PEs whose Registration Life ran out (ExpireOwned).
func (c *Core) expire(now time.Time) {
	c.expired = c.hs.Expired(now, c.expired[:0])
	for i, e := range c.expired {
		c.expired[i] = nil
		c.remove(e.Pool, e.ID, ReasonExpiry)
	}
}

// Adopt starts monitoring PE (handle, id), which this registrar took over
// from a dead peer (the ENRP node's KeepAliveHome). When the PE is
// connected here it gets an ASAP_ENDPOINT_KEEP_ALIVE with H=1 and its PE
// Identifier; otherwise, if its ASAP Transport is SCTP, a Reach asks for an
// association to it. Over the TCP mapping a registrar reaches a PE only over
// a connection the PE opened, so the PE keeps its entry (now ours) for one
// keep-alive interval plus timeout, within which it re-registers on its own
// (here, or at another registrar, which then announces itself as home).
func (c *Core) Adopt(now time.Time, handle wire.PoolHandle, id uint32) []Output {
	e, ok := c.hs.Get(handle, id)
	if !ok || e.HomeServer != c.cfg.ID {
		return nil
	}
	o := c.monitor(e)
	if o.c != nil {
		c.send(o.c.id, &wire.EndpointKeepAlive{ServerID: c.cfg.ID, PoolHandle: handle, HasID: true, ID: id, Home: true})
	} else {
		c.reach(o)
	}
	o.waiting, o.lost = true, false
	c.schedule(o, now.Add(c.cfg.KeepAliveInterval+c.cfg.KeepAliveTimeout))
	return c.flush()
}

// Disown handles a peer's claim to be the home of PE (handle, id), which we
// own (the ENRP node's OwnershipLost). moved says the claim is a Handle
// Update: the PE registered there (it re-registered after a server hunt, or
// moved back to its preferred registrar before closing its connection to
// us), so we stop monitoring it, whatever connection it still has here.
//
// A claim from a Handle Table Response (an audit) is only a peer's view:
// a registrar on the other side of a healed partition took over a PE that
// stayed registered over a live connection here. Such a PE is ours: we
// reclaim it and announce that (Change), at most once per keep-alive
// interval per PE, so that a PE registered at two registrars at once
// cannot make them argue without end. Without a live connection here the
// claim is accepted.
func (c *Core) Disown(now time.Time, handle wire.PoolHandle, id uint32, moved bool) []Output {
	e, ok := c.hs.Get(handle, id)
	if !ok {
		return nil
	}
	o := ownedOf(e)
	if o == nil || e.HomeServer == c.cfg.ID {
		return nil
	}
	since := max(now.Sub(c.epoch), 1) // 0 in o.reasserted means never
	if !moved && o.c != nil && (o.reasserted == 0 || since-o.reasserted >= c.cfg.KeepAliveInterval) {
		o.reasserted = since
		c.hs.SetHome(handle, id, c.cfg.ID)
		c.hs.SetExpiry(handle, id, time.Time{})
		c.emit(Output{Kind: Reclaimed, Handle: handle, PEID: id})
		c.emit(Output{Kind: Change, Action: wire.ActionAddPE, Handle: handle, PEID: id, Element: e.PoolElement()})
		return c.flush()
	}
	c.drop(o)
	return c.flush()
}

// DialTarget returns the address to open an ASAP association to when a PE
// we own has no connection here: only an SCTP ASAP Transport with a usable
// (specified, non-multicast) address and a port qualifies. Over the TCP
// mapping the PE reconnects by itself.
func DialTarget(t wire.Transport) (string, bool) {
	if t.Type != wire.TransportSCTP {
		return "", false
	}
	a, err := transport.AddrFromTransport(t)
	if err != nil {
		return "", false
	}
	return a.String(), true
}

// reach asks for an association to o's PE when it has no connection here
// and its ASAP Transport allows one; at most one set-up per PE and MaxDials
// in all are under way.
func (c *Core) reach(o *owned) {
	if o.c != nil {
		return
	}
	addr, ok := DialTarget(o.e.ASAP())
	if !ok {
		return
	}
	k := peKey{o.e.Pool, o.e.ID}
	if _, busy := c.dialing[k]; busy || capped(len(c.dialing), c.cfg.MaxDials) {
		return
	}
	c.dialing[k] = struct{}{}
	c.emit(Output{Kind: Reach, Handle: o.e.Pool, PEID: o.e.ID, Addr: addr})
}

// Dialed reports the end of the set-up asked for by Reach for PE (handle,
// pe): ok with connection conn (opened with Open) or failed. A connection
// that is no longer needed (the PE went, moved or reconnected) gets a Close;
// otherwise it becomes the PE's connection and carries a Keep-Alive with
// H=1 and the PE Identifier, so that the PE learns its new home. A failed
// set-up changes nothing: the keep-alive timeout removes the PE.
func (c *Core) Dialed(now time.Time, handle wire.PoolHandle, pe uint32, id ConnID, ok bool) []Output {
	delete(c.dialing, peKey{handle, pe})
	if !ok {
		return nil
	}
	cn := c.conns[id]
	if cn == nil {
		return nil
	}
	o := c.ownedPE(handle, pe)
	if o == nil || o.e.HomeServer != c.cfg.ID || o.c != nil {
		c.emit(Output{Kind: Close, Conn: id})
		return c.flush()
	}
	c.attach(o, cn)
	c.send(id, &wire.EndpointKeepAlive{ServerID: c.cfg.ID, PoolHandle: handle, HasID: true, ID: pe, Home: true})
	return c.flush()
}
