package peagent

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// PEConfig configures one pool element of the PE library.
type PEConfig struct {
	// Registrars is the static registrar list, tried in order during a
	// server hunt (then addresses given to LearnRegistrar). Required.
	Registrars []transport.Addr
	// PoolHandle is the pool to join. Required.
	PoolHandle wire.PoolHandle
	// Transport is the user transport: where pool users reach the server
	// (type, addresses, port, Transport Use). Required.
	Transport wire.Transport
	// Policy is the selection policy and this element's values.
	Policy wire.Policy
	// ID is the PE identifier; zero means a random non-zero one.
	ID uint32
	// ReregistrationInterval is T4; Registration Life is 3 × this in
	// milliseconds. Zero means 30 s.
	ReregistrationInterval time.Duration
	// ResponseTimeout is T2/T3: the registrar must answer a registration or
	// deregistration within it, else the element hunts for another
	// registrar. Zero means 3 s.
	ResponseTimeout time.Duration
	// ConnectTimeout bounds one connection attempt. Zero means 5 s.
	ConnectTimeout time.Duration
	// RetryInterval is the pause after a failed hunt round or a rejection;
	// it doubles up to 30 s. Zero means 2 s.
	RetryInterval time.Duration
	// TransportConfig is passed to transport.Dial (TLS, heartbeats); nil
	// means defaults.
	TransportConfig *transport.Config
	// Dial replaces transport.Dial (for example to add a source address);
	// nil means transport.Dial.
	Dial func(ctx context.Context, addr transport.Addr) (transport.Conn, error)
	// AnnounceGroup, if set, makes the element listen for ASAP Server
	// Announces on this multicast group ("239.0.0.50:3863") and add the
	// announced registrars after the static list. Empty means off.
	AnnounceGroup string
	// AnnounceInterface is the interface for AnnounceGroup; "" = default.
	AnnounceInterface string
	// AnnounceTTL is T7: an announced address is forgotten when not heard
	// for this long. Zero means 5 s.
	AnnounceTTL time.Duration
	// RebalanceAfter: while connected to another registrar than the first
	// of Registrars, the element moves back to the first once it has
	// answered checks for this long (plus up to half of it at random); see
	// AgentConfig.RebalanceAfter. Zero means 30 s; negative means never.
	RebalanceAfter time.Duration
}

// LearnRegistrar adds a registrar address to the hunt list (after the
// static list) for T7 (AnnounceTTL), as an announce would.
func (e *Element) LearnRegistrar(addr transport.Addr) { e.sess.learn(addr) }

// Options carries the dependencies of an Element or Agent.
type Options struct {
	// Logger receives events; nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics (Agent only); nil means none.
	Registerer prometheus.Registerer
}

// State is a snapshot of an element's registration.
type State struct {
	// Registered is true while the home registrar has accepted the
	// element's latest registration and the connection to it is up.
	Registered bool
	// Home is the home registrar's server ID, learned from its keep-alives;
	// zero until the first one arrives.
	Home uint32
	// HomeAddr is the address of the registrar the element is connected
	// to; empty while none.
	HomeAddr transport.Addr
	// LastErr is the latest failure (rejection, timeout, connection loss);
	// nil after a success.
	LastErr error
}

// RejectedError is a registrar's rejection of a registration.
type RejectedError struct {
	Causes []wire.ErrorCause
}

func (e *RejectedError) Error() string {
	if len(e.Causes) == 0 {
		return "registration rejected"
	}
	return fmt.Sprintf("registration rejected: cause 0x%04x", uint16(e.Causes[0].Code))
}

// ErrClosed is returned by operations on a closed element or agent.
var ErrClosed = errors.New("peagent: closed")

// ErrTimeout means a registrar did not answer within the response timeout.
var ErrTimeout = errors.New("peagent: registrar did not answer in time")

// Element is one pool element: it registers, re-registers, answers
// keep-alives, follows its home registrar and deregisters on Close. Its
// methods are safe for concurrent use.
type Element struct {
	id   uint32
	pool wire.PoolHandle
	sess *session
	own  bool // the session belongs to this element alone

	mu      sync.Mutex // guards state, changes
	state   State
	changes chan struct{}
	onState func(State) // called with every new state, from the session loop
}

// NewElement builds a standalone element with its own registrar
// connection. It does nothing until Start.
func NewElement(cfg PEConfig, opts Options) (*Element, error) {
	if len(cfg.Registrars) == 0 && cfg.AnnounceGroup == "" {
		return nil, errors.New("peagent: no registrars and no announce group")
	}
	s := newSession(sessionConfig{
		Registrars:        cfg.Registrars,
		ResponseTimeout:   cfg.ResponseTimeout,
		ConnectTimeout:    cfg.ConnectTimeout,
		RetryInterval:     cfg.RetryInterval,
		TransportConfig:   cfg.TransportConfig,
		Dial:              cfg.Dial,
		AnnounceGroup:     cfg.AnnounceGroup,
		AnnounceInterface: cfg.AnnounceInterface,
		AnnounceTTL:       cfg.AnnounceTTL,
		RebalanceAfter:    cmp.Or(cfg.RebalanceAfter, DefaultRebalanceAfter),
		RebalanceProbe:    cfg.PoolHandle,
	}, opts.Logger, nil)
	el, err := s.newElement(cfg, nil)
	if err != nil {
		s.close()
		return nil, err
	}
	el.own = true
	return el, nil
}

func randomID() uint32 {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic("peagent: crypto/rand failed: " + err.Error())
		}
		if id := binary.BigEndian.Uint32(b[:]); id != 0 {
			return id
		}
	}
}

// ID returns the PE identifier.
func (e *Element) ID() uint32 { return e.id }

// PoolHandle returns the pool handle.
func (e *Element) PoolHandle() wire.PoolHandle { return e.pool }

// Start begins registration in the background (server hunt, register,
// re-register every interval). After a Suspend it registers again.
func (e *Element) Start() error {
	if e.own {
		if err := e.sess.start(); err != nil {
			return err
		}
	}
	return e.sess.setActive(e, true)
}

// Suspend deregisters the element but keeps it, so that Start can register
// it again (used when the backend becomes unhealthy).
func (e *Element) Suspend() error { return e.sess.setActive(e, false) }

// SetPolicy changes the policy values; a registered element re-registers at
// once if they differ.
func (e *Element) SetPolicy(p wire.Policy) error { return e.sess.setPolicy(e, p) }

// State returns the current state.
func (e *Element) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

// Changes returns a channel that receives a value after each state change
// (coalesced: one pending value at most). Read State after receiving.
func (e *Element) Changes() <-chan struct{} { return e.changes }

// Close deregisters the element (waiting for the answer, bounded by ctx and
// the response timeout) and releases it. A standalone element also closes
// its connection. Close returns the deregistration error, if any.
func (e *Element) Close(ctx context.Context) error {
	done := make(chan error, 1)
	err := e.sess.remove(e, done)
	if err == nil {
		select {
		case err = <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	} else if errors.Is(err, ErrClosed) {
		err = nil
	}
	if e.own {
		e.sess.close()
	}
	return err
}

// setState is called by the session loop.
func (e *Element) setState(errChanged bool, f func(*State)) {
	e.mu.Lock()
	old := e.state
	f(&e.state)
	st := e.state
	changed := errChanged || old.Registered != st.Registered || old.Home != st.Home || old.HomeAddr != st.HomeAddr
	e.mu.Unlock()
	if !changed {
		return
	}
	select {
	case e.changes <- struct{}{}:
	default:
	}
	if e.onState != nil {
		e.onState(st)
	}
}
