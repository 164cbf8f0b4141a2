package wire

import (
	"errors"
	"strconv"
	"strings"
)

// fields returns pointers to the value fields that follow the Policy Type on
// the wire, in wire order (wire-format.md §3.8), and whether t is a policy
// with a known encoding. Unknown types (including RSPLIB's engine-only
// 0xb0002004/5) keep their values in Raw.
func (p *Policy) fields() (f [4]*uint32, n int, known bool) {
	switch p.Type {
	case PolicyRoundRobin, PolicyRandom:
		return f, 0, true
	case PolicyWeightedRoundRobin, PolicyWeightedRandom:
		f[0] = &p.Weight
		return f, 1, true
	case PolicyPriority:
		f[0] = &p.Priority
		return f, 1, true
	case PolicyLeastUsed, PolicyRandomizedLeastUsed:
		f[0] = &p.Load
		return f, 1, true
	case PolicyLeastUsedDegradation, PolicyPriorityLeastUsed,
		PolicyRandomizedPriorityLeastUsed, PolicyRandomizedLeastUsedDegr,
		PolicyPriorityLeastUsedDegr, PolicyRandomizedPriorityLUDegr:
		f[0], f[1] = &p.Load, &p.LoadDegradation
		return f, 2, true
	case PolicyWeightedRandomDPF:
		f[0], f[1], f[2] = &p.Weight, &p.WeightDPF, &p.Distance
		return f, 3, true
	case PolicyLeastUsedDPF:
		f[0], f[1], f[2] = &p.Load, &p.LoadDPF, &p.Distance
		return f, 3, true
	case PolicyLeastUsedDegradationDPF:
		f[0], f[1], f[2], f[3] = &p.Load, &p.LoadDegradation, &p.LoadDPF, &p.Distance
		return f, 4, true
	}
	return f, 0, false
}

// Known reports whether t has a wire encoding this package knows (RFC 5356
// and RSPLIB 0xb0001001-4, 0xb0002001-3).
func (t PolicyType) Known() bool {
	p := Policy{Type: t}
	_, _, k := p.fields()
	return k
}

type policyInfo struct {
	t     PolicyType
	name  string // CLI and config name
	title string // human-readable name
}

var policyTable = [...]policyInfo{
	{PolicyRoundRobin, "round-robin", "Round Robin"},
	{PolicyWeightedRoundRobin, "weighted-round-robin", "Weighted Round Robin"},
	{PolicyRandom, "random", "Random"},
	{PolicyWeightedRandom, "weighted-random", "Weighted Random"},
	{PolicyPriority, "priority", "Priority"},
	{PolicyLeastUsed, "least-used", "Least Used"},
	{PolicyLeastUsedDegradation, "least-used-degradation", "Least Used with Degradation"},
	{PolicyPriorityLeastUsed, "priority-least-used", "Priority Least Used"},
	{PolicyRandomizedLeastUsed, "randomized-least-used", "Randomized Least Used"},
	{PolicyRandomizedPriorityLeastUsed, "randomized-priority-least-used", "Randomized Priority Least Used (RSPLIB)"},
	{PolicyRandomizedLeastUsedDegr, "randomized-least-used-degradation", "Randomized Least Used with Degradation (RSPLIB)"},
	{PolicyPriorityLeastUsedDegr, "priority-least-used-degradation", "Priority Least Used with Degradation (RSPLIB)"},
	{PolicyRandomizedPriorityLUDegr, "randomized-priority-least-used-degradation", "Randomized Priority Least Used with Degradation (RSPLIB)"},
	{PolicyWeightedRandomDPF, "weighted-random-dpf", "Weighted Random with DPF (RSPLIB)"},
	{PolicyLeastUsedDPF, "least-used-dpf", "Least Used with DPF (RSPLIB)"},
	{PolicyLeastUsedDegradationDPF, "least-used-degradation-dpf", "Least Used with Degradation and DPF (RSPLIB)"},
	{PolicyPriorityLeastUsedDPF, "priority-least-used-dpf", "Priority Least Used with DPF (RSPLIB, no wire encoding)"},
	{PolicyPriorityLeastUsedDegrDPF, "priority-least-used-degradation-dpf", "Priority Least Used with Degradation and DPF (RSPLIB, no wire encoding)"},
}

// ErrUnknownPolicy is returned by ParsePolicyName for a name it does not know.
var ErrUnknownPolicy = errors.New("wire: unknown policy name")

// ParsePolicyName maps a CLI/config policy name (DESIGN.md: "round-robin",
// "least-used", ...) to its type. Names are case-insensitive; "_" may be used
// for "-". A number ("0x40000001" or decimal) is accepted as well.
func ParsePolicyName(s string) (PolicyType, error) {
	n := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-")
	for _, p := range policyTable {
		if p.name == n {
			return p.t, nil
		}
	}
	if v, err := strconv.ParseUint(n, 0, 32); err == nil && v != 0 {
		return PolicyType(v), nil
	}
	return 0, policyNameError(s)
}

type policyNameError string

func (e policyNameError) Error() string {
	return ErrUnknownPolicy.Error() + " " + strconv.Quote(string(e))
}
func (e policyNameError) Unwrap() error { return ErrUnknownPolicy }

// Name returns the CLI/config name of t ("round-robin"), or its number in
// hex for a type without a name.
func (t PolicyType) Name() string {
	for _, p := range policyTable {
		if p.t == t {
			return p.name
		}
	}
	return hexN(uint64(t), 8)
}

func (t PolicyType) String() string {
	for _, p := range policyTable {
		if p.t == t {
			return p.title
		}
	}
	return "Policy " + hexN(uint64(t), 8)
}

// Fields returns the names of the Policy struct fields that t carries on the
// wire, in wire order (for example ["Load", "LoadDegradation"]); nil for
// Round Robin, Random and types without a known encoding.
func (t PolicyType) Fields() []string {
	p := Policy{Type: t}
	f, n, _ := p.fields()
	names := make([]string, 0, n)
	for _, ptr := range f[:n] {
		switch ptr {
		case &p.Weight:
			names = append(names, "Weight")
		case &p.Priority:
			names = append(names, "Priority")
		case &p.Load:
			names = append(names, "Load")
		case &p.LoadDegradation:
			names = append(names, "LoadDegradation")
		case &p.LoadDPF:
			names = append(names, "LoadDPF")
		case &p.WeightDPF:
			names = append(names, "WeightDPF")
		case &p.Distance:
			names = append(names, "Distance")
		}
	}
	if len(names) == 0 {
		return nil
	}
	return names
}
