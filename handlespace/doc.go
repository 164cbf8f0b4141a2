// Package handlespace is the registrar's handlespace: pools keyed by pool
// handle, pool elements keyed by PE ID, with the indexes a registrar needs:
// selection by the pool policy (package policy), per-owner PE checksums
// (RFC 5353 §3.6.2, maintained incrementally), a per-owner list for
// takeover and table responses, and an expiry heap.
//
// # Usage
//
//	hs := handlespace.New(handlespace.Options{})
//	e, created, err := hs.Register("EchoPool", pe, now) // err: *RejectError
//	_, pes, ok := hs.Resolve("EchoPool", 3, nil)
//	sum := hs.Checksum(myID)                             // for ENRP_PRESENCE
//	for _, e := range hs.Expired(now, nil) { hs.Deregister(e.Pool, e.ID) }
//
// # Concurrency
//
// A Handlespace is a pure data structure: no I/O, no goroutines, time is
// passed in. It is not safe for concurrent use; one goroutine (the registrar's
// loop) owns it. Callbacks of the iteration methods must not modify it.
//
// # Limitations
//
// The pool consistency rules are those of RFC 5352 §3.1 (policy type, user
// transport type, Transport Use). Authorization, address checks and the
// removal policy for unreachable PEs belong to the registrar. Pools and
// Elements iterate in sorted order and therefore sort on each call
// (O(n log n)); use OwnedBy for the per-owner hot path.
//
// Costs: Register, Deregister, SetHome and SetExpiry are O(log n); Resolve is
// O(k log n) for k returned PEs (O(k) for Round Robin and Random); Checksum is
// O(1). Memory: about 385 bytes per PE (100,000 PEs with one IPv4 TCP
// transport and no ASAP transport, TestMemoryPerPE; a single-address ASAP
// transport is stored inline too). The cause information of 0x7/0x8 rejections is
// the transport of an arbitrary PE of the pool.
package handlespace
