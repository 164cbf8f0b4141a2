package pucache

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"

	"github.com/rserpool/rserpool/wire"
)

// Element is one pool element as a pool user sees it: where to connect and
// the policy values the registrar returned for it.
type Element struct {
	ID       uint32
	Network  string // "tcp" or "sctp"
	Addr     string // "host:port", ready for net.Dial
	Weight   uint32
	Priority uint32
	Load     uint32
}

// elementFromWire converts a Pool Element parameter. ok is false when the PE
// has no user transport this package can dial (no address, or a transport
// other than TCP and SCTP).
func elementFromWire(pe wire.PoolElement) (Element, bool) {
	var network string
	switch pe.User.Type {
	case wire.TransportTCP:
		network = "tcp"
	case wire.TransportSCTP:
		network = "sctp"
	default:
		return Element{}, false
	}
	if len(pe.User.Addrs) == 0 || pe.User.Port == 0 {
		return Element{}, false
	}
	a := pe.User.Addrs[0]
	// Prefer an IPv4 address when the PE lists several (SCTP multi-homing).
	for _, x := range pe.User.Addrs {
		if x.Is4() || x.Is4In6() {
			a = x
			break
		}
	}
	if !a.IsValid() || a.IsUnspecified() {
		return Element{}, false
	}
	return Element{
		ID:       pe.ID,
		Network:  network,
		Addr:     netip.AddrPortFrom(a.Unmap(), pe.User.Port).String(),
		Weight:   pe.Policy.Weight,
		Priority: pe.Policy.Priority,
		Load:     pe.Policy.Load,
	}, true
}

// maxSchedule bounds the weighted round-robin schedule (one entry per unit of
// normalised weight).
const maxSchedule = 4096

// snapshot is an immutable view of one pool: the elements sorted by ID (so
// that the round-robin order does not depend on the order of a response) and
// the precomputed state the pool's policy needs.
type snapshot struct {
	policy   wire.PolicyType
	elems    []Element
	schedule []uint16 // weighted round robin: element indexes
	cum      []uint64 // weighted random: cumulative weights
	total    uint64
	best     []uint16 // least-used / priority families: candidates
}

func newSnapshot(policy wire.PolicyType, elems []Element) *snapshot {
	slices.SortFunc(elems, func(a, b Element) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	// Drop duplicate IDs (a hostile or buggy response must not skew selection).
	elems = slices.CompactFunc(elems, func(a, b Element) bool { return a.ID == b.ID })
	if len(elems) > 1<<16-1 {
		elems = elems[:1<<16-1]
	}
	s := &snapshot{policy: policy, elems: elems}
	switch policy {
	case wire.PolicyWeightedRoundRobin:
		s.schedule = wrrSchedule(elems)
	case wire.PolicyWeightedRandom, wire.PolicyWeightedRandomDPF:
		s.cum = make([]uint64, len(elems))
		for i, e := range elems {
			w := uint64(e.Weight)
			if w == 0 {
				w = 1
			}
			s.total += w
			s.cum[i] = s.total
		}
	case wire.PolicyLeastUsed, wire.PolicyLeastUsedDegradation, wire.PolicyRandomizedLeastUsed,
		wire.PolicyRandomizedLeastUsedDegr, wire.PolicyLeastUsedDPF, wire.PolicyLeastUsedDegradationDPF:
		s.best = argBest(elems, func(e Element) uint64 { return uint64(e.Load) }, false)
	case wire.PolicyPriority:
		s.best = argBest(elems, func(e Element) uint64 { return uint64(e.Priority) }, true)
	case wire.PolicyPriorityLeastUsed, wire.PolicyRandomizedPriorityLeastUsed,
		wire.PolicyPriorityLeastUsedDegr, wire.PolicyRandomizedPriorityLUDegr,
		wire.PolicyPriorityLeastUsedDPF, wire.PolicyPriorityLeastUsedDegrDPF:
		// RFC 5356 §4.3: the smallest load+priority wins.
		s.best = argBest(elems, func(e Element) uint64 { return uint64(e.Load) + uint64(e.Priority) }, false)
	}
	return s
}

// argBest returns the indexes of the elements with the minimum (or maximum)
// key.
func argBest(elems []Element, key func(Element) uint64, max bool) []uint16 {
	var out []uint16
	var best uint64
	for i, e := range elems {
		k := key(e)
		better := len(out) == 0 || (!max && k < best) || (max && k > best)
		if better {
			best, out = k, append(out[:0], uint16(i))
		} else if k == best {
			out = append(out, uint16(i))
		}
	}
	return out
}

// wrrSchedule interleaves the elements in proportion to their weights
// (smooth weighted round robin, as nginx does), normalised by the GCD and
// scaled down to at most maxSchedule slots.
func wrrSchedule(elems []Element) []uint16 {
	if len(elems) == 0 {
		return nil
	}
	w := make([]uint64, len(elems))
	var g, sum uint64
	for i, e := range elems {
		w[i] = uint64(e.Weight)
		if w[i] == 0 {
			w[i] = 1
		}
		g = gcd(g, w[i])
	}
	for i := range w {
		w[i] /= g
		sum += w[i]
	}
	if sum > maxSchedule {
		// Scale down proportionally; every element keeps at least one slot.
		scaled := uint64(0)
		for i := range w {
			w[i] = max(1, w[i]*maxSchedule/sum)
			scaled += w[i]
		}
		sum = scaled
	}
	out := make([]uint16, 0, sum)
	cur := make([]int64, len(w))
	for range sum {
		bi := 0
		for i := range w {
			cur[i] += int64(w[i])
			if cur[i] > cur[bi] {
				bi = i
			}
		}
		cur[bi] -= int64(sum)
		out = append(out, uint16(bi))
	}
	return out
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// pick returns the index of the element the policy selects. rr is the
// pool's round-robin counter value for this selection.
func (s *snapshot) pick(rr uint64) int {
	n := len(s.elems)
	switch {
	case s.schedule != nil:
		return int(s.schedule[rr%uint64(len(s.schedule))])
	case s.cum != nil:
		x := rand.Uint64N(s.total)
		i, _ := slices.BinarySearch(s.cum, x+1)
		return min(i, n-1)
	case s.best != nil:
		// Ties among the best are broken round robin, so that an equally
		// loaded pool is spread rather than hammered on one PE until the
		// next refresh.
		return int(s.best[rr%uint64(len(s.best))])
	}
	switch s.policy {
	case wire.PolicyRandom:
		return rand.IntN(n)
	}
	return int(rr % uint64(n))
}

func (s *snapshot) usesCounter() bool {
	switch {
	case s.schedule != nil, s.best != nil:
		return true
	case s.cum != nil:
		return false
	}
	return s.policy != wire.PolicyRandom
}

// without returns a copy of s minus the element id, or s itself if absent.
func (s *snapshot) without(id uint32) *snapshot {
	i := slices.IndexFunc(s.elems, func(e Element) bool { return e.ID == id })
	if i < 0 {
		return s
	}
	elems := make([]Element, 0, len(s.elems)-1)
	elems = append(elems, s.elems[:i]...)
	elems = append(elems, s.elems[i+1:]...)
	return newSnapshot(s.policy, elems)
}

// PolicyName returns the DESIGN.md name of a policy type (or its number).
func PolicyName(t wire.PolicyType) string {
	switch t {
	case wire.PolicyRoundRobin:
		return "round-robin"
	case wire.PolicyWeightedRoundRobin:
		return "weighted-round-robin"
	case wire.PolicyRandom:
		return "random"
	case wire.PolicyWeightedRandom:
		return "weighted-random"
	case wire.PolicyPriority:
		return "priority"
	case wire.PolicyLeastUsed:
		return "least-used"
	case wire.PolicyLeastUsedDegradation:
		return "least-used-degradation"
	case wire.PolicyPriorityLeastUsed:
		return "priority-least-used"
	case wire.PolicyRandomizedLeastUsed:
		return "randomized-least-used"
	}
	return "0x" + strconv.FormatUint(uint64(t), 16)
}
