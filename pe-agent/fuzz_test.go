package peagent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/rserpool/rserpool/internal/fuzzprog"
	"github.com/rserpool/rserpool/internal/rsplibvec"
	"github.com/rserpool/rserpool/regclient"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// sessionRig is a pe-agent session on a regclient.Sim: no goroutine, the
// test plays the registrar and the clock.
type sessionRig struct {
	t     testing.TB
	s     *session
	sim   *regclient.Sim
	now   time.Time
	els   []*Element
	done  map[*Element]chan error
	gen   int               // connections so far
	okGen map[*Element]int  // connection on which the element's registration was last accepted
	sent  []wire.Message    // every message written, decoded
	reg   map[*Element]bool // elements that sent a Registration on the current connection
}

var fuzzT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newSessionRig(t testing.TB) *sessionRig {
	s := &session{log: nopLogger(), elems: map[*Element]*elemState{}, cfg: sessionConfig{
		Registrars:      []transport.Addr{transport.MustParseAddr("10.0.0.1:3863"), transport.MustParseAddr("10.0.0.2:3863")},
		ResponseTimeout: time.Second, ConnectTimeout: 2 * time.Second, RetryInterval: 500 * time.Millisecond,
		AnnounceTTL: 5 * time.Second,
	}}
	r := &sessionRig{t: t, s: s, now: fuzzT0, done: map[*Element]chan error{}, okGen: map[*Element]int{}, reg: map[*Element]bool{}}
	r.sim = regclient.NewSim(s.clientConfig())
	s.link = r.sim.Link()
	for i, pool := range []wire.PoolHandle{"P", "P", "Q"} {
		el, st, err := s.newElementState(PEConfig{
			PoolHandle: pool, ID: uint32(i + 1), ReregistrationInterval: 3 * time.Second,
			Transport: wire.Transport{Type: wire.TransportTCP, Port: 7000 + uint16(i), Addrs: []netip.Addr{netip.MustParseAddr("10.0.9.1")}},
			Policy:    wire.Policy{Type: wire.PolicyLeastUsed},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.elems[el] = st
		r.els = append(r.els, el)
	}
	return r
}

// apply runs f as the session's goroutine would (Client.Do), then checks.
func (r *sessionRig) apply(f func()) {
	f()
	r.s.step(r.now)
	r.s.publishAll()
	r.settle()
}

// settle carries out the client's effects and records what was written.
func (r *sessionRig) settle() {
	r.sim.Advance(r.now)
	for _, m := range r.sim.Written() {
		msg, err := wire.ParseASAP(m.Data)
		if err != nil {
			r.t.Fatalf("the session wrote an undecodable message: %v", err)
		}
		r.sent = append(r.sent, msg)
		if reg, ok := msg.(*wire.Registration); ok {
			for _, el := range r.els {
				if el.id == reg.Element.ID && el.pool == reg.PoolHandle {
					r.reg[el] = true
				}
			}
		}
	}
}

// deliver hands a registrar message to the session through the client.
func (r *sessionRig) deliver(m wire.Message) {
	if rr, ok := m.(*wire.RegistrationResponse); ok && !rr.Reject {
		for _, el := range r.els {
			if st := r.s.elems[el]; st != nil && el.id == rr.ID && el.pool == rr.PoolHandle && st.pending == pendReg {
				r.okGen[el] = r.gen
			}
		}
	}
	r.sim.Receive(r.now, m, false)
	r.settle()
}

// check verifies the session's invariants.
func (r *sessionRig) check(op int) {
	t := r.t
	_, up := r.sim.Connected()
	requests := 0
	for el, st := range r.s.elems {
		if st.el != el {
			t.Fatalf("op %d: element map broken", op)
		}
		if st.registered && !up {
			t.Fatalf("op %d: PE %d registered without a connection", op, el.id)
		}
		if st.registered && r.okGen[el] != r.gen {
			t.Fatalf("op %d: PE %d registered without an accepted registration on this connection", op, el.id)
		}
		if st.pending != pendNone {
			requests++
			if st.req == nil {
				t.Fatalf("op %d: PE %d pending without a request", op, el.id)
			}
		}
	}
	if r.sim.Pending() > requests {
		t.Fatalf("op %d: %d requests in the client, %d elements waiting", op, r.sim.Pending(), requests)
	}
	if err := r.sim.Check(); err != nil {
		t.Fatalf("op %d: %v", op, err)
	}
	for el, ch := range r.done {
		if len(ch) > 1 {
			t.Fatalf("op %d: PE %d removal completed twice", op, el.id)
		}
	}
	for _, m := range r.sent {
		ack, ok := m.(*wire.EndpointKeepAliveAck)
		if !ok {
			continue
		}
		found := false
		for _, el := range r.els {
			found = found || el.id == ack.ID && el.pool == ack.PoolHandle
		}
		if !found {
			t.Fatalf("op %d: keep-alive ack for an element that does not exist: %+v", op, ack)
		}
	}
	r.sent = r.sent[:0]
}

// FuzzSession: a hostile registrar (any ASAP message in any order,
// responses to requests never sent, keep-alives for unknown PEs with the H
// bit, errors, announces) cannot crash or wedge a pe-agent's session:
// elements are registered only after an accepted registration on the
// current connection, each has at most one request in flight, keep-alive
// acks only name real elements, removals complete once, and at the end a
// cooperative registrar gets every active element registered.
func FuzzSession(f *testing.F) {
	// Operations are: element, code, operands (see step).
	start := []byte{0, 0, 1, 1, 0, 1, 2, 0, 1, 0, 1, 1, 0} // start all three, connect
	answer := []byte{0, 4, 0, 1, 4, 0, 2, 4, 0}            // accept the three registrations
	for _, v := range rsplibvec.Load(f) {
		if v.Protocol == wire.ASAP {
			n := len(v.Data)
			raw := append([]byte{0, 2, byte(n >> 8), byte(n)}, v.Data...)
			f.Add(append(append(append([]byte{}, start...), answer...), raw...))
		}
	}
	f.Add(append(append(append([]byte{}, start...), answer...), 0, 6, 0, 1, 0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 8, 0, 3, 0x10, 0))
	f.Add(append(append([]byte{}, start...), 1, 10, 0, 7, 0, 5, 2, 9, 0, 0, 0, 5, 0, 3, 0x20, 0, 0, 11, 1, 2))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newSessionRig(t)
		p := fuzzprog.New(data)
		for op := 0; p.More() && op < 1000; op++ {
			r.step(p)
			r.check(op)
		}
		r.cooperate()
	})
}

// step runs one operation of the program.
func (r *sessionRig) step(p *fuzzprog.Program) {
	el := r.els[int(p.Byte())%len(r.els)]
	switch p.Byte() % 12 {
	case 0: // Start / Suspend
		on := p.Byte()&1 == 1
		r.apply(func() { r.s.opActive(r.now, el, on) })
	case 1: // a dial attempt ends
		if n := len(r.sim.Attempts()); n > 0 {
			var err error
			if p.Byte()&1 == 0 {
				err = errors.New("refused")
			} else {
				r.gen++
				clear(r.reg)
			}
			r.sim.Dialed(r.now, int(p.Byte())%n, err)
			r.settle()
		}
	case 2: // raw bytes from the registrar
		if m, err := wire.ParseASAP(p.Bytes(int(p.U16() % 2048))); err == nil {
			r.deliver(m)
		}
	case 3: // time passes
		r.now = r.now.Add(time.Duration(p.U16()) * time.Millisecond)
		r.settle()
	case 4: // an accepting or rejecting registration response
		r.deliver(&wire.RegistrationResponse{PoolHandle: el.pool, ID: el.id, Reject: p.Byte()&1 == 1})
	case 5: // a deregistration response
		r.deliver(&wire.DeregistrationResponse{PoolHandle: el.pool, ID: el.id})
	case 6: // a keep-alive, for this PE or another, H bit or not
		id := el.id
		if p.Byte()&1 == 1 {
			id = p.U32()
		}
		r.deliver(&wire.EndpointKeepAlive{Home: p.Byte()&1 == 1, ServerID: p.U32(), PoolHandle: el.pool, HasID: p.Byte()&1 == 1, ID: id})
	case 7: // an error
		r.deliver(&wire.ASAPError{Error: wire.OperationError{Causes: []wire.ErrorCause{{Code: wire.CauseCode(p.U16())}}}})
	case 8: // the connection fails
		if _, up := r.sim.Connected(); up {
			r.gen++
			clear(r.reg)
		}
		r.sim.Lose(r.now)
		r.settle()
	case 9: // new load
		pol := wire.Policy{Type: wire.PolicyLeastUsed, Load: p.U32()}
		r.apply(func() { r.s.opPolicy(r.now, el, pol) })
	case 10: // Close of one element
		if _, ok := r.done[el]; !ok {
			ch := make(chan error, 2)
			r.done[el] = ch
			r.apply(func() { r.s.opRemove(el, ch) })
		}
	case 11: // an announce
		ip := netip.AddrFrom4([4]byte{10, 1, p.Byte(), p.Byte()})
		r.sim.Learn(r.now, transport.AddrFrom(transport.SchemeTCP, netip.AddrPortFrom(ip, 3863)))
		r.settle()
	}
}

// cooperate plays a registrar that answers everything: every element that
// wants to be registered gets registered, in bounded virtual time.
func (r *sessionRig) cooperate() {
	for range 200 {
		if _, up := r.sim.Connected(); !up {
			if len(r.sim.Attempts()) > 0 {
				r.gen++
				clear(r.reg)
				r.sim.Dialed(r.now, 0, nil)
				r.settle()
				continue
			}
		}
		answered := false
		for _, el := range r.els {
			st := r.s.elems[el]
			if st != nil && st.pending == pendReg && r.reg[el] {
				r.deliver(&wire.RegistrationResponse{PoolHandle: el.pool, ID: el.id})
				answered = true
			}
			if st != nil && st.pending == pendDereg {
				r.deliver(&wire.DeregistrationResponse{PoolHandle: el.pool, ID: el.id})
				answered = true
			}
		}
		all := true
		for _, st := range r.s.elems {
			all = all && (!st.active || st.registered)
		}
		if all {
			return
		}
		if !answered {
			next := r.sim.Next()
			if next.IsZero() || !next.After(r.now) {
				next = r.now.Add(100 * time.Millisecond)
			}
			r.now = next
			r.settle()
		}
		r.check(-1)
	}
	var states []string
	for _, st := range r.s.elems {
		states = append(states, fmt.Sprintf("PE %d active %v registered %v pending %d next %v", st.el.id, st.active, st.registered, st.pending, st.nextReg.Sub(r.now)))
	}
	r.t.Fatalf("a cooperative registrar did not get every active element registered: %v", states)
}

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestRegressionRemoveDuringRegistration (found by FuzzSession): an
// element removed while its registration was in flight was forgotten at
// once, leaving the request in the client; when the registrar accepted it
// the PE stayed registered there. Now the removal waits for the answer and
// deregisters an accepted element.
func TestRegressionRemoveDuringRegistration(t *testing.T) {
	r := newSessionRig(t)
	el := r.els[0]
	r.apply(func() { r.s.opActive(r.now, el, true) })
	r.gen++
	r.sim.Dialed(r.now, 0, nil)
	r.settle()
	if st := r.s.elems[el]; st.pending != pendReg {
		t.Fatalf("no registration in flight: %+v", st)
	}
	done := make(chan error, 1)
	r.apply(func() { r.s.opRemove(el, done) })
	if _, ok := r.s.elems[el]; !ok {
		t.Fatal("forgotten before its registration was answered")
	}
	r.check(0)
	r.deliver(&wire.RegistrationResponse{PoolHandle: el.pool, ID: el.id})
	var dereg *wire.Deregistration
	for _, m := range r.sent {
		if d, ok := m.(*wire.Deregistration); ok {
			dereg = d
		}
	}
	if dereg == nil || dereg.ID != el.id {
		t.Fatalf("no deregistration after the late acceptance: %v", r.sent)
	}
	r.deliver(&wire.DeregistrationResponse{PoolHandle: el.pool, ID: el.id})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("removal did not complete")
	}
	if _, still := r.s.elems[el]; still {
		t.Fatal("element still there")
	}
}
