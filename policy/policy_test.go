package policy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/rserpool/rserpool/wire"
)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5eed)) }

func mustNew(t testing.TB, typ wire.PolicyType, seed uint64) Selector {
	t.Helper()
	s, err := New(typ, seeded(seed))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pool inserts entries with IDs 1..len(ps) and the given policies.
func pool(t testing.TB, s Selector, ps ...wire.Policy) []*Entry {
	t.Helper()
	es := make([]*Entry, len(ps))
	for i, p := range ps {
		p.Type = s.Type()
		es[i] = &Entry{ID: uint32(i + 1), Policy: p}
		s.Insert(es[i])
	}
	return es
}

func ids(es []*Entry) []uint32 {
	out := make([]uint32, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// picks returns the ID sequence of k single selections.
func picks(s Selector, k int) []uint32 {
	var out []uint32
	var buf []*Entry
	for range k {
		buf = s.Select(1, buf[:0])
		if len(buf) == 0 {
			out = append(out, 0)
			continue
		}
		out = append(out, buf[0].ID)
	}
	return out
}

func counts(seq []uint32) map[uint32]int {
	m := map[uint32]int{}
	for _, id := range seq {
		m[id]++
	}
	return m
}

func TestSupportedAndNew(t *testing.T) {
	for typ := range infos {
		if _, err := New(typ, nil); err != nil {
			t.Errorf("New(%#x): %v", uint32(typ), err)
		}
		got, err := wire.ParsePolicyName(typ.Name())
		if err != nil || got != typ {
			t.Errorf("wire.ParsePolicyName(%#x.Name()) = %#x, %v", uint32(typ), uint32(got), err)
		}
	}
	for _, typ := range []wire.PolicyType{0, 0x40000000, 6, 0x40000005, 0xb0003001, 0xffffffff} {
		if Supported(typ) {
			t.Errorf("Supported(%#x) = true", uint32(typ))
		}
		if _, err := New(typ, nil); !errors.Is(err, ErrUnsupported) {
			t.Errorf("New(%#x) error = %v, want ErrUnsupported", uint32(typ), err)
		}
	}
}

func TestRoundRobin(t *testing.T) {
	s := mustNew(t, wire.PolicyRoundRobin, 1)
	pool(t, s, make([]wire.Policy, 4)...)
	// Resolution of 3: from the head, then the head advances by one.
	for i, want := range [][]uint32{{1, 2, 3}, {2, 3, 4}, {3, 4, 1}, {4, 1, 2}, {1, 2, 3}} {
		if got := ids(s.Select(3, nil)); !slices.Equal(got, want) {
			t.Fatalf("resolution %d = %v, want %v", i, got, want)
		}
	}
	// Whole cycles of single picks: exact counts and order.
	seq := picks(s, 400)
	for i, id := range seq {
		if want := uint32(i%4 + 2); id != (want-1)%4+1 {
			t.Fatalf("pick %d = %d, want %d", i, id, (want-1)%4+1)
		}
	}
	// More than the pool: each at most once.
	if got := ids(s.Select(10, nil)); len(got) != 4 {
		t.Fatalf("Select(10) = %v", got)
	}
}

func TestRoundRobinRemoveInsert(t *testing.T) {
	s := mustNew(t, wire.PolicyRoundRobin, 1)
	es := pool(t, s, make([]wire.Policy, 3)...)
	s.Remove(es[0]) // the head
	s.Remove(es[0]) // no-op
	if got := ids(s.Select(5, nil)); !slices.Equal(got, []uint32{2, 3}) {
		t.Fatalf("after remove = %v", got)
	}
	s.Insert(es[0]) // new SeqNumber: at the end
	if got := ids(s.Select(5, nil)); !slices.Equal(got, []uint32{3, 2, 1}) {
		t.Fatalf("after re-insert = %v", got)
	}
	for _, e := range es {
		s.Remove(e)
	}
	if s.Len() != 0 || len(s.Select(1, nil)) != 0 {
		t.Fatal("empty selector returned entries")
	}
}

func TestWeightedRoundRobin(t *testing.T) {
	s := mustNew(t, wire.PolicyWeightedRoundRobin, 1)
	pool(t, s, wire.Policy{Weight: 1}, wire.Policy{Weight: 2}, wire.Policy{Weight: 3}, wire.Policy{Weight: 0})
	const cycles = 50
	seq := picks(s, 6*cycles)
	// Every whole cycle of Σweights picks holds each PE exactly weight times.
	for c := range cycles {
		got := counts(seq[c*6 : c*6+6])
		if got[1] != 1 || got[2] != 2 || got[3] != 3 || got[4] != 0 {
			t.Fatalf("cycle %d counts = %v, want 1:1 2:2 3:3 4:0", c, got)
		}
	}
	// All weights 1 is round robin.
	s = mustNew(t, wire.PolicyWeightedRoundRobin, 1)
	pool(t, s, wire.Policy{Weight: 1}, wire.Policy{Weight: 1}, wire.Policy{Weight: 1})
	if got := picks(s, 6); !slices.Equal(got, []uint32{1, 2, 3, 1, 2, 3}) {
		t.Fatalf("WRR with weights 1 = %v", got)
	}
	// Only weight 0: nothing to select.
	s = mustNew(t, wire.PolicyWeightedRoundRobin, 1)
	pool(t, s, wire.Policy{Weight: 0})
	if got := s.Select(3, nil); len(got) != 0 {
		t.Fatalf("weight 0 selected: %v", ids(got))
	}
}

func TestWeightedRoundRobinJoinAndUpdate(t *testing.T) {
	s := mustNew(t, wire.PolicyWeightedRoundRobin, 1)
	es := pool(t, s, wire.Policy{Weight: 1}, wire.Policy{Weight: 1})
	picks(s, 10) // several rounds pass
	s.Insert(&Entry{ID: 3, Policy: wire.Policy{Type: s.Type(), Weight: 2}})
	seq := picks(s, 4*20)
	for c := range 20 {
		got := counts(seq[c*4 : c*4+4])
		if got[1] != 1 || got[2] != 1 || got[3] != 2 {
			t.Fatalf("cycle %d after join = %v", c, got)
		}
	}
	s.Update(es[0], wire.Policy{Type: s.Type(), Weight: 3})
	picks(s, 6) // settle into whole rounds
	seq = picks(s, 6*10)
	for c := range 10 {
		got := counts(seq[c*6 : c*6+6])
		if got[1] != 3 || got[2] != 1 || got[3] != 2 {
			t.Fatalf("cycle %d after update = %v (%v)", c, got, seq[c*6:c*6+6])
		}
	}
}

func TestPriority(t *testing.T) {
	s := mustNew(t, wire.PolicyPriority, 1)
	pool(t, s, wire.Policy{Priority: 5}, wire.Policy{Priority: 9}, wire.Policy{Priority: 9}, wire.Policy{Priority: 1})
	if got := ids(s.Select(4, nil)); !slices.Equal(got, []uint32{2, 3, 1, 4}) {
		t.Fatalf("Select(4) = %v", got)
	}
	// The two highest alternate (ties rotate), the others are never first.
	if got := picks(s, 6); !slices.Equal(got, []uint32{3, 2, 3, 2, 3, 2}) {
		t.Fatalf("picks = %v", got)
	}
}

func TestLeastUsed(t *testing.T) {
	s := mustNew(t, wire.PolicyLeastUsed, 1)
	es := pool(t, s, wire.Policy{Load: 300}, wire.Policy{Load: 100}, wire.Policy{Load: 200}, wire.Policy{Load: 100})
	if got := ids(s.Select(4, nil)); !slices.Equal(got, []uint32{2, 4, 3, 1}) {
		t.Fatalf("Select(4) = %v", got)
	}
	if got := picks(s, 4); !slices.Equal(got, []uint32{4, 2, 4, 2}) {
		t.Fatalf("round robin among equal loads = %v", got)
	}
	s.Update(es[0], wire.Policy{Type: s.Type(), Load: 0})
	if got := ids(s.Select(2, nil)); !slices.Equal(got, []uint32{1, 4}) {
		t.Fatalf("after update = %v", got)
	}
}

func TestLeastUsedDegradation(t *testing.T) {
	s := mustNew(t, wire.PolicyLeastUsedDegradation, 1)
	es := pool(t, s, wire.Policy{Load: 0, LoadDegradation: 100}, wire.Policy{Load: 150, LoadDegradation: 10})
	// A: 0, 100, 200 ... B: 150, 160 ...: A, A (key 100 < 150), B (200 > 150), B (160), B (170) ...
	if got := picks(s, 7); !slices.Equal(got, []uint32{1, 1, 2, 2, 2, 2, 2}) {
		t.Fatalf("picks = %v", got)
	}
	if es[0].Degradation() != 200 || es[1].Degradation() != 50 {
		t.Fatalf("degradation = %d, %d", es[0].Degradation(), es[1].Degradation())
	}
	// Re-registration with the same values resets the non-zero degradation.
	s.Update(es[0], es[0].Policy)
	if es[0].Degradation() != 0 {
		t.Fatal("degradation not reset")
	}
	if got := picks(s, 1); got[0] != 1 {
		t.Fatalf("after reset = %v", got)
	}
	// Saturation.
	s = mustNew(t, wire.PolicyLeastUsedDegradation, 1)
	es = pool(t, s, wire.Policy{Load: MaxValue - 1, LoadDegradation: MaxValue})
	picks(s, 3)
	if es[0].Degradation() != MaxValue {
		t.Fatalf("degradation = %#x, want saturated", es[0].Degradation())
	}
}

func TestLeastUsedDegradationAllReturned(t *testing.T) {
	// MaxIncrement < 0: every returned entry degrades (RFC 5356 wording).
	s, _ := NewWithOptions(wire.PolicyLeastUsedDegradation, Options{MaxIncrement: -1})
	es := pool(t, s, wire.Policy{LoadDegradation: 1}, wire.Policy{LoadDegradation: 1}, wire.Policy{LoadDegradation: 1})
	s.Select(2, nil)
	if got := []uint32{es[0].Degradation(), es[1].Degradation(), es[2].Degradation()}; !slices.Equal(got, []uint32{1, 1, 0}) {
		t.Fatalf("degradations = %v", got)
	}
	// Default: only the first.
	s = mustNew(t, wire.PolicyLeastUsedDegradation, 1)
	es = pool(t, s, wire.Policy{LoadDegradation: 1}, wire.Policy{LoadDegradation: 1})
	s.Select(2, nil)
	if es[0].Degradation() != 1 || es[1].Degradation() != 0 {
		t.Fatalf("degradations = %d %d", es[0].Degradation(), es[1].Degradation())
	}
}

func TestPriorityLeastUsed(t *testing.T) {
	const pct = MaxValue / 100
	s := mustNew(t, wire.PolicyPriorityLeastUsed, 1)
	// RFC 5356 example: A 50 % + 10 % beats B 50 % + 50 %.
	pool(t, s, wire.Policy{Load: 50 * pct, LoadDegradation: 50 * pct}, wire.Policy{Load: 50 * pct, LoadDegradation: 10 * pct})
	if got := picks(s, 3); !slices.Equal(got, []uint32{2, 2, 2}) {
		t.Fatalf("picks = %v", got)
	}
}

func TestPriorityLeastUsedDegradation(t *testing.T) {
	s := mustNew(t, wire.PolicyPriorityLeastUsedDegr, 1)
	pool(t, s, wire.Policy{Load: 0, LoadDegradation: 100}, wire.Policy{Load: 250, LoadDegradation: 0})
	// A: 100, 200, 300; B: 250 forever.
	if got := picks(s, 4); !slices.Equal(got, []uint32{1, 1, 2, 2}) {
		t.Fatalf("picks = %v", got)
	}
}

func TestLeastUsedDPF(t *testing.T) {
	const onePct = 0x028F5C28 // 0.01 per ms
	s := mustNew(t, wire.PolicyLeastUsedDPF, 1)
	// A idle but 100 ms away (penalty ~1.0): B at 50 % nearby wins.
	pool(t, s, wire.Policy{Load: 0, LoadDPF: onePct, Distance: 100}, wire.Policy{Load: MaxValue / 2, LoadDPF: onePct, Distance: 0})
	if got := ids(s.Select(2, nil)); !slices.Equal(got, []uint32{2, 1}) {
		t.Fatalf("Select = %v", got)
	}
	s = mustNew(t, wire.PolicyLeastUsedDegradationDPF, 1)
	es := pool(t, s, wire.Policy{Load: 0, LoadDegradation: 10, LoadDPF: 1, Distance: 5}, wire.Policy{Load: 12, LoadDegradation: 10})
	// A: 5, 15, 25; B: 12, 22.
	if got := picks(s, 3); !slices.Equal(got, []uint32{1, 2, 1}) {
		t.Fatalf("LUD-DPF picks = %v", got)
	}
	if es[0].Degradation() != 20 {
		t.Fatalf("degradation = %d", es[0].Degradation())
	}
}

// chiSquare returns Σ (observed-expected)²/expected.
func chiSquare(obs map[uint32]int, expected map[uint32]float64) float64 {
	var x float64
	for id, e := range expected {
		d := float64(obs[id]) - e
		x += d * d / e
	}
	return x
}

func TestRandomDistribution(t *testing.T) {
	const k, draws = 10, 200000
	s := mustNew(t, wire.PolicyRandom, 42)
	pool(t, s, make([]wire.Policy, k)...)
	obs := counts(picks(s, draws))
	exp := map[uint32]float64{}
	for i := 1; i <= k; i++ {
		exp[uint32(i)] = draws / k
	}
	// χ² with 9 degrees of freedom: 27.9 at p = 0.001.
	if x := chiSquare(obs, exp); x > 27.9 {
		t.Fatalf("χ² = %.1f, counts %v", x, obs)
	}
}

func TestWeightedRandomDistribution(t *testing.T) {
	const draws = 200000
	s := mustNew(t, wire.PolicyWeightedRandom, 7)
	pool(t, s, wire.Policy{Weight: 1}, wire.Policy{Weight: 2}, wire.Policy{Weight: 3}, wire.Policy{Weight: 4}, wire.Policy{Weight: 0})
	obs := counts(picks(s, draws))
	if obs[5] != 0 {
		t.Fatalf("weight 0 picked %d times", obs[5])
	}
	exp := map[uint32]float64{1: draws * .1, 2: draws * .2, 3: draws * .3, 4: draws * .4}
	// χ² with 3 degrees of freedom: 16.3 at p = 0.001.
	if x := chiSquare(obs, exp); x > 16.3 {
		t.Fatalf("χ² = %.1f, counts %v", x, obs)
	}
}

func TestRandomizedLeastUsedDistribution(t *testing.T) {
	const draws = 200000
	s := mustNew(t, wire.PolicyRandomizedLeastUsed, 9)
	q := uint32(MaxValue / 4)
	// weights MAX-load: 4q, 3q, 1q (+rounding), and 1 for the full PE.
	pool(t, s, wire.Policy{Load: 0}, wire.Policy{Load: q}, wire.Policy{Load: 3 * q}, wire.Policy{Load: MaxValue})
	obs := counts(picks(s, draws))
	exp := map[uint32]float64{1: draws * 4 / 8.0, 2: draws * 3 / 8.0, 3: draws * 1 / 8.0}
	if x := chiSquare(obs, exp); x > 16.3 {
		t.Fatalf("χ² = %.1f, counts %v", x, obs)
	}
	if obs[4] > 5 {
		t.Fatalf("fully loaded PE picked %d times", obs[4])
	}
}

func TestRandomizedDegradation(t *testing.T) {
	s := mustNew(t, wire.PolicyRandomizedLeastUsedDegr, 3)
	es := pool(t, s, wire.Policy{Load: 0, LoadDegradation: MaxValue / 2}, wire.Policy{Load: 0, LoadDegradation: MaxValue / 2})
	first := s.Select(1, nil)[0]
	if first.Degradation() != MaxValue/2 {
		t.Fatalf("degradation = %d", first.Degradation())
	}
	other := es[0]
	if other == first {
		other = es[1]
	}
	// Now other has weight MAX, first about MAX/2: other ≈ 2/3 of draws.
	obs := counts(func() []uint32 {
		var out []uint32
		for range 3000 {
			out = append(out, s.Select(1, nil)[0].ID)
			s.Update(es[0], es[0].Policy) // keep the state fixed
			s.Update(es[1], es[1].Policy)
			first.degradation = MaxValue / 2
			s.(*weighted).revalue(first)
		}
		return out
	}())
	if f := float64(obs[other.ID]) / 3000; f < 0.6 || f > 0.73 {
		t.Fatalf("share of the undegraded PE = %.2f, want ≈ 0.67", f)
	}
}

func TestWeightedRandomDPFValue(t *testing.T) {
	for _, tc := range []struct {
		p    wire.Policy
		want uint64
	}{
		{wire.Policy{Weight: 1000}, 1000},
		{wire.Policy{Weight: 1000, WeightDPF: MaxValue / 100, Distance: 50}, 500},
		{wire.Policy{Weight: 1000, WeightDPF: MaxValue / 100, Distance: 300}, 1},
		{wire.Policy{Weight: 1000, WeightDPF: MaxValue / 100, Distance: 100}, 0},
		{wire.Policy{Weight: 0}, 0},
		{wire.Policy{Weight: MaxValue, WeightDPF: MaxValue, Distance: MaxValue}, 1},
	} {
		if got := randomValue(wire.PolicyWeightedRandomDPF, &Entry{Policy: tc.p}); got != tc.want {
			t.Errorf("value(%+v) = %d, want %d", tc.p, got, tc.want)
		}
	}
}

// TestSelectDistinct checks for every policy that Select returns at most n
// distinct entries and at most the number of selectable entries.
func TestSelectDistinct(t *testing.T) {
	rng := seeded(99)
	for typ := range infos {
		t.Run(typ.Name(), func(t *testing.T) {
			s := mustNew(t, typ, 5)
			var es []*Entry
			for i := range 50 {
				e := &Entry{ID: uint32(i + 1), Policy: wire.Policy{Type: typ, Weight: 1 + rng.Uint32N(5),
					Priority: rng.Uint32N(4), Load: rng.Uint32(), LoadDegradation: rng.Uint32N(1 << 20),
					LoadDPF: rng.Uint32N(1000), WeightDPF: rng.Uint32N(1000), Distance: rng.Uint32N(100)}}
				s.Insert(e)
				es = append(es, e)
			}
			for i := range 500 {
				n := rng.IntN(60)
				got := s.Select(n, nil)
				if len(got) > n || len(got) > s.Len() || (n > 0 && len(got) == 0) {
					t.Fatalf("Select(%d) returned %d of %d", n, len(got), s.Len())
				}
				seen := map[*Entry]bool{}
				for _, e := range got {
					if seen[e] || e.owner == nil {
						t.Fatalf("Select(%d) returned %d twice or a removed entry", n, e.ID)
					}
					seen[e] = true
				}
				switch i % 3 {
				case 0:
					e := es[rng.IntN(len(es))]
					if e.owner != nil {
						s.Remove(e)
					} else {
						s.Insert(e)
					}
				case 1:
					e := es[rng.IntN(len(es))]
					p := e.Policy
					p.Load = rng.Uint32()
					p.Weight = 1 + rng.Uint32N(5)
					s.Update(e, p)
				}
				if o, ok := s.(*ordered); ok {
					checkTreap(t, o)
				}
			}
		})
	}
}

// checkTreap verifies the treap's order, heap property and size.
func checkTreap(t *testing.T, o *ordered) {
	t.Helper()
	var walk func(e *Entry) int
	var prev *Entry
	walk = func(e *Entry) int {
		if e == nil {
			return 0
		}
		if (e.left != nil && e.left.prio > e.prio) || (e.right != nil && e.right.prio > e.prio) {
			t.Fatal("heap property violated")
		}
		n := walk(e.left)
		if prev != nil && !less(prev, e) {
			t.Fatalf("order violated: %d before %d", prev.ID, e.ID)
		}
		prev = e
		return n + 1 + walk(e.right)
	}
	if n := walk(o.root); n != o.Len() {
		t.Fatalf("treap holds %d entries, Len = %d", n, o.Len())
	}
}

func TestWeightedRandomWithoutReplacement(t *testing.T) {
	s := mustNew(t, wire.PolicyWeightedRandom, 11)
	pool(t, s, wire.Policy{Weight: 1000000}, wire.Policy{Weight: 1}, wire.Policy{Weight: 1}, wire.Policy{Weight: 0})
	for range 100 {
		got := ids(s.Select(4, nil))
		slices.Sort(got)
		if !slices.Equal(got, []uint32{1, 2, 3}) {
			t.Fatalf("Select(4) = %v, want 1 2 3 once each", got)
		}
	}
}

func TestInsertTwicePanics(t *testing.T) {
	a := mustNew(t, wire.PolicyLeastUsed, 1)
	b := mustNew(t, wire.PolicyLeastUsed, 1)
	e := &Entry{ID: 1}
	a.Insert(e)
	b.Remove(e) // not b's: no-op
	if a.Len() != 1 || b.Len() != 0 {
		t.Fatal("Remove from the wrong selector had an effect")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	b.Insert(e)
}

func BenchmarkSelect(b *testing.B) {
	for _, typ := range []wire.PolicyType{wire.PolicyRoundRobin, wire.PolicyRandom, wire.PolicyWeightedRoundRobin,
		wire.PolicyWeightedRandom, wire.PolicyPriority, wire.PolicyLeastUsed, wire.PolicyLeastUsedDegradation,
		wire.PolicyPriorityLeastUsed, wire.PolicyRandomizedLeastUsed, wire.PolicyRandomizedLeastUsedDegr} {
		for _, n := range []int{1000, 100000} {
			b.Run(fmt.Sprintf("%s/%d", benchName(typ), n), func(b *testing.B) {
				s := mustNew(b, typ, 1)
				rng := seeded(2)
				for i := range n {
					s.Insert(&Entry{ID: uint32(i + 1), Policy: wire.Policy{Type: typ, Weight: 1 + rng.Uint32N(10),
						Priority: rng.Uint32N(10), Load: rng.Uint32(), LoadDegradation: rng.Uint32N(1 << 24)}})
				}
				buf := make([]*Entry, 0, 1)
				b.ReportAllocs()
				for b.Loop() {
					buf = s.Select(1, buf[:0])
				}
			})
		}
	}
}

func benchName(t wire.PolicyType) string {
	return map[wire.PolicyType]string{wire.PolicyRoundRobin: "RR", wire.PolicyRandom: "RAND",
		wire.PolicyWeightedRoundRobin: "WRR", wire.PolicyWeightedRandom: "WRAND", wire.PolicyPriority: "PRIO",
		wire.PolicyLeastUsed: "LU", wire.PolicyLeastUsedDegradation: "LUD", wire.PolicyPriorityLeastUsed: "PLU",
		wire.PolicyRandomizedLeastUsed: "RLU", wire.PolicyRandomizedLeastUsedDegr: "RLUD"}[t]
}

// FuzzSelector drives every policy with arbitrary operations and values: no
// panics, Select returns distinct inserted entries, Len stays right.
func FuzzSelector(f *testing.F) {
	f.Add(uint8(0), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add(uint8(1), []byte("\xff\xff\xff\xff\x00\x00\x00\x00\x01\x02\x03\x04selectselect"))
	f.Add(uint8(13), []byte("\x00\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xb0\xc0\xd0\xe0\xf0"))
	types := slices.Sorted(maps.Keys(infos))
	f.Fuzz(func(t *testing.T, which uint8, ops []byte) {
		typ := types[int(which)%len(types)]
		s, err := New(typ, seeded(uint64(which)))
		if err != nil {
			t.Fatal(err)
		}
		entries := make([]*Entry, 8)
		in := 0
		for len(ops) >= 6 {
			op, idx := ops[0]%4, int(ops[1])%len(entries)
			v := binary.BigEndian.Uint32(ops[2:6])
			ops = ops[6:]
			p := wire.Policy{Type: typ, Weight: v, Priority: v, Load: v, LoadDegradation: v >> 3,
				LoadDPF: v >> 7, WeightDPF: v >> 5, Distance: v & 0xfff}
			switch e := entries[idx]; {
			case op == 0 && e == nil:
				entries[idx] = &Entry{ID: uint32(idx), Policy: p}
				s.Insert(entries[idx])
				in++
			case op == 1 && e != nil:
				s.Remove(e)
				entries[idx] = nil
				in--
			case op == 2 && e != nil:
				s.Update(e, p)
			default:
				got := s.Select(int(v%12), nil)
				seen := map[*Entry]bool{}
				for _, g := range got {
					if seen[g] || entries[g.ID] != g {
						t.Fatalf("Select returned %d twice or not inserted", g.ID)
					}
					seen[g] = true
				}
			}
			if s.Len() != in {
				t.Fatalf("Len = %d, want %d", s.Len(), in)
			}
		}
	})
}

// TestSelectExcept: skipping entries is the same as selecting from a
// selector that never had them, for every deterministic policy, over many
// rounds (the skipped entries keep their state); random policies never
// return a skipped entry and keep the others' proportions.
func TestSelectExcept(t *testing.T) {
	rng := seeded(3)
	for typ := range infos {
		t.Run(typ.Name(), func(t *testing.T) {
			a, b := mustNew(t, typ, 11), mustNew(t, typ, 11)
			var ea, eb []*Entry
			skipped := map[uint32]bool{}
			for i := range 12 {
				p := wire.Policy{Type: typ, Weight: rng.Uint32N(4), Priority: rng.Uint32N(3), Load: rng.Uint32N(5) << 28,
					LoadDegradation: rng.Uint32N(3) << 26, LoadDPF: rng.Uint32N(1000), WeightDPF: rng.Uint32N(1000),
					Distance: rng.Uint32N(100)}
				x, y := &Entry{ID: uint32(i + 1), Policy: p}, &Entry{ID: uint32(i + 1), Policy: p}
				a.Insert(x)
				b.Insert(y)
				ea, eb = append(ea, x), append(eb, y)
				if i%3 == 1 {
					skipped[x.ID] = true
				}
			}
			for _, e := range eb {
				if skipped[e.ID] {
					b.Remove(e)
				}
			}
			skip := func(e *Entry) bool { return skipped[e.ID] }
			random := false
			switch a.(type) {
			case *uniform, *weighted:
				random = true
			}
			obs := map[uint32]int{}
			for round := range 3000 {
				n := 1 + round%4
				got := a.SelectExcept(n, nil, skip)
				for _, e := range got {
					if skipped[e.ID] {
						t.Fatalf("round %d: skipped entry %d returned", round, e.ID)
					}
					obs[e.ID]++
				}
				if random {
					if want := min(n, b.Len()); len(got) != want && typ != wire.PolicyWeightedRandom && typ != wire.PolicyWeightedRandomDPF {
						t.Fatalf("round %d: %d entries, want %d", round, len(got), want)
					}
					continue
				}
				if want := b.Select(n, nil); !slices.Equal(ids(got), ids(want)) {
					t.Fatalf("round %d: SelectExcept = %v, Select without the skipped = %v", round, ids(got), ids(want))
				}
			}
			if typ == wire.PolicyRandom {
				for _, e := range eb {
					if e.owner != nil && obs[e.ID] == 0 {
						t.Errorf("entry %d never returned", e.ID)
					}
				}
			}
		})
	}
}
