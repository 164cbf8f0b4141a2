package pucache

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/policy"
	"github.com/rserpool/rserpool/wire"
)

// The pool policies a PE can register with (every type with a wire
// encoding that the selection engine supports).
func wirePolicies() []wire.PolicyType {
	var out []wire.PolicyType
	for t := wire.PolicyType(1); t <= 5; t++ {
		out = append(out, t)
	}
	for _, t := range []wire.PolicyType{wire.PolicyLeastUsed, wire.PolicyLeastUsedDegradation,
		wire.PolicyPriorityLeastUsed, wire.PolicyRandomizedLeastUsed,
		wire.PolicyRandomizedPriorityLeastUsed, wire.PolicyRandomizedLeastUsedDegr,
		wire.PolicyPriorityLeastUsedDegr, wire.PolicyRandomizedPriorityLUDegr,
		wire.PolicyWeightedRandomDPF, wire.PolicyLeastUsedDPF, wire.PolicyLeastUsedDegradationDPF} {
		out = append(out, t)
	}
	for _, t := range out {
		if !policy.Supported(t) || !t.Known() {
			panic(fmt.Sprintf("policy %s is not selectable and encodable", t.Name()))
		}
	}
	return out
}

func isRandom(t wire.PolicyType) bool {
	switch t {
	case wire.PolicyRandom, wire.PolicyWeightedRandom, wire.PolicyRandomizedLeastUsed,
		wire.PolicyRandomizedPriorityLeastUsed, wire.PolicyRandomizedLeastUsedDegr,
		wire.PolicyRandomizedPriorityLUDegr, wire.PolicyWeightedRandomDPF:
		return true
	}
	return false
}

// randomPool registers n PEs of policy t in a fresh handlespace (the
// registrar's), with values drawn so that ties, weight 0, saturation and
// large degradations all occur.
func randomPool(t wire.PolicyType, n int, rng *rand.Rand, seed uint64) *handlespace.Handlespace {
	hs := handlespace.New(handlespace.Options{Rand: rand.New(rand.NewPCG(seed, 1))})
	now := time.Unix(1e9, 0)
	ids := rng.Perm(n) // registration order differs from ID order
	for i := range n {
		loads := []uint32{0, 1 << 28, 1 << 28, 3 << 30, math.MaxUint32}
		p := wire.Policy{Type: t,
			Weight:          rng.Uint32N(4),
			Priority:        rng.Uint32N(3),
			Load:            loads[rng.IntN(len(loads))],
			LoadDegradation: []uint32{0, 1 << 26, 1 << 30}[rng.IntN(3)],
			LoadDPF:         rng.Uint32N(1 << 20),
			WeightDPF:       rng.Uint32N(1 << 24),
			Distance:        50 * rng.Uint32N(3),
		}
		if i == 0 && rng.IntN(2) == 0 {
			p.Weight = max(p.Weight, 1) // most pools have a selectable PE
		}
		pe := wire.PoolElement{ID: uint32(1000 + ids[i]), HomeServer: 7, RegistrationLife: 30000, Policy: p,
			User: wire.Transport{Type: wire.TransportTCP, Port: uint16(7000 + i),
				Addrs: []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}}}
		if _, _, err := hs.Register("P", pe, now); err != nil {
			panic(err)
		}
	}
	return hs
}

// registrarResolve is what the registrar does for a Handle Resolution (see
// registrar/ops.go): up to n PEs by the pool policy, sent over the wire and
// decoded by the pool user.
func registrarResolve(t *testing.T, hs *handlespace.Handlespace, n int) *wire.HandleResolutionResponse {
	t.Helper()
	pol, sel, ok := hs.Resolve("P", n, nil)
	resp := &wire.HandleResolutionResponse{PoolHandle: "P", Policy: &pol}
	if !ok || len(sel) == 0 {
		resp.Policy, resp.Error = nil, &wire.OperationError{Causes: []wire.ErrorCause{{Code: wire.CauseUnknownPoolHandle}}}
	}
	for _, e := range sel {
		pe := e.PoolElement()
		pe.ASAP = wire.Transport{}
		resp.Elements = append(resp.Elements, pe)
	}
	b, err := resp.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := wire.ParseASAP(b)
	if err != nil {
		t.Fatal(err)
	}
	return m.(*wire.HandleResolutionResponse)
}

func first(r *wire.HandleResolutionResponse) uint32 {
	if len(r.Elements) == 0 {
		return 0
	}
	return r.Elements[0].ID
}

// TestSelectionAgreesWithRegistrar is the differential test of PU-side
// selection: for every policy and random pools, a pool user that resolved
// the whole pool and then picks from its cache chooses, pick after pick,
// what the registrar would have put first in each of its resolutions (the
// deterministic policies), or chooses with the same frequencies (the
// random ones) — both through the policy package, as RSPLIB's PU and
// registrar share one selection engine (policies.md §4).
func TestSelectionAgreesWithRegistrar(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 12))
	for _, typ := range wirePolicies() {
		t.Run(typ.Name(), func(t *testing.T) {
			pools := 25
			if isRandom(typ) {
				pools = 8 // each runs thousands of draws
			}
			for pool := range pools {
				seed := uint64(pool + 1)
				n := 1 + rng.IntN(12)
				hs := randomPool(typ, n, rng, seed)
				resp := registrarResolve(t, hs, n)
				if resp.Error != nil {
					continue // only weight-0 PEs: neither side selects any
				}
				var c chooser
				c.rng = rand.New(rand.NewPCG(seed, 2))
				c.apply(fromResponse(resp))
				if isRandom(typ) {
					compareRandom(t, typ, hs, &c, resp, pool)
					continue
				}
				want := first(resp)
				for i := range 200 {
					got, ok := c.pick(nil)
					if !ok || got.ID != want {
						t.Fatalf("pool %d (%d PEs), pick %d: pool user chose %d (%v), registrar %d",
							pool, n, i, got.ID, ok, want)
					}
					want = first(registrarResolve(t, hs, 1))
				}
			}
		})
	}
}

// compareRandom draws from the pool user's cache and from the registrar as
// often, and checks both against each other and, where the selection value
// stays fixed, against the spec's probabilities (policies.md §3-4).
func compareRandom(t *testing.T, typ wire.PolicyType, hs *handlespace.Handlespace, c *chooser, resp *wire.HandleResolutionResponse, pool int) {
	t.Helper()
	const draws = 4000
	pu, pr := map[uint32]int{}, map[uint32]int{}
	for range draws {
		e, ok := c.pick(nil)
		if !ok {
			t.Fatalf("pool %d: pool user selected nothing from %d PEs", pool, len(resp.Elements))
		}
		pu[e.ID]++
		pr[first(registrarResolve(t, hs, 1))]++
	}
	// Two-sample χ² (df = k-1); 0.1 % critical values for up to 11 df.
	crit := []float64{0, 10.8, 13.8, 16.3, 18.5, 20.5, 22.5, 24.3, 26.1, 27.9, 29.6, 31.3}
	var x float64
	k := 0
	for _, pe := range resp.Elements {
		a, b := float64(pu[pe.ID]), float64(pr[pe.ID])
		if a+b > 0 {
			x += (a - b) * (a - b) / (a + b)
			k++
		}
	}
	if k > 1 && x > crit[min(k-1, len(crit)-1)] {
		t.Errorf("pool %d: pool user %v and registrar %v differ (χ² = %.1f, df %d)", pool, pu, pr, x, k-1)
	}
	// Fixed selection values: the spec's probability of each PE.
	value := func(p wire.Policy) float64 {
		switch typ {
		case wire.PolicyRandom:
			return 1
		case wire.PolicyWeightedRandom:
			return float64(p.Weight)
		case wire.PolicyRandomizedLeastUsed:
			return max(1, float64(math.MaxUint32-p.Load))
		case wire.PolicyRandomizedPriorityLeastUsed:
			return max(1, float64(math.MaxUint32)-float64(p.Load)-float64(p.LoadDegradation))
		}
		return -1 // changes with every selection (degradation) or with distance
	}
	var total float64
	for _, pe := range resp.Elements {
		total += value(pe.Policy)
	}
	if total <= 0 {
		return
	}
	x, k = 0, 0
	for _, pe := range resp.Elements {
		exp := draws * value(pe.Policy) / total
		if exp == 0 {
			if pu[pe.ID] != 0 {
				t.Errorf("pool %d: PE %d with selection value 0 picked %d times", pool, pe.ID, pu[pe.ID])
			}
			continue
		}
		d := float64(pu[pe.ID]) - exp
		x += d * d / exp
		k++
	}
	if k > 1 && x > crit[min(k-1, len(crit)-1)] {
		t.Errorf("pool %d: pool user's picks %v do not follow the spec's probabilities (χ² = %.1f, df %d)", pool, pu, x, k-1)
	}
}

// TestSelectionSpecRules checks PU-side rules of policies.md on fixed
// pools: weight 0 is never chosen, round robin starts at the registrar's
// first PE and cycles in its order, priority takes the highest priority,
// least-used families the lowest key with ties in the registrar's order,
// and a refresh keeps the rotation.
func TestSelectionSpecRules(t *testing.T) {
	pe := func(id uint32, p wire.Policy) resolved {
		return resolved{Element{ID: id, Network: "tcp", Addr: fmt.Sprintf("127.0.0.1:%d", id)}, p}
	}
	picks := func(c *chooser, k int, exclude ...uint32) []uint32 {
		var out []uint32
		for range k {
			e, ok := c.pick(exclude)
			if !ok {
				out = append(out, 0)
				continue
			}
			out = append(out, e.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		typ     wire.PolicyType
		elems   []resolved
		exclude []uint32
		want    []uint32
	}{
		{"round robin in the registrar's order", wire.PolicyRoundRobin,
			[]resolved{pe(3, wire.Policy{}), pe(1, wire.Policy{}), pe(2, wire.Policy{})}, nil, []uint32{3, 1, 2, 3, 1, 2}},
		{"round robin skips what a failover tried", wire.PolicyRoundRobin,
			[]resolved{pe(3, wire.Policy{}), pe(1, wire.Policy{}), pe(2, wire.Policy{})}, []uint32{1}, []uint32{3, 2, 3, 2}},
		{"weighted round robin never picks weight 0", wire.PolicyWeightedRoundRobin,
			[]resolved{pe(1, wire.Policy{Weight: 2}), pe(2, wire.Policy{Weight: 0}), pe(3, wire.Policy{Weight: 1})}, nil,
			[]uint32{3, 1, 1, 3, 1, 1}}, // RSPLIB's WRR: the lower VirtualCounter first, turns grouped
		{"priority takes the highest, rotating among equals", wire.PolicyPriority,
			[]resolved{pe(1, wire.Policy{Priority: 1}), pe(2, wire.Policy{Priority: 5}), pe(3, wire.Policy{Priority: 5})}, nil,
			[]uint32{2, 3, 2, 3}},
		{"least used: lowest load, ties in the registrar's order", wire.PolicyLeastUsed,
			[]resolved{pe(4, wire.Policy{Load: 10}), pe(2, wire.Policy{Load: 10}), pe(9, wire.Policy{Load: 1000})}, nil,
			[]uint32{4, 2, 4, 2}},
		{"priority least used ranks by load + degradation (10/1000 vs 100/0)", wire.PolicyPriorityLeastUsed,
			[]resolved{pe(1, wire.Policy{Load: 10, LoadDegradation: 1000}), pe(2, wire.Policy{Load: 100})}, nil,
			[]uint32{2, 2, 2}},
		{"least used with degradation spreads between refreshes", wire.PolicyLeastUsedDegradation,
			[]resolved{pe(1, wire.Policy{Load: 0, LoadDegradation: 100}), pe(2, wire.Policy{Load: 150, LoadDegradation: 100})}, nil,
			[]uint32{1, 1, 2, 1, 2, 1}},
		{"weighted random: weight 0 is never picked", wire.PolicyWeightedRandom,
			[]resolved{pe(1, wire.Policy{Weight: 0}), pe(2, wire.Policy{Weight: 3})}, nil, []uint32{2, 2, 2, 2}},
		{"only weight 0: nothing", wire.PolicyWeightedRandom,
			[]resolved{pe(1, wire.Policy{Weight: 0})}, nil, []uint32{0, 0}},
		{"an unknown private policy is served round robin", wire.PolicyType(0xc0000001),
			[]resolved{pe(2, wire.Policy{}), pe(1, wire.Policy{})}, nil, []uint32{2, 1, 2}},
		{"duplicates in a response count once", wire.PolicyRoundRobin,
			[]resolved{pe(1, wire.Policy{}), pe(1, wire.Policy{}), pe(2, wire.Policy{})}, nil, []uint32{1, 2, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c chooser
			c.rng = rand.New(rand.NewPCG(1, 2))
			c.apply(tc.typ, tc.elems)
			if got := picks(&c, len(tc.want), tc.exclude...); !slices.Equal(got, tc.want) {
				t.Fatalf("picks %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("a refresh keeps the rotation and appends new PEs", func(t *testing.T) {
		var c chooser
		c.apply(wire.PolicyRoundRobin, []resolved{pe(1, wire.Policy{}), pe(2, wire.Policy{}), pe(3, wire.Policy{})})
		picks(&c, 1) // 1
		// The registrar now lists 3, 2, 4 (1 is gone, 4 is new).
		c.apply(wire.PolicyRoundRobin, []resolved{pe(3, wire.Policy{}), pe(2, wire.Policy{}), pe(4, wire.Policy{})})
		if got, want := picks(&c, 4), []uint32{2, 3, 4, 2}; !slices.Equal(got, want) {
			t.Fatalf("picks %v, want %v", got, want)
		}
		c.remove(3)
		if got, want := picks(&c, 3), []uint32{4, 2, 4}; !slices.Equal(got, want) {
			t.Fatalf("after remove: picks %v, want %v", got, want)
		}
	})
}

// BenchmarkPick is a pool user's selection on a resolved pool of 16 PEs.
func BenchmarkPick(b *testing.B) {
	for _, typ := range []wire.PolicyType{wire.PolicyRoundRobin, wire.PolicyLeastUsed, wire.PolicyWeightedRandom} {
		b.Run(typ.Name(), func(b *testing.B) {
			var c chooser
			var elems []resolved
			for i := range 16 {
				elems = append(elems, resolved{Element{ID: uint32(i + 1)}, wire.Policy{Weight: 1, Load: uint32(i)}})
			}
			c.apply(typ, elems)
			b.ReportAllocs()
			for b.Loop() {
				c.pick(nil)
			}
		})
	}
}
