package regclient

import (
	"errors"
	"slices"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Sim runs a client's protocol state by hand, with no goroutine, no clock
// and no I/O: the caller plays the network and passes the time. It is the
// pure step of the client, for tests and fuzz targets of the client and of
// its Handlers (the pe-agent's session). cfg.Handler receives the events
// as with a Client. A Sim is not safe for concurrent use.
type Sim struct {
	c        *core
	attempts []uint64 // dials under way, in the order they started
	probes   []uint64 // checks of the preferred registrar under way (Config.Rebalance)
	addrs    map[uint64]transport.Addr
	written  []transport.Message
}

// NewSim returns a Sim for cfg (defaults applied; Dial and Transport are
// not used).
func NewSim(cfg Config) *Sim {
	cfg = cfg.withDefaults()
	return &Sim{c: newCore(cfg, cfg.Handler, cfg.Logger), addrs: map[uint64]transport.Addr{}}
}

// Link returns the Handler's side, as Client.Link.
func (s *Sim) Link() *Link { return &Link{c: s.c} }

// Advance runs everything due at now (T1, T5, T7, the Handler's timer, a
// hunt).
func (s *Sim) Advance(now time.Time) {
	s.c.advance(now)
	s.collect()
}

// Next returns when Advance must run next (zero: only after an event).
func (s *Sim) Next() time.Time { return s.c.wake() }

// Attempts returns the registrars being dialed, in the order the dials
// started.
func (s *Sim) Attempts() []transport.Addr {
	out := make([]transport.Addr, len(s.attempts))
	for i, id := range s.attempts {
		out[i] = s.addrs[id]
	}
	return out
}

// Dialed ends dial attempt i (an index into Attempts): err == nil means
// the connection is up.
func (s *Sim) Dialed(now time.Time, i int, err error) {
	if i < 0 || i >= len(s.attempts) {
		return
	}
	id := s.attempts[i]
	if err != nil {
		s.forget(id)
	}
	s.c.dialed(now, id, err)
	s.collect()
}

// Probes returns the registrars being checked for a move back
// (Config.Rebalance), in the order the checks started.
func (s *Sim) Probes() []transport.Addr {
	out := make([]transport.Addr, len(s.probes))
	for i, id := range s.probes {
		out[i] = s.addrs[id]
	}
	return out
}

// Probed ends check i (an index into Probes): err == nil means the
// registrar answered, and its connection may become the current one.
func (s *Sim) Probed(now time.Time, i int, err error) {
	if i < 0 || i >= len(s.probes) {
		return
	}
	id := s.probes[i]
	s.probes = slices.Delete(s.probes, i, i+1)
	if err != nil {
		delete(s.addrs, id)
	}
	s.c.probed(now, id, err)
	s.collect()
}

// Receive delivers m on the current connection; stale delivers it on the
// previous one (a message still in flight from a dropped connection).
func (s *Sim) Receive(now time.Time, m wire.Message, stale bool) {
	gen := s.c.gen
	if stale {
		gen--
	}
	s.c.receive(now, gen, m)
	s.collect()
}

// Lose fails the current connection.
func (s *Sim) Lose(now time.Time) {
	s.c.lost(now, s.c.gen, errors.New("connection reset"))
	s.collect()
}

// Learn adds a registrar address, as an announce does.
func (s *Sim) Learn(now time.Time, a transport.Addr) {
	s.c.learn(now, a)
	s.collect()
}

// Connected returns the current registrar, ok false while none.
func (s *Sim) Connected() (transport.Addr, bool) { return s.c.addr, s.c.up }

// Pending returns how many requests wait.
func (s *Sim) Pending() int { return len(s.c.pending) }

// Written returns the messages written since the last call.
func (s *Sim) Written() []transport.Message {
	w := s.written
	s.written = nil
	return w
}

// Collect carries out effects the Handler caused outside Sim's methods
// (through the Link).
func (s *Sim) Collect() { s.collect() }

// Check reports a broken invariant of the client's state: bounded
// requests, learned registrars and attempts, one of connection or hunt.
func (s *Sim) Check() error {
	c := s.c
	switch {
	case len(c.pending) > c.cfg.MaxPending:
		return errors.New("more pending requests than MaxPending")
	case c.set.Learned() > c.cfg.MaxLearned:
		return errors.New("more learned registrars than MaxLearned")
	case c.up && c.hunt != nil:
		return errors.New("hunting while connected")
	case c.hunt != nil && len(c.hunt.active) > c.cfg.Parallel:
		return errors.New("more connection attempts than Parallel")
	case len(s.attempts) > c.cfg.Parallel*4:
		return errors.New("attempts pile up")
	case len(s.probes) > 1:
		return errors.New("more than one check of the preferred registrar at once")
	}
	for _, r := range c.pending {
		if r.expiries > c.cfg.MaxRetransmit {
			return errors.New("a request outlived MaxRetransmit T1 expiries")
		}
	}
	return nil
}

func (s *Sim) forget(id uint64) {
	s.attempts = slices.DeleteFunc(s.attempts, func(x uint64) bool { return x == id })
	s.probes = slices.DeleteFunc(s.probes, func(x uint64) bool { return x == id })
	delete(s.addrs, id)
}

func (s *Sim) collect() {
	for _, e := range s.c.effects() {
		switch e.kind {
		case effDial:
			s.attempts = append(s.attempts, e.id)
			s.addrs[e.id] = e.addr
		case effProbe:
			s.probes = append(s.probes, e.id)
			s.addrs[e.id] = e.addr
		case effCancel, effDrop, effAdopt:
			s.forget(e.id)
		case effWrite:
			s.written = append(s.written, transport.Message{PPID: e.ppid, Data: e.data})
		}
	}
}
