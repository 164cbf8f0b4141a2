package peagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// maxRetryInterval caps the doubling of the retry interval (RETRAN-MAX).
const maxRetryInterval = 30 * time.Second

// sessionConfig configures the registrar connection shared by elements.
type sessionConfig struct {
	Registrars      []string
	ResponseTimeout time.Duration
	ConnectTimeout  time.Duration
	RetryInterval   time.Duration
	TransportConfig *transport.Config
	Dial            func(ctx context.Context, addr string) (transport.Conn, error)
	// AnnounceGroup, if set, is the multicast group ("239.0.0.50:3863") on
	// which ASAP Server Announces are heard; AnnounceInterface names the
	// interface ("" = default); AnnounceTTL is T7.
	AnnounceGroup     string
	AnnounceInterface string
	AnnounceTTL       time.Duration
}

// sessionHooks report protocol events (metrics); nil fields are skipped.
// They are called from the session loop and must not block.
type sessionHooks struct {
	registration func(pool wire.PoolHandle, result string) // result: accepted, rejected, timeout, error
	keepAlive    func(pool wire.PoolHandle)
}

// session owns one connection to the home registrar and the protocol state
// of every element registered over it. All of that state belongs to the
// goroutine running loop; the API posts operations to it, and a reader
// goroutine per connection and a dial goroutine post events.
type session struct {
	cfg   sessionConfig
	log   *slog.Logger
	hooks sessionHooks

	ops    chan any
	events chan any
	quit   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	annRecv *transport.MulticastReceiver // nil unless announces are heard; closed by shutdown

	liveMu sync.Mutex     // guards live
	live   transport.Conn // the current connection, so that close can unblock a stuck write

	regMu   sync.Mutex // guards static, learned
	static  []string
	learned map[string]time.Time // address → expiry (T7)

	// Owned by loop.
	conn       transport.Conn
	connAddr   string
	connIdx    int // index of connAddr in the hunt list it came from
	connOK     bool
	gen        int // generation of conn and dial; stale events carry an older one
	dialing    bool
	dialCancel context.CancelFunc
	nextDial   time.Time
	backoff    time.Duration
	huntStart  int
	home       uint32
	elems      map[*Element]*elemState
}

const (
	pendNone = iota
	pendReg
	pendDereg
)

// elemState is the loop's view of one element.
type elemState struct {
	el         *Element
	pe         wire.PoolElement
	interval   time.Duration
	active     bool // wants to be registered
	registered bool
	pending    int
	deadline   time.Time // response deadline while pending
	nextReg    time.Time
	dirty      bool // policy changed while a registration was in flight
	retry      time.Duration
	lastErr    error
	errDirty   bool
	removing   bool
	done       chan error
}

type (
	opAdd    struct{ st *elemState }
	opActive struct {
		el *Element
		on bool
	}
	opPolicy struct {
		el *Element
		p  wire.Policy
	}
	opRemove struct {
		el   *Element
		done chan error
	}
	evDial struct {
		gen  int
		conn transport.Conn
		addr string
		idx  int
		err  error
	}
	evRecv struct {
		gen int
		msg wire.Message
	}
	evLost struct {
		gen int
		err error
	}
)

func newSession(cfg sessionConfig, log *slog.Logger, hooks *sessionHooks) (*session, error) {
	if cfg.ResponseTimeout <= 0 {
		cfg.ResponseTimeout = DefaultResponseTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.Dial == nil {
		tc := cfg.TransportConfig
		cfg.Dial = func(ctx context.Context, addr string) (transport.Conn, error) {
			return transport.Dial(ctx, addr, tc)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &session{
		cfg:     cfg,
		log:     log,
		ops:     make(chan any),
		events:  make(chan any),
		quit:    make(chan struct{}),
		static:  append([]string(nil), cfg.Registrars...),
		learned: map[string]time.Time{},
		backoff: cfg.RetryInterval,
		elems:   map[*Element]*elemState{},
	}
	if hooks != nil {
		s.hooks = *hooks
	}
	if err := s.startAnnounces(cfg.AnnounceGroup, cfg.AnnounceInterface, cfg.AnnounceTTL); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.loop()
	return s, nil
}

// newElement creates an inactive element on this session.
func (s *session) newElement(cfg PEConfig, onState func(State)) (*Element, error) {
	if cfg.PoolHandle == "" {
		return nil, errors.New("peagent: empty pool handle")
	}
	if cfg.Transport.Type == 0 {
		return nil, errors.New("peagent: no user transport")
	}
	iv := cfg.ReregistrationInterval
	if iv <= 0 {
		iv = DefaultReregistrationInterval
	}
	life := iv * 3 / time.Millisecond
	if life >= 0xffffffff {
		return nil, fmt.Errorf("peagent: reregistration interval %v too long", iv)
	}
	id := cfg.ID
	if id == 0 {
		id = randomID()
	}
	el := &Element{id: id, pool: cfg.PoolHandle, sess: s, changes: make(chan struct{}, 1), onState: onState}
	st := &elemState{
		el: el,
		pe: wire.PoolElement{
			ID: id, RegistrationLife: uint32(life), User: cfg.Transport, Policy: cfg.Policy,
		},
		interval: iv,
		retry:    s.cfg.RetryInterval,
	}
	if err := s.post(opAdd{st}); err != nil {
		return nil, err
	}
	return el, nil
}

// post hands an operation to the loop.
func (s *session) post(op any) error {
	select {
	case s.ops <- op:
		return nil
	case <-s.quit:
		return ErrClosed
	}
}

// deliver hands an event to the loop; false once the session is closing.
func (s *session) deliver(ev any) bool {
	select {
	case s.events <- ev:
		return true
	case <-s.quit:
		return false
	}
}

// close stops the loop and waits for every goroutine of the session. It
// does not deregister: the registrar removes the elements when the
// connection closes.
func (s *session) close() {
	s.once.Do(func() {
		close(s.quit)
		s.liveMu.Lock()
		if s.live != nil {
			_ = s.live.Close() // a write blocked on a registrar that does not read returns
		}
		s.liveMu.Unlock()
	})
	s.wg.Wait()
}

func (s *session) setLive(c transport.Conn) {
	s.liveMu.Lock()
	s.live = c
	s.liveMu.Unlock()
}

// setRegistrars replaces the static list; it applies from the next hunt.
func (s *session) setRegistrars(list []string) {
	s.regMu.Lock()
	s.static = append([]string(nil), list...)
	s.regMu.Unlock()
}

// maxLearned bounds the registrar addresses learned from announces (as
// many as pucache keeps). Static registrars are always tried first.
const maxLearned = 64

// learn adds (or refreshes) a registrar address heard in an announce; it
// is forgotten after ttl (T7). While maxLearned unexpired addresses are
// known, new ones are ignored.
func (s *session) learn(addr string, ttl time.Duration) {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	now := time.Now()
	if _, known := s.learned[addr]; !known && len(s.learned) >= maxLearned {
		for a, exp := range s.learned {
			if now.After(exp) {
				delete(s.learned, a)
			}
		}
		if len(s.learned) >= maxLearned {
			return // announces are unauthenticated: a flood must not grow the list
		}
	}
	s.learned[addr] = now.Add(ttl)
}

// huntList is the static list followed by the unexpired learned addresses.
func (s *session) huntList(now time.Time) []string {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	list := append([]string(nil), s.static...)
	seen := map[string]bool{}
	for _, a := range list {
		seen[a] = true
	}
	for a, exp := range s.learned {
		if now.After(exp) {
			delete(s.learned, a)
			continue
		}
		if !seen[a] {
			list = append(list, a)
		}
	}
	return list
}

func (s *session) loop() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		wake := s.step(now)
		s.publishAll()
		if wake.IsZero() {
			timer.Reset(time.Hour)
		} else {
			timer.Reset(wake.Sub(now))
		}
		select {
		case <-s.quit:
			s.shutdown()
			return
		case op := <-s.ops:
			s.handleOp(op, time.Now())
		case ev := <-s.events:
			s.handleEvent(ev, time.Now())
		case <-timer.C:
		}
	}
}

// step performs every action that is due and returns when to run again
// (zero: only on the next operation or event).
func (s *session) step(now time.Time) time.Time {
	var wake time.Time
	at := func(t time.Time) {
		if wake.IsZero() || t.Before(wake) {
			wake = t
		}
	}
	if s.conn == nil {
		need := false
		for _, st := range s.elems {
			if st.removing {
				s.finishRemove(st, nil) // nothing is registered without a connection
				continue
			}
			need = need || st.active
		}
		if need && !s.dialing {
			if now.Before(s.nextDial) {
				at(s.nextDial)
			} else {
				s.startDial(now)
			}
		}
		return wake
	}
	for _, st := range s.elems {
		if s.conn == nil {
			return now // a send failed; run again to hunt
		}
		if st.pending != pendNone {
			if now.Before(st.deadline) {
				at(st.deadline)
				continue
			}
			s.responseTimeout(st, now)
			return now
		}
		switch {
		case st.removing:
			if st.registered {
				s.send(st, pendDereg, now)
				at(st.deadline)
			} else {
				s.finishRemove(st, nil)
			}
		case st.active:
			if now.Before(st.nextReg) {
				at(st.nextReg)
			} else {
				s.send(st, pendReg, now)
				at(st.deadline)
			}
		case st.registered:
			s.send(st, pendDereg, now)
			at(st.deadline)
		}
	}
	return wake
}

// send sends a registration or deregistration for st and starts T2/T3.
func (s *session) send(st *elemState, kind int, now time.Time) {
	var m wire.Message
	if kind == pendReg {
		pe := st.pe
		pe.HomeServer = s.home
		m = &wire.Registration{PoolHandle: st.el.pool, Element: pe}
	} else {
		m = &wire.Deregistration{PoolHandle: st.el.pool, ID: st.el.id}
	}
	st.pending, st.deadline = kind, now.Add(s.cfg.ResponseTimeout)
	if err := s.write(m); err != nil {
		s.dropConn(fmt.Errorf("send to registrar %s: %w", s.connAddr, err), now)
	}
}

func (s *session) write(m wire.Message) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	return s.conn.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b})
}

// responseTimeout handles T2/T3 expiry: the registrar does not answer, so
// the element set moves to another registrar.
func (s *session) responseTimeout(st *elemState, now time.Time) {
	s.log.Warn("registrar did not answer", "registrar", s.connAddr, "pool", st.el.pool,
		"pe", fmt.Sprintf("0x%08x", st.el.id), "timeout", s.cfg.ResponseTimeout)
	if st.pending == pendReg && s.hooks.registration != nil {
		s.hooks.registration(st.el.pool, "timeout")
	}
	if st.removing {
		s.finishRemove(st, ErrTimeout)
	}
	s.dropConn(fmt.Errorf("%w (%s)", ErrTimeout, s.connAddr), now)
}

// dropConn closes the home connection: every element is unregistered and
// those that want to be registered will register at the next registrar.
func (s *session) dropConn(cause error, now time.Time) {
	if s.conn == nil {
		return
	}
	s.log.Info("registrar connection closed", "registrar", s.connAddr, "err", cause)
	_ = s.conn.Close()
	s.setLive(nil)
	s.conn, s.connAddr, s.home = nil, "", 0
	s.gen++
	s.huntStart = s.connIdx + 1 // try the next registrar first
	if s.connOK {
		s.nextDial, s.backoff = now, s.cfg.RetryInterval
	} else {
		s.nextDial = now.Add(s.backoff)
		s.backoff = min(2*s.backoff, maxRetryInterval)
	}
	for _, st := range s.elems {
		st.registered, st.pending, st.dirty = false, pendNone, false
		if st.removing {
			s.finishRemove(st, nil) // the registrar drops elements of a closed connection
			continue
		}
		st.nextReg = now
		if st.active {
			s.setErr(st, cause)
		}
	}
}

func (s *session) startDial(now time.Time) {
	list := s.huntList(now)
	if len(list) == 0 {
		s.nextDial = now.Add(s.backoff)
		return
	}
	start := s.huntStart % len(list)
	order := make([]int, len(list))
	for i := range order {
		order[i] = (start + i) % len(list)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.gen++
	s.dialing, s.dialCancel = true, cancel
	s.wg.Add(1)
	go s.hunt(ctx, s.gen, list, order)
}

// hunt tries the registrars one after another and reports the first
// connection (or every failure) to the loop.
func (s *session) hunt(ctx context.Context, gen int, list []string, order []int) {
	defer s.wg.Done()
	var errs []error
	for _, i := range order {
		dctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
		c, err := s.cfg.Dial(dctx, list[i])
		cancel()
		if err == nil {
			if !s.deliver(evDial{gen: gen, conn: c, addr: list[i], idx: i}) {
				_ = c.Close()
			}
			return
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			return
		}
	}
	s.deliver(evDial{gen: gen, err: fmt.Errorf("server hunt failed: %w", errors.Join(errs...))})
}

// read reads one connection until it fails.
func (s *session) read(c transport.Conn, gen int, addr string) {
	defer s.wg.Done()
	log := s.log.With("registrar", addr)
	for {
		m, err := c.ReadMessage()
		if err != nil {
			s.deliver(evLost{gen, err})
			return
		}
		if m.PPID != wire.PPIDASAP && m.PPID != 0 {
			continue
		}
		msg, err := wire.ParseASAP(m.Data)
		if err != nil {
			log.Warn("undecodable message from registrar", "err", err)
			continue
		}
		if !s.deliver(evRecv{gen, msg}) {
			return
		}
	}
}

func (s *session) handleOp(op any, now time.Time) {
	switch op := op.(type) {
	case opAdd:
		s.elems[op.st.el] = op.st
	case opActive:
		st := s.elems[op.el]
		if st == nil || st.removing {
			return
		}
		if op.on && !st.active {
			st.nextReg = now
		}
		st.active = op.on
	case opPolicy:
		st := s.elems[op.el]
		if st == nil || policyEqual(st.pe.Policy, op.p) {
			return
		}
		st.pe.Policy = op.p
		if st.pending == pendReg {
			st.dirty = true
		} else if st.registered {
			st.nextReg = now
		}
	case opRemove:
		st := s.elems[op.el]
		if st == nil {
			op.done <- nil
			return
		}
		st.removing, st.active, st.done = true, false, op.done
	}
}

func policyEqual(a, b wire.Policy) bool {
	if a.Type != b.Type || a.Weight != b.Weight || a.Priority != b.Priority || a.Load != b.Load ||
		a.LoadDegradation != b.LoadDegradation || a.LoadDPF != b.LoadDPF || a.WeightDPF != b.WeightDPF ||
		a.Distance != b.Distance || len(a.Raw) != len(b.Raw) {
		return false
	}
	for i := range a.Raw {
		if a.Raw[i] != b.Raw[i] {
			return false
		}
	}
	return true
}

func (s *session) handleEvent(ev any, now time.Time) {
	switch ev := ev.(type) {
	case evDial:
		if ev.gen != s.gen {
			if ev.conn != nil {
				_ = ev.conn.Close()
			}
			return
		}
		s.dialing, s.dialCancel = false, nil
		if ev.err != nil {
			s.log.Warn("no registrar reachable", "err", ev.err, "retry_in", s.backoff)
			s.nextDial, s.huntStart = now.Add(s.backoff), 0
			s.backoff = min(2*s.backoff, maxRetryInterval)
			for _, st := range s.elems {
				if st.active {
					s.setErr(st, ev.err)
				}
			}
			return
		}
		s.log.Info("connected to registrar", "registrar", ev.addr)
		s.conn, s.connAddr, s.connIdx, s.connOK = ev.conn, ev.addr, ev.idx, false
		s.setLive(ev.conn)
		for _, st := range s.elems {
			st.nextReg = now
		}
		s.wg.Add(1)
		go s.read(ev.conn, s.gen, ev.addr)
	case evLost:
		if ev.gen == s.gen {
			s.dropConn(fmt.Errorf("registrar connection lost: %w", ev.err), now)
		}
	case evRecv:
		if ev.gen == s.gen && s.conn != nil {
			s.receive(ev.msg, now)
		}
	}
}

func (s *session) find(pool wire.PoolHandle, id uint32) *elemState {
	for _, st := range s.elems {
		if st.el.id == id && st.el.pool == pool {
			return st
		}
	}
	return nil
}

func (s *session) receive(msg wire.Message, now time.Time) {
	switch m := msg.(type) {
	case *wire.RegistrationResponse:
		st := s.find(m.PoolHandle, m.ID)
		if st == nil || st.pending != pendReg {
			s.log.Debug("unexpected registration response", "pool", m.PoolHandle, "pe", m.ID)
			return
		}
		st.pending = pendNone
		if m.Reject {
			var causes []wire.ErrorCause
			if m.Error != nil {
				causes = m.Error.Causes
			}
			err := &RejectedError{Causes: causes}
			s.log.Warn("registration rejected", "registrar", s.connAddr, "pool", st.el.pool, "err", err)
			st.registered = false
			st.nextReg = now.Add(st.retry)
			st.retry = min(2*st.retry, maxRetryInterval)
			s.setErr(st, err)
			if s.hooks.registration != nil {
				s.hooks.registration(st.el.pool, "rejected")
			}
			return
		}
		if !st.registered {
			s.log.Info("registered", "registrar", s.connAddr, "pool", st.el.pool, "pe", fmt.Sprintf("0x%08x", st.el.id))
		}
		st.registered, s.connOK = true, true
		st.retry = s.cfg.RetryInterval
		st.nextReg = now.Add(st.interval)
		if st.dirty {
			st.dirty, st.nextReg = false, now
		}
		s.setErr(st, nil)
		if s.hooks.registration != nil {
			s.hooks.registration(st.el.pool, "accepted")
		}
	case *wire.DeregistrationResponse:
		st := s.find(m.PoolHandle, m.ID)
		if st == nil || st.pending != pendDereg {
			return
		}
		st.pending, st.registered = pendNone, false
		var err error
		if m.Error != nil {
			err = fmt.Errorf("deregistration refused: %d causes", len(m.Error.Causes))
			if len(m.Error.Causes) > 0 {
				err = fmt.Errorf("deregistration refused: cause 0x%04x", uint16(m.Error.Causes[0].Code))
			}
		}
		s.log.Info("deregistered", "registrar", s.connAddr, "pool", st.el.pool, "pe", fmt.Sprintf("0x%08x", st.el.id), "err", err)
		if st.removing {
			s.finishRemove(st, err)
		}
	case *wire.EndpointKeepAlive:
		if m.ServerID != 0 && m.ServerID != s.home {
			if m.Home && s.home != 0 {
				s.log.Info("adopting new home registrar", "old", fmt.Sprintf("0x%08x", s.home), "new", fmt.Sprintf("0x%08x", m.ServerID))
			}
			if m.Home || s.home == 0 {
				s.home = m.ServerID
			}
		}
		for _, st := range s.elems {
			if st.el.pool != m.PoolHandle || (m.HasID && st.el.id != m.ID) {
				continue
			}
			if !st.registered && st.pending != pendReg {
				continue
			}
			if err := s.write(&wire.EndpointKeepAliveAck{PoolHandle: st.el.pool, ID: st.el.id}); err != nil {
				s.dropConn(fmt.Errorf("send keep-alive ack: %w", err), now)
				return
			}
			if s.hooks.keepAlive != nil {
				s.hooks.keepAlive(st.el.pool)
			}
		}
	case *wire.ASAPError:
		err := fmt.Errorf("registrar error: %d causes", len(m.Error.Causes))
		if len(m.Error.Causes) > 0 {
			err = fmt.Errorf("registrar error: cause 0x%04x", uint16(m.Error.Causes[0].Code))
		}
		s.log.Warn("registrar sent an error", "registrar", s.connAddr, "err", err)
		for _, st := range s.elems {
			if st.pending == pendReg {
				st.pending, st.registered = pendNone, false
				st.nextReg = now.Add(st.retry)
				st.retry = min(2*st.retry, maxRetryInterval)
				s.setErr(st, err)
				if s.hooks.registration != nil {
					s.hooks.registration(st.el.pool, "error")
				}
			}
		}
	}
}

func (s *session) setErr(st *elemState, err error) {
	if st.lastErr == nil && err == nil {
		return
	}
	st.lastErr, st.errDirty = err, true
}

func (s *session) finishRemove(st *elemState, err error) {
	delete(s.elems, st.el)
	st.registered = false
	s.publish(st)
	if st.done != nil {
		st.done <- err
	}
}

func (s *session) publishAll() {
	for _, st := range s.elems {
		s.publish(st)
	}
}

func (s *session) publish(st *elemState) {
	reg := st.registered && s.conn != nil
	home, addr := s.home, s.connAddr
	errChanged := st.errDirty
	st.errDirty = false
	lastErr := st.lastErr
	st.el.setState(errChanged, func(v *State) {
		v.Registered, v.Home, v.HomeAddr = reg, home, addr
		v.LastErr = lastErr
	})
}

func (s *session) shutdown() {
	if s.annRecv != nil {
		_ = s.annRecv.Close()
	}
	if s.dialCancel != nil {
		s.dialCancel()
	}
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	for _, st := range s.elems {
		st.registered = false
		if st.done != nil {
			st.done <- ErrClosed
			st.done = nil
		}
		s.publish(st)
	}
}
