package regclient

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// rig drives a core by hand: it plays the shell (dials are answered by the
// test) and records what the Handler hears.
type rig struct {
	t    testing.TB
	c    *core
	now  time.Time
	dial map[uint64]transport.Addr // attempts under way (as the shell sees them)
	eff  []effect                  // every effect so far
	ev   []string                  // Handler events
	msgs []wire.Message            // Handler.Message
}

func newRig(t testing.TB, cfg Config) *rig {
	r := &rig{t: t, now: t0, dial: map[uint64]transport.Addr{}}
	r.c = newCore(cfg.withDefaults(), r, cfg.withDefaults().Logger)
	return r
}

func (r *rig) Up(now time.Time, a transport.Addr) { r.ev = append(r.ev, "up "+a.String()) }
func (r *rig) Down(now time.Time, err error)      { r.ev = append(r.ev, "down") }
func (r *rig) Message(now time.Time, m wire.Message) {
	r.msgs = append(r.msgs, m)
}
func (r *rig) HuntFailed(now time.Time, err error) { r.ev = append(r.ev, "hunt failed") }
func (r *rig) Tick(now time.Time) time.Time        { return time.Time{} }

// step runs advance and collects the effects.
func (r *rig) step() []effect {
	r.c.advance(r.now)
	return r.collect()
}

func (r *rig) collect() []effect {
	es := r.c.effects()
	for _, e := range es {
		switch e.kind {
		case effDial:
			r.dial[e.id] = e.addr
		case effCancel, effDrop, effAdopt:
			delete(r.dial, e.id)
		}
	}
	r.eff = append(r.eff, es...)
	return es
}

// dialed reports the end of attempt id to the core, as the shell does.
func (r *rig) dialed(id uint64, err error) []effect {
	if err != nil {
		delete(r.dial, id)
	}
	r.c.dialed(r.now, id, err)
	return r.collect()
}

// dialing returns the attempts under way by address.
func (r *rig) dialing() map[string]uint64 {
	m := map[string]uint64{}
	for id, a := range r.dial {
		m[a.String()] = id
	}
	return m
}

func (r *rig) advance(d time.Duration) []effect {
	r.now = r.now.Add(d)
	return r.step()
}

// result records a request's completion.
type result2 struct {
	done bool
	resp wire.Message
	err  error
}

func (r *rig) request(m wire.Message) *result2 {
	res := &result2{}
	r.c.request(r.now, m, false, func(_ time.Time, resp wire.Message, err error) {
		if res.done {
			r.t.Fatalf("request %T completed twice", m)
		}
		res.done, res.resp, res.err = true, resp, err
	})
	return res
}

// testPE is a pool element that encodes.
func testPE(id uint32) wire.PoolElement {
	return wire.PoolElement{ID: id, RegistrationLife: 1000, Policy: wire.Policy{Type: wire.PolicyRoundRobin},
		User: wire.Transport{Type: wire.TransportTCP, Port: 1, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}}
}

func writes(es []effect) int {
	n := 0
	for _, e := range es {
		if e.kind == effWrite {
			n++
		}
	}
	return n
}

func has(es []effect, k effectKind) bool {
	return slices.ContainsFunc(es, func(e effect) bool { return e.kind == k })
}

func regs(n int) []transport.Addr {
	var out []transport.Addr
	for i := range n {
		out = append(out, addr(fmt.Sprintf("10.0.0.%d:3863", i+1)))
	}
	return out
}

// TestHuntParallelFirstWins: three attempts at once (SH1); the first up
// becomes home, the others are abandoned (SH3, SH6); the pending request
// goes out on it.
func TestHuntParallelFirstWins(t *testing.T) {
	r := newRig(t, Config{Registrars: regs(5)})
	res := r.request(&wire.HandleResolution{PoolHandle: "P"})
	r.step()
	d := r.dialing()
	if len(d) != 3 || d["tcp://10.0.0.1:3863"] == 0 || d["tcp://10.0.0.3:3863"] == 0 {
		t.Fatalf("attempts %v, want the first three", d)
	}
	r.c.dialed(r.now, d["tcp://10.0.0.2:3863"], nil)
	es := r.collect()
	if !has(es, effAdopt) || writes(es) != 1 || len(r.dialing()) != 0 {
		t.Fatalf("effects %+v, attempts left %v", es, r.dialing())
	}
	if r.c.addr != addr("10.0.0.2:3863") || r.ev[0] != "up tcp://10.0.0.2:3863" {
		t.Fatalf("home %v, events %v", r.c.addr, r.ev)
	}
	// A late success of an abandoned attempt is closed, not adopted.
	r.c.dialed(r.now, d["tcp://10.0.0.1:3863"], nil)
	if es := r.collect(); len(es) != 1 || es[0].kind != effDrop {
		t.Fatalf("late attempt: %+v", es)
	}
	r.c.receive(r.now, r.c.gen, &wire.HandleResolutionResponse{PoolHandle: "P"})
	if !res.done || res.err != nil {
		t.Fatalf("request %+v", res)
	}
}

// TestHuntNextOnFailureAndT5: a failed attempt is replaced by the next
// candidate (SH4); when T5 expires the attempts are abandoned, T5 doubles
// (up to RETRAN-MAX) and the hunt goes on with the rest (SH5); when every
// registrar failed the requests fail and the next hunt waits.
func TestHuntNextOnFailureAndT5(t *testing.T) {
	r := newRig(t, Config{Registrars: regs(5), ConnectTimeout: time.Second, RetranMax: 3 * time.Second, RetryInterval: time.Second})
	res := r.request(&wire.HandleResolution{PoolHandle: "P"})
	r.step()
	r.dialed(r.dialing()["tcp://10.0.0.1:3863"], errors.New("refused"))
	if d := r.dialing(); len(d) != 3 || d["tcp://10.0.0.4:3863"] == 0 {
		t.Fatalf("after a failure: %v, want 2, 3 and 4", d)
	}
	if w := r.c.wake(); !w.Equal(t0.Add(time.Second)) {
		t.Fatalf("wake %v, want T5 = 1s", w)
	}
	es := r.advance(time.Second) // T5: 2, 3, 4 abandoned; 5 tried with T5 = 2 s
	if n := len(slices.DeleteFunc(slices.Clone(es), func(e effect) bool { return e.kind != effCancel })); n != 3 {
		t.Fatalf("T5 expiry cancelled %d attempts, want 3: %+v", n, es)
	}
	if d := r.dialing(); len(d) != 1 || d["tcp://10.0.0.5:3863"] == 0 || r.c.t5 != 2*time.Second {
		t.Fatalf("after T5: %v, T5 %v", d, r.c.t5)
	}
	r.advance(2 * time.Second) // T5 again: nobody left
	if !res.done || !errors.Is(res.err, ErrNoRegistrar) || r.c.t5 != 3*time.Second {
		t.Fatalf("request %+v, T5 %v (want capped at 3s)", res, r.c.t5)
	}
	if w := r.c.wake(); !w.IsZero() {
		t.Fatalf("nothing pending, wake %v", w)
	}
	// A new request starts a hunt at once (no waiting for the retry interval).
	r.request(&wire.HandleResolution{PoolHandle: "P"})
	if r.step(); len(r.dialing()) != 3 {
		t.Fatalf("a new request did not hunt: %v", r.dialing())
	}
}

// TestRetryBackoffWanted: a client that wants a connection hunts again
// after the retry interval, doubling to RETRAN-MAX, when every registrar
// refuses.
func TestRetryBackoffWanted(t *testing.T) {
	r := newRig(t, Config{Registrars: regs(1), RetryInterval: 2 * time.Second, RetranMax: 10 * time.Second})
	(&Link{r.c}).Want(true)
	var gaps []time.Duration
	last := r.now
	for range 5 {
		r.step()
		for _, id := range r.dialing() {
			gaps = append(gaps, r.now.Sub(last))
			last = r.now
			r.dialed(id, errors.New("refused"))
		}
		r.now = r.c.wake()
	}
	want := []time.Duration{0, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second}
	if !slices.Equal(gaps, want) {
		t.Fatalf("hunts after %v, want %v", gaps, want)
	}
}

// TestFailedHomeTriedLast: after the home registrar failed, the others
// are tried first; it is tried again only when they all failed.
func TestFailedHomeTriedLast(t *testing.T) {
	r := newRig(t, Config{Registrars: regs(3)})
	(&Link{r.c}).Want(true)
	r.step()
	r.dialed(r.dialing()["tcp://10.0.0.1:3863"], nil)
	r.c.lost(r.now, r.c.gen, errors.New("reset"))
	r.step()
	if d := r.dialing(); len(d) != 2 || d["tcp://10.0.0.1:3863"] != 0 {
		t.Fatalf("after losing 1: %v, want 2 and 3 only", d)
	}
	for _, id := range r.dialing() {
		r.dialed(id, errors.New("refused"))
	}
	if d := r.dialing(); len(d) != 1 || d["tcp://10.0.0.1:3863"] == 0 {
		t.Fatalf("after 2 and 3 failed: %v, want 1", d)
	}
}

// TestT1Retransmit: a request without answer is re-sent at another
// registrar after T1, MaxRetransmit times, then fails; a request never
// sent (no registrar comes up) ends after the same time.
func TestT1Retransmit(t *testing.T) {
	r := newRig(t, Config{Registrars: regs(3), RequestTimeout: time.Second, MaxRetransmit: 2, ConnectTimeout: 10 * time.Second})
	res := r.request(&wire.Registration{PoolHandle: "P", Element: testPE(7)})
	up := func() {
		for _, id := range r.dialing() {
			r.c.dialed(r.now, id, nil)
			break
		}
		if es := r.collect(); writes(es) != 1 {
			t.Fatalf("not (re-)sent on the new connection: %+v", es)
		}
	}
	r.step()
	up()
	for i := range 2 {
		es := r.advance(time.Second)
		if !has(es, effClose) || res.done {
			t.Fatalf("T1 expiry %d: %+v, request %+v", i+1, es, res)
		}
		up()
	}
	r.advance(time.Second)
	if !res.done || !errors.Is(res.err, ErrTimeout) {
		t.Fatalf("after 3 × T1: %+v", res)
	}
	// Each re-send went to another registrar than the one that failed.
	if len(r.ev) != 5 || r.ev[1] != "down" || r.ev[3] != "down" || r.ev[0] == r.ev[2] || r.ev[2] == r.ev[4] {
		t.Errorf("events %v", r.ev)
	}

	r2 := newRig(t, Config{Registrars: regs(1), RequestTimeout: time.Second, ConnectTimeout: 10 * time.Second})
	res2 := r2.request(&wire.HandleResolution{PoolHandle: "P"})
	r2.step() // the attempt never completes (a black hole)
	for range 3 {
		r2.advance(time.Second)
	}
	if !res2.done || !errors.Is(res2.err, ErrTimeout) {
		t.Fatalf("unsent request after 3 × T1: %+v", res2)
	}
}

// TestMatching: each response completes the request it answers; the rest
// goes to the Handler; nothing from an old connection counts.
func TestMatching(t *testing.T) {
	r := newRig(t, Config{Registrars: regs(1)})
	hrA := r.request(&wire.HandleResolution{PoolHandle: "A"})
	hrB := r.request(&wire.HandleResolution{PoolHandle: "B"})
	reg := r.request(&wire.Registration{PoolHandle: "A", Element: testPE(1)})
	dereg := r.request(&wire.Deregistration{PoolHandle: "A", ID: 2})
	r.step()
	for _, id := range r.dialing() {
		r.c.dialed(r.now, id, nil)
	}
	r.collect()
	gen := r.c.gen
	r.c.receive(r.now, gen, &wire.RegistrationResponse{PoolHandle: "A", ID: 99})           // another PE: unsolicited
	r.c.receive(r.now, gen, &wire.DeregistrationResponse{PoolHandle: "B", ID: 2})          // another pool
	r.c.receive(r.now, gen, &wire.HandleResolutionResponse{PoolHandle: "B"})               // B
	r.c.receive(r.now, gen+1, &wire.HandleResolutionResponse{PoolHandle: "A"})             // a future connection: ignored
	r.c.receive(r.now, gen, &wire.EndpointKeepAlive{Home: true, PoolHandle: "Z"})          // unsolicited
	r.c.receive(r.now, gen, &wire.HandleResolutionResponse{Error: &wire.OperationError{}}) // no handle: the oldest
	if !hrB.done || !hrA.done || reg.done || dereg.done {
		t.Fatalf("A %+v B %+v reg %+v (%v) dereg %+v", hrA, hrB, reg, reg.err, dereg)
	}
	if len(r.msgs) != 3 {
		t.Fatalf("unsolicited %d, want 3: %v", len(r.msgs), r.msgs)
	}
	r.c.receive(r.now, gen, &wire.ASAPError{Error: wire.OperationError{Causes: []wire.ErrorCause{{Code: wire.CauseInvalidValues}}}})
	var er *ErrorReply
	if !reg.done || !errors.As(reg.err, &er) || er.Causes[0].Code != wire.CauseInvalidValues {
		t.Fatalf("ASAP_ERROR did not fail the oldest request: %+v", reg)
	}
	r.c.receive(r.now, gen, &wire.DeregistrationResponse{PoolHandle: "A", ID: 2})
	if !dereg.done || dereg.err != nil {
		t.Fatalf("dereg %+v", dereg)
	}
	if len(r.c.pending) != 0 {
		t.Fatalf("%d pending", len(r.c.pending))
	}
}

// TestBusyAndShutdown: at most MaxPending requests wait; shutdown fails
// the rest.
func TestBusyAndShutdown(t *testing.T) {
	r := newRig(t, Config{MaxPending: 2})
	a, b := r.request(&wire.HandleResolution{PoolHandle: "A"}), r.request(&wire.HandleResolution{PoolHandle: "B"})
	c := r.request(&wire.HandleResolution{PoolHandle: "C"})
	if !c.done || !errors.Is(c.err, ErrBusy) {
		t.Fatalf("third request %+v", c)
	}
	r.c.shutdown(r.now, ErrClosed)
	if !errors.Is(a.err, ErrClosed) || !errors.Is(b.err, ErrClosed) {
		t.Fatalf("after shutdown %+v %+v", a, b)
	}
}
