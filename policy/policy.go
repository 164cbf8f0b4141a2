package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/rserpool/rserpool/wire"
)

// ErrUnsupported is wrapped by the error New returns for a policy type this
// package does not implement.
var ErrUnsupported = errors.New("policy: unsupported policy type")

// MaxValue is the largest load, load degradation or DPF value: 100 % (1.0).
const MaxValue = 0xFFFFFFFF

// Entry is one pool element as seen by a Selector. The owner fills in ID,
// Policy and Value before Insert and must not modify Policy while the entry is
// inserted (use Selector.Update). The unexported fields are the selection
// state of policies.md §4 and belong to the Selector the entry is inserted in.
// An Entry can be in at most one Selector at a time.
type Entry struct {
	ID         uint32      // PE identifier
	selections uint32      // how often the entry was selected (saturating)
	Policy     wire.Policy // the PE's policy values; Type should equal the selector's type
	Value      any         // owner's data, for example the handlespace element

	owner       *base  // the selector holding the entry, nil when not inserted
	seq         uint64 // SeqNumber: ties of equal keys are broken by it
	k1          uint64 // cached sort key (ordered policies); WRR: RoundCounter
	left, right *Entry // treap children (ordered policies) or ring links (round robin)
	k2          uint32 // second sort key: WRR VirtualCounter, else 0
	degradation uint32 // accumulated degradation (LUD, PLUD, RLUD, RPLUD, LUD-DPF)
	prio        uint32 // treap priority
	slot        int32  // index in the random selectors' arrays
}

// Degradation returns the entry's accumulated load degradation (policies.md
// §4), the quantity that LUD, PLUD, RLUD, RPLUD and LUD-DPF add to the load.
func (e *Entry) Degradation() uint32 { return e.degradation }

// Selections returns how many times the entry has been selected since it was
// inserted.
func (e *Entry) Selections() uint64 { return uint64(e.selections) }

// selected counts one selection of e.
func (e *Entry) selected() {
	if e.selections != ^uint32(0) {
		e.selections++
	}
}

// Selector chooses pool elements by one pool member selection policy.
//
// A Selector is not safe for concurrent use. Insert, Remove and Update are
// O(log n) or better; Select is O(k log n) for k returned entries.
type Selector interface {
	// Type returns the policy type the selector implements.
	Type() wire.PolicyType
	// Insert adds e with a fresh SeqNumber and zero selection state. It
	// panics if e is already in a selector (a programming error).
	Insert(e *Entry)
	// Remove removes e; removing an entry that is not in this selector is a
	// no-op.
	Remove(e *Entry)
	// Update replaces e's policy values with p's (a re-registration). As in
	// RSPLIB, the accumulated degradation is reset when a value changed or
	// the degradation was non-zero; the SeqNumber is kept.
	Update(e *Entry, p wire.Policy)
	// Select appends up to n distinct entries to dst in policy order and
	// returns the extended slice, applying the policy's update step
	// (new SeqNumber, degradation, round counters) to the selected entries
	// as described in policies.md §4. n <= 0 selects nothing.
	Select(n int, dst []*Entry) []*Entry
	// SelectExcept is Select over the entries for which skip returns false
	// (skip nil: all): skipped entries are passed over as if absent, keep
	// their state and are not counted in n. A pool user uses it to leave
	// out the PEs a failover already tried.
	SelectExcept(n int, dst []*Entry, skip func(*Entry) bool) []*Entry
	// Len returns the number of inserted entries.
	Len() int
}

// Options tune a Selector.
type Options struct {
	// Rand is the source of randomness for the random policies; nil means a
	// generator seeded from the runtime's random source.
	Rand *rand.Rand
	// MaxIncrement is how many of the entries returned by one Select get the
	// update step (policies.md §4 "maxIncrement"). 0 means the policy's
	// default: 1 for the ordered and the randomized least-used policies, 0 for
	// Random, Weighted Random and Weighted Random DPF. A negative value means
	// every returned entry (RFC 5356 wording for Least Used with Degradation).
	MaxIncrement int
}

// New returns a Selector for policy type t with default options and the
// given random generator (nil = seeded randomly). The error wraps
// ErrUnsupported for a type that Supported rejects.
func New(t wire.PolicyType, rng *rand.Rand) (Selector, error) {
	return NewWithOptions(t, Options{Rand: rng})
}

// NewWithOptions is New with all options.
func NewWithOptions(t wire.PolicyType, opts Options) (Selector, error) {
	if !Supported(t) {
		return nil, fmt.Errorf("%w 0x%08x", ErrUnsupported, uint32(t))
	}
	return newSelector(t, opts), nil
}

// Supported reports whether New accepts policy type t: every RFC 5356 policy
// and RSPLIB's extensions 0xb0001001-4 and 0xb0002001-5.
func Supported(t wire.PolicyType) bool {
	_, ok := infos[t]
	return ok
}

// Adaptive reports whether policy t uses the PEs' dynamic load (its values
// change with re-registrations). False for unknown types. Policy names and
// their parser are wire.PolicyType.Name and wire.ParsePolicyName.
func Adaptive(t wire.PolicyType) bool { return infos[t].adaptive }

type info struct {
	adaptive bool
}

var infos = map[wire.PolicyType]info{
	wire.PolicyRoundRobin:                  {false},
	wire.PolicyWeightedRoundRobin:          {false},
	wire.PolicyRandom:                      {false},
	wire.PolicyWeightedRandom:              {false},
	wire.PolicyPriority:                    {false},
	wire.PolicyLeastUsed:                   {true},
	wire.PolicyLeastUsedDegradation:        {true},
	wire.PolicyPriorityLeastUsed:           {true},
	wire.PolicyRandomizedLeastUsed:         {true},
	wire.PolicyRandomizedPriorityLeastUsed: {true},
	wire.PolicyRandomizedLeastUsedDegr:     {true},
	wire.PolicyPriorityLeastUsedDegr:       {true},
	wire.PolicyRandomizedPriorityLUDegr:    {true},
	wire.PolicyWeightedRandomDPF:           {false},
	wire.PolicyLeastUsedDPF:                {true},
	wire.PolicyLeastUsedDegradationDPF:     {true},
	wire.PolicyPriorityLeastUsedDPF:        {true},
	wire.PolicyPriorityLeastUsedDegrDPF:    {true},
}
