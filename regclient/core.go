package regclient

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// core is the client's protocol state: the registrar set, the server
// hunt, the connection's generation and the pending requests. It does no
// I/O, starts no goroutines and reads no clock: every method takes now,
// and what must happen outside (dial, write, close) is appended to out
// for the shell (Client) to carry out. The Handler's callbacks run from
// its methods. Not safe for concurrent use: one goroutine owns it.
type core struct {
	cfg Config
	log *slog.Logger
	h   Handler
	set *Set

	// The connection: gen numbers connections; up says whether the one
	// numbered gen is usable. addr is its registrar.
	gen  uint64
	up   bool
	addr transport.Addr

	// The server hunt (RFC 5352 §3.6 SH1-SH6).
	hunt     *round
	t5       time.Duration  // current T5, doubled on expiry up to RetranMax
	retry    time.Duration  // pause after a failed hunt, doubled up to RetranMax
	nextHunt time.Time      // no automatic hunt before this
	kick     bool           // a request or a new registrar: hunt now, not at nextHunt
	last     transport.Addr // the registrar that failed last: tried last
	want     bool           // keep a connection even without requests
	nextID   uint64         // dial attempt identifiers

	pending []*request // FIFO
	hWake   time.Time  // the handler's next deadline

	reb rebalance // checks of the preferred registrar (Config.Rebalance)
	// After a move to the preferred registrar the previous connection
	// stays open until the requests pending at the move (the Handler's
	// registrations there) are done, or T1 has passed.
	prev      uint64 // its generation; 0 = none
	prevUntil time.Time

	out []effect
}

// rebalance is the state of the checks of the preferred registrar while
// the connection is to another one (Config.Rebalance).
type rebalance struct {
	probe uint64        // the check under way (an attempt id); 0 = none
	next  time.Time     // when the next check starts; zero = not scheduled
	since time.Time     // it has answered every check since; zero = it has not
	need  time.Duration // how long it must answer before the move (drawn once per since)
}

// round is one server hunt: the candidates in try order and the attempts
// under way, at most Parallel at once, within T5.
type round struct {
	order     []transport.Addr
	next      int                       // next candidate of order to try
	last      transport.Addr            // tried only when every other failed
	active    map[uint64]transport.Addr // attempt → registrar
	errs      []error
	deadline  time.Time // T5 expiry
	nextStart time.Time // no further attempt before this while one is under way (HuntStagger)
}

// request is one request (or one-way message) waiting for a connection,
// a transmission or a response.
type request struct {
	msg      wire.Message
	ppid     uint32
	data     []byte
	oneway   bool      // no response: done once written
	sentGen  uint64    // connection it was sent on; 0: not sent on the current one
	deadline time.Time // T1 expiry
	expiries int       // T1 expiries so far
	done     func(now time.Time, resp wire.Message, err error)
}

type effectKind uint8

const (
	effDial   effectKind = iota + 1 // start attempt id to addr within timeout
	effCancel                       // abandon attempt id
	effAdopt                        // attempt id's connection becomes connection gen
	effDrop                         // close attempt id's connection (not adopted)
	effWrite                        // write data (ppid) on connection gen
	effClose                        // close connection gen
	effProbe                        // check addr: connect, write data, await an ASAP answer within timeout (attempt id)
)

// effect is one I/O action for the shell.
type effect struct {
	kind    effectKind
	id      uint64
	gen     uint64
	addr    transport.Addr
	timeout time.Duration
	ppid    uint32
	data    []byte
	keep    bool // effAdopt: the current connection stays open until its effClose
}

func newCore(cfg Config, h Handler, log *slog.Logger) *core {
	if h == nil {
		h = NopHandler{}
	}
	return &core{
		cfg: cfg, log: log, h: h,
		set:   NewSet(cfg.Registrars, cfg.MaxLearned, cfg.AnnounceLifetime),
		t5:    cfg.ConnectTimeout,
		retry: cfg.RetryInterval,
	}
}

// effects returns the effects collected so far and forgets them.
func (c *core) effects() []effect {
	e := c.out
	c.out = nil
	return e
}

// ---- requests ----

// request queues m (a request, or a one-way message when oneway) and
// sends it as soon as a connection is up. done is called exactly once,
// from the owner's goroutine: with the response, with nil after a one-way
// message was written, or with an error.
func (c *core) request(now time.Time, m wire.Message, oneway bool, done func(time.Time, wire.Message, error)) *request {
	b, err := m.AppendBinary(nil)
	if err != nil {
		done(now, nil, fmt.Errorf("regclient: encode %T: %w", m, err))
		return nil
	}
	if len(c.pending) >= c.cfg.MaxPending {
		done(now, nil, ErrBusy)
		return nil
	}
	ppid := wire.PPIDASAP
	if m.Protocol() == wire.ENRP {
		ppid = wire.PPIDENRP
	}
	r := &request{msg: m, ppid: ppid, data: b, oneway: oneway, deadline: now.Add(c.cfg.RequestTimeout), done: done}
	c.pending = append(c.pending, r)
	c.kick = true
	if c.up {
		c.transmit(now, r)
	}
	return r
}

// cancel forgets r (its caller gave up); done is called with err.
func (c *core) cancel(now time.Time, r *request, err error) {
	if c.remove(r) {
		r.done(now, nil, err)
	}
}

func (c *core) remove(r *request) bool {
	i := slices.Index(c.pending, r)
	if i < 0 {
		return false
	}
	c.pending = slices.Delete(c.pending, i, i+1)
	return true
}

// transmit writes r on the current connection.
func (c *core) transmit(now time.Time, r *request) {
	c.out = append(c.out, effect{kind: effWrite, gen: c.gen, ppid: r.ppid, data: r.data})
	if r.oneway {
		c.remove(r)
		r.done(now, nil, nil)
		return
	}
	r.sentGen = c.gen
}

// send writes m on the current connection at once (an answer to the
// registrar, such as a Keep-Alive Ack); it is not queued or retried.
func (c *core) send(m wire.Message) error {
	if !c.up {
		return ErrNotConnected
	}
	b, err := m.AppendBinary(nil)
	if err != nil {
		return fmt.Errorf("regclient: encode %T: %w", m, err)
	}
	ppid := wire.PPIDASAP
	if m.Protocol() == wire.ENRP {
		ppid = wire.PPIDENRP
	}
	c.out = append(c.out, effect{kind: effWrite, gen: c.gen, ppid: ppid, data: b})
	return nil
}

// ---- received messages ----

// receive handles one message that arrived on connection gen: the answer
// to a pending request completes it; anything else goes to the Handler.
// This is the step the fuzz targets drive with hostile input.
func (c *core) receive(now time.Time, gen uint64, m wire.Message) {
	if gen != c.gen || !c.up || m == nil {
		return
	}
	if r := c.match(m); r != nil {
		c.remove(r)
		var err error
		switch e := m.(type) {
		case *wire.ASAPError:
			err = &ErrorReply{Causes: e.Error.Causes}
			m = nil
		case *wire.ENRPError:
			err = &ErrorReply{Causes: e.Error.Causes}
			m = nil
		}
		r.done(now, m, err)
		return
	}
	c.h.Message(now, m)
}

// match returns the pending request m answers, or nil. Only requests sent
// on the current connection can be answered.
func (c *core) match(m wire.Message) *request {
	first := func(f func(wire.Message) bool) *request {
		for _, r := range c.pending {
			if r.sentGen == c.gen && f(r.msg) {
				return r
			}
		}
		return nil
	}
	switch m := m.(type) {
	case *wire.HandleResolutionResponse:
		if r := first(func(q wire.Message) bool {
			hr, ok := q.(*wire.HandleResolution)
			return ok && hr.PoolHandle == m.PoolHandle
		}); r != nil || m.PoolHandle != "" || m.Error == nil {
			return r
		}
		// A negative response may omit the handle: it answers the oldest
		// resolution (registrars answer in order).
		return first(func(q wire.Message) bool { _, ok := q.(*wire.HandleResolution); return ok })
	case *wire.RegistrationResponse:
		return first(func(q wire.Message) bool {
			r, ok := q.(*wire.Registration)
			return ok && r.PoolHandle == m.PoolHandle && r.Element.ID == m.ID
		})
	case *wire.DeregistrationResponse:
		return first(func(q wire.Message) bool {
			d, ok := q.(*wire.Deregistration)
			return ok && d.PoolHandle == m.PoolHandle && d.ID == m.ID
		})
	case *wire.HandleTableResponse:
		return first(func(q wire.Message) bool { _, ok := q.(*wire.HandleTableRequest); return ok })
	case *wire.ListResponse:
		return first(func(q wire.Message) bool { _, ok := q.(*wire.ListRequest); return ok })
	case *wire.ASAPError:
		// An error answers the oldest request (RSPLIB answers an
		// undecodable registration with ASAP_ERROR).
		return first(func(q wire.Message) bool { return q.Protocol() == wire.ASAP })
	case *wire.ENRPError:
		return first(func(q wire.Message) bool { return q.Protocol() == wire.ENRP })
	}
	return nil
}

// ---- connection events ----

// dialed reports the end of hunt attempt id: err == nil means its
// connection is up. The first one up becomes the connection (SH3, SH6);
// the others are abandoned and closed.
func (c *core) dialed(now time.Time, id uint64, err error) {
	h := c.hunt
	addr, mine := transport.Addr{}, false
	if h != nil {
		addr, mine = h.active[id]
	}
	if !mine {
		if err == nil {
			c.out = append(c.out, effect{kind: effDrop, id: id})
		}
		return
	}
	delete(h.active, id)
	if err != nil {
		c.log.Debug("registrar connect failed", "registrar", addr, "err", err)
		h.errs = append(h.errs, fmt.Errorf("%s: %w", addr, err))
		h.nextStart = now // its replacement starts at once (SH4)
		c.fillRound(now)
		return
	}
	for other := range h.active {
		c.out = append(c.out, effect{kind: effCancel, id: other})
	}
	c.hunt = nil
	c.gen++
	c.up, c.addr = true, addr
	c.t5, c.retry = c.cfg.ConnectTimeout, c.cfg.RetryInterval
	c.reb = rebalance{probe: c.reb.probe} // a check still under way ends by itself
	c.out = append(c.out, effect{kind: effAdopt, id: id, gen: c.gen, addr: addr})
	c.log.Info("connected to registrar", "registrar", addr)
	for _, r := range slices.Clone(c.pending) {
		c.transmit(now, r)
	}
	c.h.Up(now, addr)
}

// lost reports that connection gen failed (read or write error, peer
// closed it).
func (c *core) lost(now time.Time, gen uint64, err error) {
	if gen != c.gen || !c.up {
		return
	}
	c.down(now, fmt.Errorf("registrar %s: %w", c.addr, err))
}

// down drops the current connection: its requests wait for the next one
// (they were not answered), the Handler hears of it, and a hunt follows.
func (c *core) down(now time.Time, err error) {
	c.log.Info("registrar connection closed", "registrar", c.addr, "err", err)
	c.closePrevious(now, true)
	c.out = append(c.out, effect{kind: effClose, gen: c.gen})
	c.up, c.last = false, c.addr
	c.addr = transport.Addr{}
	for _, r := range c.pending {
		r.sentGen = 0
	}
	c.kick = true // a registrar that failed is replaced at once (SH: send failure)
	c.h.Down(now, err)
}

// drop closes the current connection on the Handler's request (for
// example a registrar that does not answer a registration).
func (c *core) drop(now time.Time, err error) {
	if c.up {
		c.down(now, err)
	}
}

// ---- the hunt ----

// startHunt begins a hunt over the candidates (SH1): the registrar that
// failed last is tried only when every other one failed.
func (c *core) startHunt(now time.Time) {
	cands := c.set.Candidates(now)
	h := &round{active: map[uint64]transport.Addr{}, deadline: now.Add(c.t5)}
	for _, a := range cands {
		if a == c.last {
			h.last = a
			continue
		}
		h.order = append(h.order, a)
	}
	c.hunt, c.kick = h, false
	if len(cands) == 0 {
		c.huntFailed(now, errors.New("no registrar configured or announced"))
		return
	}
	c.fillRound(now)
}

// fillRound starts attempts until Parallel are under way (SH1, SH4); the
// hunt fails when every candidate has been tried and none is under way.
func (c *core) fillRound(now time.Time) {
	h := c.hunt
	for len(h.active) < c.cfg.Parallel && h.next < len(h.order) {
		if len(h.active) > 0 && now.Before(h.nextStart) {
			break // the earlier candidates get HuntStagger each first
		}
		c.attempt(now, h, h.order[h.next])
		h.next++
		h.nextStart = now.Add(c.cfg.HuntStagger)
	}
	if len(h.active) == 0 && !h.last.IsZero() {
		a := h.last
		h.last = transport.Addr{}
		c.attempt(now, h, a)
	}
	if len(h.active) == 0 {
		c.huntFailed(now, errors.Join(h.errs...))
	}
}

func (c *core) attempt(now time.Time, h *round, a transport.Addr) {
	c.nextID++
	h.active[c.nextID] = a
	c.out = append(c.out, effect{kind: effDial, id: c.nextID, addr: a, timeout: h.deadline.Sub(now)})
}

// t5Expired: no attempt of this round came up within T5 (SH5). The
// attempts are abandoned and T5 doubles; the hunt goes on with the
// candidates not tried yet, or fails when none is left.
func (c *core) t5Expired(now time.Time) {
	h := c.hunt
	for id, a := range h.active {
		c.out = append(c.out, effect{kind: effCancel, id: id})
		h.errs = append(h.errs, fmt.Errorf("%s: no connection within T5 (%v)", a, c.t5))
	}
	clear(h.active)
	c.t5 = min(2*c.t5, c.cfg.RetranMax)
	h.deadline = now.Add(c.t5)
	c.fillRound(now)
}

// huntFailed ends a hunt without a connection: every pending request
// fails (nothing can carry it), and the next automatic hunt waits for the
// retry interval, which doubles up to RetranMax.
func (c *core) huntFailed(now time.Time, cause error) {
	c.hunt = nil
	err := fmt.Errorf("%w: %w", ErrNoRegistrar, cause)
	c.log.Warn("no registrar reachable", "err", cause, "retry_in", c.retry)
	c.nextHunt = now.Add(c.retry)
	c.retry = min(2*c.retry, c.cfg.RetranMax)
	pending := c.pending
	c.pending = nil
	for _, r := range pending {
		r.done(now, nil, err)
	}
	c.h.HuntFailed(now, err)
}

// ---- time ----

// advance runs everything due at now: T1 expiries, T5 expiry, T7 expiry,
// the Handler's timer, and a hunt when a connection is needed.
func (c *core) advance(now time.Time) {
	c.set.Expire(now)
	c.expireRequests(now)
	if c.hunt != nil && !now.Before(c.hunt.deadline) {
		c.t5Expired(now)
	}
	if h := c.hunt; h != nil && len(h.active) < c.cfg.Parallel && h.next < len(h.order) && !now.Before(h.nextStart) {
		c.fillRound(now)
	}
	if !c.hWake.IsZero() && !now.Before(c.hWake) {
		c.hWake = time.Time{}
		(&Link{c}).WakeAt(c.h.Tick(now))
	}
	if !c.up && c.hunt == nil && (len(c.pending) > 0 || c.want) && (c.kick || !now.Before(c.nextHunt)) {
		c.startHunt(now)
	}
	c.kick = false
	c.rebalanceStep(now)
	c.closePrevious(now, false)
}

// expireRequests handles T1: a request not answered in time is re-sent
// (at most MaxRetransmit times) at another registrar: the current one is
// given up (RFC 5352 §3.7.2, §3.6) and the hunt's next connection carries
// it. A request that is still waiting for a connection counts its T1
// expiries the same way, so every request ends within
// (MaxRetransmit+1) × T1.
func (c *core) expireRequests(now time.Time) {
	var stale bool
	for _, r := range slices.Clone(c.pending) {
		if now.Before(r.deadline) {
			continue
		}
		// Count every T1 period that has passed (the owner may run late),
		// each from the end of the previous one, so that no request
		// outlives (MaxRetransmit+1) × T1.
		for !now.Before(r.deadline) && r.expiries <= c.cfg.MaxRetransmit {
			r.expiries++
			r.deadline = r.deadline.Add(c.cfg.RequestTimeout)
		}
		if r.expiries > c.cfg.MaxRetransmit {
			c.remove(r)
			r.done(now, nil, fmt.Errorf("%w (%d × T1 = %v)", ErrTimeout, r.expiries, time.Duration(r.expiries)*c.cfg.RequestTimeout))
			continue
		}
		if c.up && r.sentGen == c.gen {
			stale = true
		}
	}
	if stale {
		c.down(now, fmt.Errorf("%w from registrar %s", ErrTimeout, c.addr))
	}
}

// wake returns when advance must run next (zero: only on an event).
func (c *core) wake() time.Time {
	var t time.Time
	at := func(x time.Time) {
		if !x.IsZero() && (t.IsZero() || x.Before(t)) {
			t = x
		}
	}
	for _, r := range c.pending {
		at(r.deadline)
	}
	if h := c.hunt; h != nil {
		at(h.deadline)
		if len(h.active) < c.cfg.Parallel && h.next < len(h.order) {
			at(h.nextStart)
		}
	}
	at(c.set.NextExpiry())
	at(c.hWake)
	if !c.up && c.hunt == nil && (len(c.pending) > 0 || c.want) {
		at(c.nextHunt)
	}
	if c.reb.probe == 0 {
		at(c.reb.next)
	}
	if c.prev != 0 {
		at(c.prevUntil)
	}
	return t
}

// learn adds a registrar address; a new one may end a pause between hunts.
func (c *core) learn(now time.Time, a transport.Addr) {
	if c.set.Learn(now, a) {
		c.kick = true
	}
}

// setStatic replaces the static registrars; a connection to a registrar
// no longer listed (nor learned) is dropped.
func (c *core) setStatic(now time.Time, list []transport.Addr) {
	c.set.SetStatic(list)
	c.kick = true
	if c.up && !slices.Contains(c.set.Candidates(now), c.addr) {
		c.down(now, errors.New("registrar removed from the configuration"))
	}
}

// ---- moving back to the preferred registrar ----

// away returns the preferred registrar while the connection is to another
// one (Config.Rebalance).
func (c *core) away() (transport.Addr, bool) {
	if c.cfg.Rebalance <= 0 || !c.up {
		return transport.Addr{}, false
	}
	pref, ok := c.set.First()
	if !ok || pref == c.addr {
		return transport.Addr{}, false
	}
	return pref, true
}

// checkEvery is the period of the checks: a quarter of Rebalance, at
// least 100 ms, ±12.5 % so that clients started together spread out.
func (c *core) checkEvery() time.Duration {
	d := max(c.cfg.Rebalance/4, 100*time.Millisecond)
	return d - d/8 + time.Duration(c.cfg.Rand.Int64N(int64(d/4)+1))
}

// rebalanceStep schedules and starts the checks while away from the
// preferred registrar, and forgets them otherwise.
func (c *core) rebalanceStep(now time.Time) {
	pref, away := c.away()
	switch {
	case !away:
		c.reb.next, c.reb.since = time.Time{}, time.Time{}
	case c.reb.probe != 0:
	case c.reb.next.IsZero():
		c.reb.next = now.Add(c.checkEvery())
	case !now.Before(c.reb.next):
		b, err := (&wire.HandleResolution{PoolHandle: c.cfg.RebalanceProbe}).AppendBinary(nil)
		if err != nil {
			c.cfg.Rebalance = 0 // a handle that cannot be encoded: no checks
			return
		}
		c.nextID++
		c.reb.probe = c.nextID
		c.out = append(c.out, effect{kind: effProbe, id: c.nextID, addr: pref, timeout: c.cfg.RequestTimeout,
			ppid: wire.PPIDASAP, data: b})
	}
}

// probed reports the end of check id: err == nil means the preferred
// registrar answered, and the check's connection is kept for a move. The
// client moves once the registrar has answered every check for the time
// drawn (SH6 with a chosen home: Handler.Up follows on the new connection,
// and requests in flight are sent again there); otherwise the connection
// is dropped.
func (c *core) probed(now time.Time, id uint64, err error) {
	if id != c.reb.probe {
		if err == nil {
			c.out = append(c.out, effect{kind: effDrop, id: id})
		}
		return
	}
	c.reb.probe = 0
	c.reb.next = now.Add(c.checkEvery())
	pref, away := c.away()
	switch {
	case err != nil:
		c.log.Debug("preferred registrar check failed", "registrar", pref, "err", err)
		c.reb.since = time.Time{}
		return
	case !away:
		c.out = append(c.out, effect{kind: effDrop, id: id})
		return
	case c.reb.since.IsZero():
		c.reb.since = now
		r := c.cfg.Rebalance
		c.reb.need = r + time.Duration(c.cfg.Rand.Int64N(int64(r/2)+1))
	}
	if now.Sub(c.reb.since) < c.reb.need {
		c.out = append(c.out, effect{kind: effDrop, id: id})
		return
	}
	c.log.Info("moving to the preferred registrar", "registrar", pref, "from", c.addr,
		"answering_for", now.Sub(c.reb.since).Round(time.Millisecond))
	c.closePrevious(now, true)
	c.prev, c.prevUntil = c.gen, now.Add(c.cfg.RequestTimeout)
	c.gen++
	c.addr = pref
	c.reb = rebalance{}
	c.out = append(c.out, effect{kind: effAdopt, id: id, gen: c.gen, addr: pref, keep: true})
	for _, r := range slices.Clone(c.pending) {
		c.transmit(now, r)
	}
	c.h.Up(now, pref)
}

// closePrevious closes the connection left open by a move once nothing is
// pending any more (the registrations at the new registrar are answered,
// so the old one is told by a Handle Update before it sees the connection
// end), after T1 at the latest, or at once when now is set.
func (c *core) closePrevious(now time.Time, force bool) {
	if c.prev == 0 || (!force && len(c.pending) > 0 && now.Before(c.prevUntil)) {
		return
	}
	c.out = append(c.out, effect{kind: effClose, gen: c.prev})
	c.prev = 0
}

// shutdown fails every pending request and abandons the hunt and the
// connection.
func (c *core) shutdown(now time.Time, err error) {
	if c.hunt != nil {
		for id := range c.hunt.active {
			c.out = append(c.out, effect{kind: effCancel, id: id})
		}
		c.hunt = nil
	}
	if c.up {
		c.out = append(c.out, effect{kind: effClose, gen: c.gen})
		c.up = false
	}
	c.closePrevious(now, true)
	if c.reb.probe != 0 {
		c.out = append(c.out, effect{kind: effCancel, id: c.reb.probe})
		c.reb.probe = 0
	}
	pending := c.pending
	c.pending = nil
	for _, r := range pending {
		r.done(now, nil, err)
	}
}
