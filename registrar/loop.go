package registrar

import (
	"container/heap"
	"log/slog"
	"net/netip"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/wire"
)

// Change is a change of a PE this registrar owns: what ENRP announces to
// peers as ENRP_HANDLE_UPDATE (RFC 5353 §3.3). Element is a copy.
type Change struct {
	Action  wire.UpdateAction // wire.ActionAddPE or wire.ActionDelPE
	Pool    wire.PoolHandle
	Element wire.PoolElement
}

// Events handled by the loop.
type (
	evMsg struct {
		c *conn
		m wire.Message
	}
	evClosed struct{ c *conn }
	evReload struct {
		cfg  Config
		done chan struct{}
	}
	evSnapshot struct{ reply chan Snapshot }
	evFunc     struct{ fn func(*loop) } // for tests and in-process queries
)

// ownedPE is the monitoring state of a PE this registrar owns. It is an
// item of the loop's timer heap and of its connection's PE list.
type ownedPE struct {
	e          *handlespace.Element // valid until the PE is removed
	c          *conn                // nil while the PE has no connection
	prev, next *ownedPE
	at         time.Duration // next timer (keep-alive send or ack deadline), since loop.epoch
	idx        int32         // heap index, -1 when not in the heap
	waiting    bool          // a keep-alive is outstanding
	reasserted time.Duration // last time ENRP ownership was reclaimed (see disown), since loop.epoch; 0 = never
}

// owned returns the monitoring state kept in e, or nil when e is not ours.
func owned(e *handlespace.Element) *ownedPE {
	o, _ := e.Owner.(*ownedPE)
	return o
}

type timerHeap []*ownedPE

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].idx = int32(i); h[j].idx = int32(j) }
func (h *timerHeap) Push(x any)        { o := x.(*ownedPE); o.idx = int32(len(*h)); *h = append(*h, o) }
func (h *timerHeap) Pop() any {
	old := *h
	o := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	o.idx = -1
	return o
}

// poolAuth is the compiled authorization of one pool.
type poolAuth struct {
	allow []netip.Prefix
	ids   map[string]bool
	max   int
}

// loop owns the handlespace and every piece of state derived from it. Only
// its run goroutine touches these fields.
type loop struct {
	id       uint32
	cfg      Config
	log      *slog.Logger
	m        *metrics
	onChange func(Change)

	hs      *handlespace.Handlespace
	timers  timerHeap
	auth    map[wire.PoolHandle]*poolAuth
	allow   []netip.Prefix // default for pools without [[pool]]
	labels  *poolLabels
	sel     []*handlespace.Element
	expired []*handlespace.Element

	events chan any
	epoch  time.Time // origin of ownedPE.at (monotonic)

	enrp *enrpSide // nil when ENRP is off; set before run starts

	// dial starts an outgoing ASAP association set-up to a PE (see reach);
	// nil in loop unit tests. dialing holds the PEs with one under way.
	// whether the Keep-Alive to send on it carries the H bit.
	dial    func(k peKey, addr string) bool
	dialing map[peKey]struct{}
}

func newLoop(id uint32, cfg Config, log *slog.Logger, m *metrics, onChange func(Change)) *loop {
	l := &loop{
		id:       id,
		log:      log,
		m:        m,
		onChange: onChange,
		hs:       handlespace.New(handlespace.Options{}),
		labels:   newPoolLabels(cfg.Limits.MetricPools, m.poolElements),
		events:   make(chan any, 4096),
		dialing:  map[peKey]struct{}{},
		epoch:    time.Now(),
	}
	l.apply(cfg)
	return l
}

// apply installs the parts of cfg that may change at run time.
func (l *loop) apply(cfg Config) {
	l.cfg = cfg
	l.labels.max = cfg.Limits.MetricPools
	l.allow = parsePrefixes(cfg.Registration.Allow)
	l.auth = make(map[wire.PoolHandle]*poolAuth, len(cfg.Pools))
	for _, p := range cfg.Pools {
		a := &poolAuth{allow: parsePrefixes(p.Allow), max: p.MaxElements}
		if len(p.TLSIdentities) > 0 {
			a.ids = map[string]bool{}
			for _, id := range p.TLSIdentities {
				a.ids[id] = true
			}
		}
		l.auth[p.Handle] = a
	}
}

func parsePrefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil { // validated by Config.Validate
			out = append(out, p.Masked())
		}
	}
	return out
}

// run processes events and timers until stop is closed.
func (l *loop) run(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var expiry <-chan time.Time
	var ticker *time.Ticker
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	armed := time.Duration(-1)
	var enrpC <-chan time.Time
	var enrpArmed time.Time
	var enrpTimer *time.Timer
	if l.enrp != nil {
		enrpTimer = time.NewTimer(time.Hour)
		defer enrpTimer.Stop()
		enrpC = enrpTimer.C
	}
	for {
		if l.enrp != nil {
			if d := l.enrp.node.NextDeadline(); !d.Equal(enrpArmed) {
				enrpTimer.Reset(time.Until(d))
				enrpArmed = d
			}
		}
		if l.cfg.Registration.ExpireOwned && ticker == nil {
			ticker = time.NewTicker(l.cfg.Timers.ExpiryCheckInterval)
			expiry = ticker.C
		} else if !l.cfg.Registration.ExpireOwned && ticker != nil {
			ticker.Stop()
			ticker, expiry = nil, nil
		}
		if len(l.timers) > 0 {
			if at := l.timers[0].at; at != armed {
				timer.Reset(time.Until(l.epoch.Add(at)))
				armed = at
			}
		}
		select {
		case <-stop:
			return
		case ev := <-l.events:
			l.handle(ev, time.Now())
		case now := <-timer.C:
			armed = -1
			l.fire(now)
		case now := <-expiry:
			l.expire(now)
		case now := <-enrpC:
			enrpArmed = time.Time{}
			l.enrpOut(l.enrp.node.Tick(now), now)
		}
	}
}

func (l *loop) handle(ev any, now time.Time) {
	switch ev := ev.(type) {
	case evMsg:
		l.message(ev.c, ev.m, now)
		select {
		case <-ev.c.slots:
		default:
		}
	case evClosed:
		l.connClosed(ev.c, now)
	case evReload:
		l.apply(ev.cfg)
		close(ev.done)
	case evSnapshot:
		ev.reply <- l.snapshot()
	case evFunc:
		ev.fn(l)
	case evDialed:
		l.dialed(ev)
	case evENRP:
		if l.enrp != nil {
			l.enrpMessage(ev, now)
		}
	case evPeerLost:
		if l.enrp != nil {
			l.enrpOut(l.enrp.node.PeerConnLost(now, ev.addr), now)
		}
	}
}

func (l *loop) message(c *conn, m wire.Message, now time.Time) {
	switch m := m.(type) {
	case *wire.Registration:
		l.register(c, m, now)
	case *wire.Deregistration:
		l.deregister(c, m)
	case *wire.HandleResolution:
		l.resolve(c, m)
	case *wire.EndpointKeepAliveAck:
		l.keepAliveAck(c, m, now)
	case *wire.EndpointUnreachable:
		l.unreachable(m)
	}
}

// ownedPE returns the monitoring state of an owned PE, or nil.
func (l *loop) ownedPE(handle wire.PoolHandle, id uint32) *ownedPE {
	e, ok := l.hs.Get(handle, id)
	if !ok {
		return nil
	}
	return owned(e)
}

// schedule (re)arms the timer of o.
func (l *loop) schedule(o *ownedPE, at time.Time) {
	o.at = at.Sub(l.epoch)
	if o.idx >= 0 && int(o.idx) < len(l.timers) && l.timers[o.idx] == o {
		heap.Fix(&l.timers, int(o.idx))
		return
	}
	heap.Push(&l.timers, o)
}

// fire runs every timer that is due.
func (l *loop) fire(now time.Time) {
	due := now.Sub(l.epoch)
	for len(l.timers) > 0 && l.timers[0].at <= due {
		o := l.timers[0]
		if cur, ok := l.hs.Get(o.e.Pool, o.e.ID); !ok || cur != o.e || cur.HomeServer != l.id {
			// A peer owns it now (ENRP): not ours to monitor.
			l.dropOwned(o)
			continue
		}
		if o.waiting {
			l.log.Info("keep-alive timeout, removing PE", "pool", truncate(o.e.Pool), "pe", peID(o.e.ID))
			l.remove(o.e.Pool, o.e.ID, reasonKeepAlive)
			continue
		}
		o.waiting = true
		l.schedule(o, now.Add(l.cfg.Timers.KeepAliveTimeout))
		if o.c != nil {
			ka := &wire.EndpointKeepAlive{ServerID: l.id, PoolHandle: o.e.Pool, HasID: true, ID: o.e.ID}
			if l.sendMsg(o.c, ka) {
				l.m.keepAlivesSent.Inc()
			}
		} else {
			l.reach(o)
		}
	}
}

// expire removes owned PEs whose registration life ran out
// (Registration.ExpireOwned).
func (l *loop) expire(now time.Time) {
	l.expired = l.hs.Expired(now, l.expired[:0])
	for i, e := range l.expired {
		l.expired[i] = nil
		l.log.Info("registration life expired, removing PE", "pool", e.Pool, "pe", peID(e.ID))
		l.remove(e.Pool, e.ID, reasonExpiry)
	}
}

// attach moves o to connection c's list.
func (l *loop) attach(o *ownedPE, c *conn) {
	if o.c == c {
		return
	}
	l.detach(o)
	o.c = c
	if c != nil {
		o.next = c.head
		if c.head != nil {
			c.head.prev = o
		}
		c.head = o
	}
}

func (l *loop) detach(o *ownedPE) {
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

// remove deletes a PE from the handlespace and every index and announces
// the change when this registrar owned it.
func (l *loop) remove(handle wire.PoolHandle, id uint32, reason string) bool {
	if o := l.ownedPE(handle, id); o != nil {
		l.detach(o)
		if o.idx >= 0 && int(o.idx) < len(l.timers) && l.timers[o.idx] == o {
			heap.Remove(&l.timers, int(o.idx))
		}
		o.e.Owner = nil
	}
	e, ok := l.hs.Deregister(handle, id)
	if !ok {
		return false
	}
	l.m.removals.WithLabelValues(reason).Inc()
	l.labels.removed(handle, l.hs.PoolLen(handle) == 0)
	l.gauges()
	if e.HomeServer == l.id && l.onChange != nil {
		l.onChange(Change{Action: wire.ActionDelPE, Pool: handle, Element: e.PoolElement()})
	}
	return true
}

func (l *loop) gauges() {
	l.m.elements.Set(float64(l.hs.NumElements()))
	l.m.pools.Set(float64(l.hs.NumPools()))
}

func (l *loop) connClosed(c *conn, now time.Time) {
	if c.gone {
		return
	}
	c.gone = true
	if l.cfg.Registration.RemoveOnConnectionLoss {
		for c.head != nil {
			o := c.head
			l.remove(o.e.Pool, o.e.ID, reasonConnection)
		}
		return
	}
	// Keep the PEs for one keep-alive timeout: a PE that reconnects and
	// re-registers in time keeps its entry.
	for c.head != nil {
		o := c.head
		l.detach(o)
		o.waiting = true
		l.schedule(o, now.Add(l.cfg.Timers.KeepAliveTimeout))
	}
}

// sendMsg encodes m and queues it on c.
func (l *loop) sendMsg(c *conn, m wire.Message) bool {
	b, err := m.AppendBinary(make([]byte, 0, 64))
	if err != nil {
		l.log.Error("encoding failed", "type", m.Type(), "err", err)
		return false
	}
	return c.send(b)
}

// peID formats a PE identifier for logs.
type peID uint32

func (p peID) LogValue() slog.Value {
	return slog.StringValue(ServerID(p).String())
}
