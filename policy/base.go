package policy

import (
	"math"
	"math/rand/v2"

	"github.com/rserpool/rserpool/wire"
)

// base is the state every selector shares.
type base struct {
	typ     wire.PolicyType
	maxInc  int // entries per Select that get the update step; < 0 = all
	rng     *rand.Rand
	n       int
	nextSeq uint64
}

func (b *base) Type() wire.PolicyType { return b.typ }
func (b *base) Len() int              { return b.n }

func (b *base) seq() uint64 {
	b.nextSeq++
	return b.nextSeq
}

// attach claims e for this selector.
func (b *base) attach(e *Entry) {
	if e.owner != nil {
		panic("policy: Insert of an entry that is already in a selector")
	}
	e.owner = b
	e.seq = b.seq()
	e.degradation = 0
	e.selections = 0
	e.left, e.right = nil, nil
	b.n++
}

func (b *base) detach(e *Entry) {
	e.owner = nil
	e.left, e.right = nil, nil
	b.n--
}

// updates reports whether the i-th (0-based) selected entry gets the update step.
func (b *base) updates(i int) bool { return b.maxInc < 0 || i < b.maxInc }

// valuesChanged reports whether a re-registration changes the policy values.
func valuesChanged(a, b *wire.Policy) bool {
	if a.Type != b.Type || a.Weight != b.Weight || a.Priority != b.Priority || a.Load != b.Load ||
		a.LoadDegradation != b.LoadDegradation || a.LoadDPF != b.LoadDPF ||
		a.WeightDPF != b.WeightDPF || a.Distance != b.Distance || len(a.Raw) != len(b.Raw) {
		return true
	}
	for i := range a.Raw {
		if a.Raw[i] != b.Raw[i] {
			return true
		}
	}
	return false
}

func newSelector(t wire.PolicyType, opts Options) Selector {
	rng := opts.Rand
	if rng == nil {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	b := base{typ: t, maxInc: opts.MaxIncrement, rng: rng}
	random := false
	switch t {
	case wire.PolicyRandom, wire.PolicyWeightedRandom, wire.PolicyWeightedRandomDPF:
		random = true // MaxIncrement 0: no update step by default
	case wire.PolicyRandomizedLeastUsed, wire.PolicyRandomizedPriorityLeastUsed,
		wire.PolicyRandomizedLeastUsedDegr, wire.PolicyRandomizedPriorityLUDegr:
		random = true
		if b.maxInc == 0 {
			b.maxInc = 1
		}
	default:
		if b.maxInc == 0 {
			b.maxInc = 1
		}
	}
	switch {
	case t == wire.PolicyRoundRobin:
		return &ring{base: b}
	case t == wire.PolicyRandom:
		return &uniform{base: b}
	case random:
		return newWeighted(b)
	default:
		return newOrdered(b)
	}
}

// satAdd returns a+b saturated at MaxValue.
func satAdd(a, b uint32) uint32 {
	if s := uint64(a) + uint64(b); s < MaxValue {
		return uint32(s)
	}
	return MaxValue
}

// clampKey returns v limited to [0, MaxValue].
func clampKey(v uint64) uint64 { return min(v, MaxValue) }

// dpfPenalty is Distance × LoadDPF/MAX × MAX (policies.md §4 note 1).
func dpfPenalty(distance, dpf uint32) float64 {
	return float64(distance) * (float64(dpf) / MaxValue) * MaxValue
}

// clampRound rounds f and limits it to [0, MaxValue].
func clampRound(f float64) uint64 {
	f = math.Round(f)
	switch {
	case f <= 0:
		return 0
	case f >= MaxValue:
		return MaxValue
	}
	return uint64(f)
}

// randomValue is the selection value of e for the weighted random policies
// (policies.md §4 "Random policies").
func randomValue(t wire.PolicyType, e *Entry) uint64 {
	p := &e.Policy
	clamp := func(v int64) uint64 { return uint64(min(max(v, 1), MaxValue)) }
	switch t {
	case wire.PolicyWeightedRandom:
		return uint64(p.Weight)
	case wire.PolicyRandomizedLeastUsed:
		return clamp(MaxValue - int64(p.Load))
	case wire.PolicyRandomizedLeastUsedDegr:
		return clamp(MaxValue - int64(p.Load) - int64(e.degradation))
	case wire.PolicyRandomizedPriorityLeastUsed:
		return clamp(MaxValue - int64(p.Load) - int64(p.LoadDegradation))
	case wire.PolicyRandomizedPriorityLUDegr:
		return clamp(MaxValue - int64(p.Load) - int64(p.LoadDegradation) - int64(e.degradation))
	case wire.PolicyWeightedRandomDPF:
		// Computed in floating point: the penalty can exceed 2^63.
		v := float64(p.Weight) - math.Round(float64(p.Weight)*float64(p.Distance)*(float64(p.WeightDPF)/MaxValue))
		if v < 0 {
			return 1
		}
		return uint64(v)
	}
	return 1
}

// degrades reports whether policy t accumulates LoadDegradation on selection.
func degrades(t wire.PolicyType) bool {
	switch t {
	case wire.PolicyLeastUsedDegradation, wire.PolicyPriorityLeastUsedDegr,
		wire.PolicyLeastUsedDegradationDPF, wire.PolicyPriorityLeastUsedDegrDPF,
		wire.PolicyRandomizedLeastUsedDegr, wire.PolicyRandomizedPriorityLUDegr:
		return true
	}
	return false
}
