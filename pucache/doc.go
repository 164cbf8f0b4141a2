// Package pucache is the pool-user side of RSerPool (RFC 5352 §3.3, §3.5,
// §3.6): it resolves pool handles at a registrar, caches the results, and
// selects pool elements by each pool's policy.
//
// # Usage
//
//	c, err := pucache.New(pucache.Config{Registrars: []transport.Addr{transport.MustParseAddr("tcp://127.0.0.1:3863")}},
//		pucache.Options{Logger: log, Registerer: reg})
//	err = c.Start()
//	defer c.Close()
//	conn, err := c.Dial(ctx, "EchoPool") // resolve, select, connect (TCP or SCTP), fail over
//
// A program that connects often keeps the *Pool of a handle:
//
//	p := c.Pool("EchoPool")
//	e, err := p.Pick(ctx, nil)          // e.Network, e.Addr
//	... on a connection failure:
//	p.ReportUnreachable(e.ID)           // removed at once; ASAP Endpoint Unreachable sent
//
// Registrars are reached through a regclient.Client: the static
// Config.Registrars first, then the ones learned from ASAP Server
// Announces (Config.AnnounceGroup; HandleAnnounce and LearnRegistrar feed
// them directly), bounded and forgotten after Config.AnnounceLifetime; the
// server hunt tries up to three at once. One connection to the home
// registrar carries every request; a request without answer within
// Config.RequestTimeout (T1) is re-sent at another registrar. Each Handle
// Resolution carries RSPLIB's Handle Resolution Option asking for
// Config.Items PEs (default 128), so that the cache sees the whole pool.
// Dial connects to a PE by its registered user transport, TCP or SCTP.
//
// Cache: an entry is fresh for Config.StaleTimeout after its resolution; a
// background loop re-resolves every entry after half of that, so a
// selection never waits for a registrar once the pool has been resolved.
// When no registrar answers, the last result keeps being served (RFC 5352
// §3.3 C3, "answer from the stale data"). Concurrent resolutions of one
// handle share one request. A reported PE stays out of the cache for
// Config.HoldDown even if a registrar still lists it; if that would empty
// the pool, the registrar's list is used as is.
//
// Selection happens here, on the PU side, with the registrar's own engine
// (package policy), as an RSPLIB pool user does (policies.md §4): every PE
// of a response goes into the pool's policy.Selector in the order the
// registrar returned it, and each Pick is one selection from it, with the
// policy's update step. So round robin starts at the registrar's first PE
// and cycles in its order, weighted round robin gives each PE weight turns
// per round, priority takes the highest priority, the least-used family the
// lowest key (load, + load degradation for PLU, + the degradation this pool
// user accumulated for LUD) with ties in the registrar's order, and the
// random family draws in proportion to each PE's selection value. Weight 0
// is never selected (RFC 5356: no capacity; RSPLIB's WRR engine would give
// it one turn per round). A refresh updates the entries in place: a PE
// keeps its place in the rotation and its accumulated degradation unless
// its policy values changed. A policy type the engine does not know is
// served round robin in the registrar's order. TestSelectionAgreesWithRegistrar
// checks that a pool user and the registrar choose alike for every policy.
//
// # Concurrency
//
// Cache and Pool are safe for concurrent use. Pick on a resolved pool takes
// only the pool's selection lock (about 60-130 ns: BenchmarkPick). New
// starts nothing; Start starts the registrar client, a refresh loop and a
// report loop; Close stops every goroutine the cache started and waits for
// them.
//
// # Limitations
//
//   - Dynamic subscriptions (S flag) are not used; freshness comes from
//     background refreshes.
//   - Least-used selection uses the load values of the last resolution and
//     the degradation this pool user accumulated since.
//   - Pool entries live until Forget or Close.
package pucache
