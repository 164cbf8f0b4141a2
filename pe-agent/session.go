package peagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rserpool/rserpool/regclient"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// maxRetryInterval caps the doubling of the retry interval (RETRAN-MAX).
const maxRetryInterval = regclient.DefaultRetranMax

// huntStagger gives each registrar of a hunt this long alone before the
// next is tried too (regclient.Config.HuntStagger): a pool element registers
// at the first registrar of its list when that one answers, rather than at
// whichever answers fastest, so that it does not have to move there later
// (rebalancing). A refused or failed attempt is replaced at once.
const huntStagger = 250 * time.Millisecond

// sessionConfig configures the registrar connection shared by elements.
type sessionConfig struct {
	Registrars      []transport.Addr
	ResponseTimeout time.Duration // T2/T3 = the client's T1
	ConnectTimeout  time.Duration // initial T5
	RetryInterval   time.Duration
	TransportConfig *transport.Config
	Dial            func(ctx context.Context, addr transport.Addr) (transport.Conn, error)
	// AnnounceGroup, if set, is the multicast group ("239.0.0.50:3863") on
	// which ASAP Server Announces are heard; AnnounceInterface names the
	// interface ("" = default); AnnounceTTL is T7.
	AnnounceGroup     string
	AnnounceInterface string
	AnnounceTTL       time.Duration
	// RebalanceAfter is regclient.Config.Rebalance (zero or negative: off),
	// RebalanceProbe the pool its checks resolve.
	RebalanceAfter time.Duration
	RebalanceProbe wire.PoolHandle
}

// sessionHooks report protocol events (metrics); nil fields are skipped.
// They are called from the session's goroutine and must not block.
type sessionHooks struct {
	registration func(pool wire.PoolHandle, result string) // result: accepted, rejected, timeout, error
	keepAlive    func(pool wire.PoolHandle)
}

// session is the PE side of ASAP over one registrar client: the state of
// every element registered through it. It is the client's Handler, so all
// of that state belongs to the client's one goroutine; the API runs
// operations there with Client.Do.
type session struct {
	cfg   sessionConfig
	log   *slog.Logger
	hooks sessionHooks
	rc    *regclient.Client
	link  *regclient.Link

	startOnce sync.Once
	startErr  error

	// Owned by the client's goroutine.
	up       bool
	homeAddr transport.Addr
	home     uint32 // home registrar's server ID, from its keep-alives
	elems    map[*Element]*elemState
}

const (
	pendNone = iota
	pendReg
	pendDereg
)

// elemState is the session's view of one element.
type elemState struct {
	el         *Element
	pe         wire.PoolElement
	interval   time.Duration
	active     bool // wants to be registered
	registered bool
	pending    int
	req        *regclient.Pending
	nextReg    time.Time
	dirty      bool // policy changed while a registration was in flight
	retry      time.Duration
	lastErr    error
	errDirty   bool
	removing   bool
	removed    bool
	done       chan error
	// The home registrar's keep-alives for this element on the current
	// connection: when the last came (or the last registration was
	// accepted, which starts a new keep-alive cycle), and the time between
	// it and the keep-alive after it: the registrar's keep-alive period.
	lastKA time.Time
	kaGap  time.Duration
}

// silentAfter is how long a registered element waits beyond two of its
// home's keep-alive periods before it takes the registrar's silence for a
// failure it cannot see (a host that drops every packet sends no reset):
// it re-registers at once, which moves it to another registrar after T2 if
// the home does not answer.
const silentAfter = time.Second

// silenceDeadline returns when st's home registrar counts as silent, or
// zero while st has not seen a keep-alive on this connection yet (the
// period is unknown; guessing it could re-register for ever at a registrar
// whose period is longer, since each registration restarts its cycle).
func (st *elemState) silenceDeadline() time.Time {
	if st.kaGap <= 0 || !st.registered {
		return time.Time{}
	}
	return st.lastKA.Add(2*st.kaGap + silentAfter)
}

func newSession(cfg sessionConfig, log *slog.Logger, hooks *sessionHooks) *session {
	if cfg.ResponseTimeout <= 0 {
		cfg.ResponseTimeout = DefaultResponseTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.AnnounceTTL <= 0 {
		cfg.AnnounceTTL = DefaultAnnounceTTL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &session{cfg: cfg, log: log, elems: map[*Element]*elemState{}}
	if hooks != nil {
		s.hooks = *hooks
	}
	s.rc = regclient.New(s.clientConfig())
	s.link = s.rc.Link()
	return s
}

// clientConfig is the registrar client's configuration, with the session
// as its Handler.
func (s *session) clientConfig() regclient.Config {
	cfg := s.cfg
	return regclient.Config{
		Registrars:        cfg.Registrars,
		Transport:         cfg.TransportConfig,
		Dial:              cfg.Dial,
		ConnectTimeout:    cfg.ConnectTimeout,
		RetryInterval:     cfg.RetryInterval,
		RetranMax:         maxRetryInterval,
		RequestTimeout:    cfg.ResponseTimeout,
		AnnounceLifetime:  cfg.AnnounceTTL,
		AnnounceGroup:     cfg.AnnounceGroup,
		AnnounceInterface: cfg.AnnounceInterface,
		HuntStagger:       huntStagger,
		Rebalance:         max(cfg.RebalanceAfter, 0),
		RebalanceProbe:    cfg.RebalanceProbe,
		Handler:           s,
		Logger:            s.log,
	}
}

// start starts the registrar client (once; later calls do nothing).
func (s *session) start() error {
	s.startOnce.Do(func() { s.startErr = s.rc.Start() })
	if s.startErr != nil && errors.Is(s.startErr, regclient.ErrClosed) {
		return ErrClosed
	}
	return s.startErr
}

// close stops the client and waits for its goroutines. It does not
// deregister: the registrar removes the elements when the connection
// closes.
func (s *session) close() {
	s.rc.Close()
	for _, st := range s.elems { // the client's goroutine has ended
		st.registered = false
		if st.done != nil {
			st.done <- ErrClosed
			st.done = nil
		}
		s.publish(st)
	}
}

// do runs f on the session's goroutine, then performs what is due.
func (s *session) do(f func(now time.Time)) error {
	err := s.rc.Do(func(now time.Time) {
		f(now)
		s.step(now)
		s.publishAll()
	})
	if errors.Is(err, regclient.ErrClosed) {
		return ErrClosed
	}
	return err
}

// newElement creates an inactive element on this session.
func (s *session) newElement(cfg PEConfig, onState func(State)) (*Element, error) {
	el, st, err := s.newElementState(cfg, onState)
	if err != nil {
		return nil, err
	}
	if err := s.do(func(time.Time) { s.elems[el] = st }); err != nil {
		return nil, err
	}
	return el, nil
}

// newElementState returns an element and its state (not yet added).
func (s *session) newElementState(cfg PEConfig, onState func(State)) (*Element, *elemState, error) {
	if cfg.PoolHandle == "" {
		return nil, nil, errors.New("peagent: empty pool handle")
	}
	if cfg.Transport.Type == 0 {
		return nil, nil, errors.New("peagent: no user transport")
	}
	iv := cfg.ReregistrationInterval
	if iv <= 0 {
		iv = DefaultReregistrationInterval
	}
	life := iv * 3 / time.Millisecond
	if life >= 0xffffffff {
		return nil, nil, fmt.Errorf("peagent: reregistration interval %v too long", iv)
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
	return el, st, nil
}

// setRegistrars replaces the static list.
func (s *session) setRegistrars(list []transport.Addr) { s.rc.SetRegistrars(list) }

// learn adds a registrar address, as an announce would.
func (s *session) learn(addr transport.Addr) { s.rc.Learn(addr) }

// setActive switches registration of el on or off.
func (s *session) setActive(el *Element, on bool) error {
	return s.do(func(now time.Time) { s.opActive(now, el, on) })
}

// setPolicy changes el's policy values; a registered element re-registers.
func (s *session) setPolicy(el *Element, p wire.Policy) error {
	return s.do(func(now time.Time) { s.opPolicy(now, el, p) })
}

// remove deregisters el (when registered) and forgets it; done receives
// the deregistration's result.
func (s *session) remove(el *Element, done chan error) error {
	return s.do(func(time.Time) { s.opRemove(el, done) })
}

// The operations, on the session's goroutine (step follows each).

func (s *session) opActive(now time.Time, el *Element, on bool) {
	st := s.elems[el]
	if st == nil || st.removing {
		return
	}
	if on && !st.active {
		st.nextReg = now
	}
	st.active = on
}

func (s *session) opPolicy(now time.Time, el *Element, p wire.Policy) {
	st := s.elems[el]
	if st == nil || policyEqual(st.pe.Policy, p) {
		return
	}
	st.pe.Policy = p
	if st.pending == pendReg {
		st.dirty = true
	} else if st.registered {
		st.nextReg = now
	}
}

func (s *session) opRemove(el *Element, done chan error) {
	st := s.elems[el]
	if st == nil {
		done <- nil
		return
	}
	st.removing, st.active, st.done = true, false, done
}

// step sends what is due and asks for a Tick at the next deadline.
func (s *session) step(now time.Time) {
	want := false
	var wake time.Time
	for _, st := range s.elems {
		if st.removing {
			switch {
			case st.pending != pendNone:
				// Wait for the answer in flight: a registration the
				// registrar accepts must be deregistered, not forgotten.
				want = true
			case !st.registered || !s.up:
				s.finishRemove(st, nil) // nothing is registered without a connection
			default:
				s.send(st, pendDereg, now)
				want = true
			}
			continue
		}
		want = want || st.active || st.registered
		if st.pending != pendNone || !s.up {
			continue
		}
		if d := st.silenceDeadline(); st.active && !d.IsZero() && !now.Before(d) {
			s.log.Warn("home registrar sent no keep-alive for two periods; re-registering", "registrar", s.homeAddr,
				"pool", st.el.pool, "pe", peID(st.el.id), "period", st.kaGap.Round(time.Millisecond))
			st.nextReg, st.lastKA, st.kaGap = now, time.Time{}, 0
		}
		switch {
		case st.active:
			next := st.nextReg
			if d := st.silenceDeadline(); !d.IsZero() && d.Before(next) {
				next = d
			}
			if now.Before(st.nextReg) {
				if wake.IsZero() || next.Before(wake) {
					wake = next
				}
			} else {
				s.send(st, pendReg, now)
			}
		case st.registered:
			s.send(st, pendDereg, now)
		}
	}
	s.link.Want(want)
	s.link.WakeAt(wake)
}

// send sends a registration or deregistration for st; the client times
// it out (T2/T3 = its T1) and re-sends it at another registrar.
func (s *session) send(st *elemState, kind int, now time.Time) {
	var m wire.Message
	if kind == pendReg {
		pe := st.pe
		pe.HomeServer = s.home
		m = &wire.Registration{PoolHandle: st.el.pool, Element: pe}
	} else {
		m = &wire.Deregistration{PoolHandle: st.el.pool, ID: st.el.id}
	}
	st.pending = kind
	st.req = s.link.Request(now, m, func(now time.Time, resp wire.Message, err error) {
		st.req = nil
		if st.removed || errors.Is(err, regclient.ErrCancelled) || errors.Is(err, regclient.ErrClosed) {
			st.pending = pendNone
			return
		}
		if kind == pendReg {
			s.registered(st, now, resp, err)
		} else {
			s.deregistered(st, resp, err)
		}
		s.step(now)
		s.publishAll()
	})
}

// registered handles the answer (or failure) of a registration.
func (s *session) registered(st *elemState, now time.Time, resp wire.Message, err error) {
	st.pending = pendNone
	var rr *wire.RegistrationResponse
	if err == nil {
		rr, _ = resp.(*wire.RegistrationResponse)
	}
	switch {
	case err != nil && errors.Is(err, regclient.ErrCancelled), err != nil && errors.Is(err, regclient.ErrClosed):
		return
	case err != nil:
		result := "error"
		if errors.Is(err, regclient.ErrTimeout) {
			result, err = "timeout", fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		s.log.Warn("registration failed", "registrar", s.homeAddr, "pool", st.el.pool, "pe", peID(st.el.id), "err", err)
		s.retryLater(st, now, err)
		s.hook(st, result)
	case rr == nil:
		s.retryLater(st, now, fmt.Errorf("registrar answered a registration with %T", resp))
		s.hook(st, "error")
	case rr.Reject:
		var causes []wire.ErrorCause
		if rr.Error != nil {
			causes = rr.Error.Causes
		}
		err := &RejectedError{Causes: causes}
		s.log.Warn("registration rejected", "registrar", s.homeAddr, "pool", st.el.pool, "err", err)
		s.retryLater(st, now, err)
		s.hook(st, "rejected")
	default:
		if !st.registered {
			s.log.Info("registered", "registrar", s.homeAddr, "pool", st.el.pool, "pe", peID(st.el.id))
		}
		st.registered = s.up
		st.lastKA = now // a registration restarts the registrar's keep-alive cycle
		st.retry = s.cfg.RetryInterval
		st.nextReg = now.Add(st.interval)
		if st.dirty {
			st.dirty, st.nextReg = false, now
		}
		s.setErr(st, nil)
		s.hook(st, "accepted")
	}
}

// retryLater records a failed registration; the next attempt waits for
// the element's retry interval, which doubles up to 30 s.
func (s *session) retryLater(st *elemState, now time.Time, err error) {
	st.registered = false
	st.nextReg = now.Add(st.retry)
	st.retry = min(2*st.retry, maxRetryInterval)
	s.setErr(st, err)
}

func (s *session) hook(st *elemState, result string) {
	if s.hooks.registration != nil {
		s.hooks.registration(st.el.pool, result)
	}
}

// deregistered handles the answer (or failure) of a deregistration.
func (s *session) deregistered(st *elemState, resp wire.Message, err error) {
	st.pending = pendNone
	if errors.Is(err, regclient.ErrCancelled) || errors.Is(err, regclient.ErrClosed) {
		return
	}
	st.registered = false
	switch {
	case errors.Is(err, regclient.ErrTimeout):
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
	case err == nil:
		if d, ok := resp.(*wire.DeregistrationResponse); ok && d.Error != nil {
			err = fmt.Errorf("deregistration refused: %d causes", len(d.Error.Causes))
			if len(d.Error.Causes) > 0 {
				err = fmt.Errorf("deregistration refused: cause 0x%04x", uint16(d.Error.Causes[0].Code))
			}
		}
	}
	s.log.Info("deregistered", "registrar", s.homeAddr, "pool", st.el.pool, "pe", peID(st.el.id), "err", err)
	if st.removing {
		s.finishRemove(st, err)
	}
}

// ---- regclient.Handler ----

// Up: a registrar connection is up; every active element registers there.
func (s *session) Up(now time.Time, addr transport.Addr) {
	s.up, s.homeAddr, s.home = true, addr, 0
	for _, st := range s.elems {
		st.nextReg, st.lastKA, st.kaGap = now, time.Time{}, 0
	}
	s.step(now)
	s.publishAll()
}

// Down: the connection is gone, and with it every registration (the
// registrar drops the elements of a closed connection). Requests in
// flight are re-sent on the next connection by the client.
func (s *session) Down(now time.Time, err error) {
	timedOut := errors.Is(err, regclient.ErrTimeout)
	s.up, s.homeAddr, s.home = false, transport.Addr{}, 0
	for _, st := range s.elems {
		st.registered = false
		if st.pending == pendReg && timedOut {
			s.hook(st, "timeout")
		}
		if st.removing {
			st.req.Cancel(now)
			rerr := error(nil)
			if timedOut {
				rerr = fmt.Errorf("%w: %w", ErrTimeout, err)
			}
			s.finishRemove(st, rerr)
			continue
		}
		st.nextReg = now
		if st.active {
			s.setErr(st, err)
		}
	}
	s.step(now)
	s.publishAll()
}

// HuntFailed: no registrar could be reached; the client tries again after
// its retry interval.
func (s *session) HuntFailed(now time.Time, err error) {
	for _, st := range s.elems {
		if st.active {
			s.setErr(st, err)
		}
	}
	s.step(now)
	s.publishAll()
}

// Tick: a re-registration is due.
func (s *session) Tick(now time.Time) time.Time {
	s.step(now)
	s.publishAll()
	return time.Time{}
}

// Message handles what the registrar sends unasked: Endpoint Keep-Alives
// (answered with one Ack per matching registered element, RFC 5352 §3.4
// KA1-KA2; H=1 moves the home registrar, KA2.4) and error messages.
func (s *session) Message(now time.Time, msg wire.Message) {
	switch m := msg.(type) {
	case *wire.EndpointKeepAlive:
		s.keepAlive(now, m)
		s.step(now) // the silence deadline moved
	case *wire.ASAPError:
		err := fmt.Errorf("registrar error: %d causes", len(m.Error.Causes))
		if len(m.Error.Causes) > 0 {
			err = fmt.Errorf("registrar error: cause 0x%04x", uint16(m.Error.Causes[0].Code))
		}
		s.log.Warn("registrar sent an error", "registrar", s.homeAddr, "err", err)
	default:
		s.log.Debug("unexpected message from registrar", "registrar", s.homeAddr, "type", fmt.Sprintf("%T", msg))
	}
	s.publishAll()
}

func (s *session) keepAlive(now time.Time, m *wire.EndpointKeepAlive) {
	if m.ServerID != 0 && m.ServerID != s.home {
		if m.Home && s.home != 0 {
			s.log.Info("adopting new home registrar", "old", peID(s.home), "new", peID(m.ServerID))
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
		if !st.lastKA.IsZero() {
			st.kaGap = now.Sub(st.lastKA)
		}
		st.lastKA = now
		if err := s.link.Send(&wire.EndpointKeepAliveAck{PoolHandle: st.el.pool, ID: st.el.id}); err != nil {
			return
		}
		if s.hooks.keepAlive != nil {
			s.hooks.keepAlive(st.el.pool)
		}
	}
}

// ---- state ----

func peID(id uint32) string { return fmt.Sprintf("0x%08x", id) }

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

func (s *session) setErr(st *elemState, err error) {
	if st.lastErr == nil && err == nil {
		return
	}
	st.lastErr, st.errDirty = err, true
}

func (s *session) finishRemove(st *elemState, err error) {
	delete(s.elems, st.el)
	st.removed, st.registered = true, false
	s.publish(st)
	if st.done != nil {
		st.done <- err
		st.done = nil
	}
}

func (s *session) publishAll() {
	for _, st := range s.elems {
		s.publish(st)
	}
}

func (s *session) publish(st *elemState) {
	reg := st.registered && s.up
	home, addr := s.home, s.homeAddr
	errChanged := st.errDirty
	st.errDirty = false
	lastErr := st.lastErr
	st.el.setState(errChanged, func(v *State) {
		v.Registered, v.Home, v.HomeAddr = reg, home, addr
		v.LastErr = lastErr
	})
}
