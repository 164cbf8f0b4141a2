package regclient

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// probing returns the check under way, if any.
func (r *rig) probing() (effect, bool) {
	for i := len(r.eff) - 1; i >= 0; i-- {
		if e := r.eff[i]; e.kind == effProbe && e.id == r.c.reb.probe {
			return e, true
		}
	}
	return effect{}, false
}

// rebalanceRig is a client with registrars 1 and 2, Rebalance 4 s and T1
// 30 s, whose hunt lands on 2 (1 refused).
func rebalanceRig(t *testing.T) *rig {
	r := newRig(t, Config{Registrars: regs(2), Rebalance: 4 * time.Second, RequestTimeout: 30 * time.Second,
		Rand: rand.New(rand.NewPCG(1, 2))})
	(&Link{r.c}).Want(true)
	r.step()
	d := r.dialing()
	r.dialed(d["tcp://10.0.0.1:3863"], errors.New("refused"))
	r.dialed(d["tcp://10.0.0.2:3863"], nil)
	if r.c.addr != addr("10.0.0.2:3863") {
		t.Fatalf("home %v, want 10.0.0.2", r.c.addr)
	}
	r.step()
	return r
}

// TestRebalanceMovesBackToPreferred: away from its first registrar, the
// client checks it every Rebalance/4 (±12.5 %); a failed check restarts the
// count; after it has answered for Rebalance plus up to half of it, the
// answering connection becomes the connection (Up, requests in flight sent
// again there), and no more checks run.
func TestRebalanceMovesBackToPreferred(t *testing.T) {
	r := rebalanceRig(t)
	w := r.c.wake()
	if d := w.Sub(r.now); d < 875*time.Millisecond || d > 1125*time.Millisecond {
		t.Fatalf("first check in %v, want Rebalance/4 ± 12.5 %%", d)
	}
	r.now = w
	r.step()
	e, ok := r.probing()
	if !ok || e.addr != addr("10.0.0.1:3863") || e.timeout != 30*time.Second {
		t.Fatalf("no check of the preferred registrar: %+v", r.eff[len(r.eff)-1])
	}
	if m, err := wire.ParseASAP(e.data); err != nil || m.(*wire.HandleResolution).PoolHandle != "rebalance-probe" {
		t.Fatalf("check message %v %v", m, err)
	}
	r.c.probed(r.now, e.id, errors.New("refused"))
	r.collect()
	res := r.request(&wire.HandleResolution{PoolHandle: "P"}) // in flight on 10.0.0.2 during the move
	r.collect()

	var first time.Time
	for i := 0; ; i++ {
		if i > 20 {
			t.Fatal("the client never moved")
		}
		r.now = r.c.wake()
		r.step()
		e, ok := r.probing()
		if !ok {
			t.Fatalf("no check at %v", r.now.Sub(t0))
		}
		if first.IsZero() {
			first = r.now
		}
		r.c.probed(r.now, e.id, nil)
		es := r.collect()
		if has(es, effDrop) {
			continue
		}
		if !has(es, effAdopt) || writes(es) != 1 || has(es, effClose) {
			t.Fatalf("effects of the move: %+v (the old connection must stay open)", es)
		}
		if took := r.now.Sub(first); took < 4*time.Second || took > 6*time.Second+1250*time.Millisecond {
			t.Fatalf("moved after answering for %v, want Rebalance..1.5 × Rebalance (+ one check)", took)
		}
		break
	}
	if r.c.addr != addr("10.0.0.1:3863") || r.ev[len(r.ev)-1] != "up tcp://10.0.0.1:3863" {
		t.Fatalf("home %v, events %v", r.c.addr, r.ev)
	}
	old := r.c.gen - 1
	if es := r.step(); has(es, effClose) {
		t.Fatalf("old connection closed while a request is pending: %+v", es)
	}
	r.c.receive(r.now, r.c.gen, &wire.HandleResolutionResponse{PoolHandle: "P"})
	if !res.done || res.err != nil {
		t.Fatalf("request in flight during the move: %+v", res)
	}
	es := r.step()
	if len(es) != 1 || es[0].kind != effClose || es[0].gen != old {
		t.Fatalf("once nothing is pending the old connection closes: %+v", es)
	}
	if w := r.c.wake(); !w.IsZero() {
		t.Fatalf("checks go on at the preferred registrar: wake %v", w)
	}
}

// TestRebalanceOldConnectionClosedAfterT1: requests that stay unanswered
// at the new registrar do not keep the old connection open beyond T1.
func TestRebalanceOldConnectionClosedAfterT1(t *testing.T) {
	r := rebalanceRig(t)
	r.request(&wire.HandleResolution{PoolHandle: "P"})
	for i := 0; r.c.addr != addr("10.0.0.1:3863"); i++ {
		if i > 20 {
			t.Fatal("the client never moved")
		}
		r.now = r.c.wake()
		r.step()
		if e, ok := r.probing(); ok {
			r.c.probed(r.now, e.id, nil)
			r.collect()
		}
	}
	moved, old := r.now, r.c.gen-1
	for {
		r.now = r.c.wake()
		if es := r.step(); slices.ContainsFunc(es, func(e effect) bool { return e.kind == effClose && e.gen == old }) {
			if r.now.Sub(moved) > 30*time.Second {
				t.Fatalf("old connection closed %v after the move, want at most T1 = 30s", r.now.Sub(moved))
			}
			return
		}
		if r.now.Sub(moved) > time.Minute {
			t.Fatal("old connection never closed")
		}
	}
}

// TestRebalanceFailedCheckRestarts: a check that fails after some that
// succeeded starts the count again, so a registrar that answers on and off
// never gets the client.
func TestRebalanceFailedCheckRestarts(t *testing.T) {
	r := rebalanceRig(t)
	for i := 0; i < 40; i++ {
		r.now = r.c.wake()
		r.step()
		e, ok := r.probing()
		if !ok {
			t.Fatalf("no check at %v", r.now.Sub(t0))
		}
		var err error
		if i%5 == 4 { // about every 5 s
			err = errors.New("reset")
		}
		r.c.probed(r.now, e.id, err)
		if es := r.collect(); has(es, effAdopt) {
			t.Fatalf("moved at %v although a check failed within every 5 s", r.now.Sub(t0))
		}
	}
}

// TestRebalanceOff: without Rebalance, or at the preferred registrar, or
// while not connected, nothing is checked.
func TestRebalanceOff(t *testing.T) {
	r := newRig(t, Config{Registrars: regs(2)})
	(&Link{r.c}).Want(true)
	r.step()
	d := r.dialing()
	r.dialed(d["tcp://10.0.0.1:3863"], errors.New("refused"))
	r.dialed(d["tcp://10.0.0.2:3863"], nil)
	if w := r.c.wake(); !w.IsZero() {
		t.Fatalf("Rebalance 0: wake %v", w)
	}
	r = rebalanceRig(t)
	r.now = r.c.wake()
	r.step()
	e, _ := r.probing()
	r.c.lost(r.now, r.c.gen, errors.New("reset"))
	r.collect()
	r.c.probed(r.now, e.id, nil) // the check ends after the connection did
	if es := r.collect(); !has(es, effDrop) || has(es, effAdopt) {
		t.Fatalf("a check ending while not connected: %+v", es)
	}
}

// TestHuntStagger: with HuntStagger the registrars are tried in order, each
// alone for HuntStagger before the next joins (up to Parallel); a failure
// brings the next one in at once; the first that answers in time wins.
func TestHuntStagger(t *testing.T) {
	r := newRig(t, Config{Registrars: regs(4), HuntStagger: 250 * time.Millisecond})
	r.request(&wire.HandleResolution{PoolHandle: "P"})
	r.step()
	if d := r.dialing(); len(d) != 1 || d["tcp://10.0.0.1:3863"] == 0 {
		t.Fatalf("first attempts %v, want 10.0.0.1 alone", d)
	}
	if w := r.c.wake(); !w.Equal(t0.Add(250 * time.Millisecond)) {
		t.Fatalf("wake %v, want the stagger", w.Sub(t0))
	}
	r.advance(249 * time.Millisecond)
	if d := r.dialing(); len(d) != 1 {
		t.Fatalf("after 249 ms: %v", d)
	}
	r.advance(time.Millisecond)
	if d := r.dialing(); len(d) != 2 || d["tcp://10.0.0.2:3863"] == 0 {
		t.Fatalf("after 250 ms: %v, want 1 and 2", d)
	}
	r.dialed(r.dialing()["tcp://10.0.0.1:3863"], errors.New("refused"))
	if d := r.dialing(); len(d) != 2 || d["tcp://10.0.0.3:3863"] == 0 {
		t.Fatalf("after 1 failed: %v, want 2 and 3 at once", d)
	}
	r.advance(250 * time.Millisecond)
	if d := r.dialing(); len(d) != 3 {
		t.Fatalf("after another 250 ms: %v, want 2, 3 and 4", d)
	}

	r = newRig(t, Config{Registrars: regs(3), HuntStagger: 250 * time.Millisecond})
	(&Link{r.c}).Want(true)
	r.step()
	r.advance(100 * time.Millisecond)
	r.dialed(r.dialing()["tcp://10.0.0.1:3863"], nil)
	if r.c.addr != addr("10.0.0.1:3863") || len(r.dialing()) != 0 {
		t.Fatalf("home %v, attempts %v: the first registrar answering in time wins alone", r.c.addr, r.dialing())
	}
}
