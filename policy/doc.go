// Package policy implements the RSerPool pool member selection policies of
// RFC 5356 and RSPLIB's extensions behind one Selector interface.
//
// # Usage
//
// A registrar (handle resolution) and a pool user (choosing from its cache)
// keep one Selector per pool:
//
//	sel, err := policy.New(wire.PolicyLeastUsed, nil)
//	e := &policy.Entry{ID: pe.ID, Policy: pe.Policy, Value: pe}
//	sel.Insert(e)
//	picked := sel.Select(3, nil) // up to 3 distinct entries, best first
//
// The selection follows the RSPLIB engine (policies.md §4): ordered policies
// (Round Robin, Weighted Round Robin, Priority and the Least Used family) keep
// their entries sorted by (policy key, SeqNumber) and the first selected entry
// gets a new SeqNumber and its update step; random policies (Random, Weighted
// Random, Randomized Least Used and the RSPLIB randomized variants) draw
// without replacement with probability proportional to each entry's value,
// from 64-bit randomness.
//
// Supported types: 0x00000001-5, 0x40000001-4, 0xb0001001-4, 0xb0002001-5.
// Weighted policies never select an entry of weight 0.
//
// # Concurrency
//
// A Selector is not safe for concurrent use; its owner serializes access.
// Nothing in this package starts goroutines or does I/O.
//
// # Limitations
//
// Costs per selected entry: Round Robin and Random O(1); the other policies
// O(log n) (a treap for ordered policies, a Fenwick tree for weighted random
// ones). The random generator is not cryptographic. Weighted Round Robin
// groups a PE's turns within a round instead of spreading them evenly, as
// RSPLIB does.
package policy
