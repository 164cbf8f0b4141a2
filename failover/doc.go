// Package failover connects one client connection to a live pool element:
// it tries PEs in policy order within a budget and, optionally, replays the
// client's first bytes to another PE when the first one fails before
// answering.
//
// # Usage
//
//	d := failover.NewDialer(cache.Pool("EchoPool"), failover.Config{Attempts: 4, ConnectTimeout: time.Second})
//	var tried failover.Tried
//	conn, pe, err := d.Dial(ctx, nil, &tried)
//
// Dial tries PEs in the pool's policy order, never one that already failed
// for this client connection (Tried), each for at most ConnectTimeout and all
// of them within Deadline. Each failed PE is reported (pucache
// ReportUnreachable: removed from the cache at once, ASAP Endpoint
// Unreachable sent) and OnFailure is called. When every PE the cache knows
// has failed, Dial backs off (Backoff, doubling up to 1 s), resolves the pool
// again and continues with PEs it has not tried, as long as attempts remain.
//
// # Hedged connects
//
// When a connect is still pending after the hedge delay (Config.HedgeDelay;
// adaptive by default: the p99 of the pool's recent connect times, between
// MinHedgeDelay and MaxHedgeDelay), the next PE in policy order is tried
// alongside it and the first to connect wins. The overtaken PE becomes a
// suspect: it is not reported (its attempt finishes in the background,
// owned by the client's Tried, and only a failure is reported), and picks
// skip it while another PE is left, until it connects, fails, or ten
// connect timeouts pass. A PE whose SYNs are dropped so costs a client at
// most the hedge delay, not the connect timeout. The event loops of the
// proxy drive the same policy through Pick, Next, HedgeDelay, Connected,
// Overtaken and Fail.
//
// # Replay buffer
//
// DialReplay (Config.ReplayBuffer > 0) also covers a PE that accepts the
// connection and then closes or resets it without sending a single byte —
// a PE that crashed or was killed while it held the client's first request.
// It keeps a copy of everything the client sends until the PE's first byte
// arrives. The replay happens when, and only when, all of these hold:
//
//   - the PE closed (FIN) or reset the connection, or the read failed;
//   - the PE had not sent any byte to the client on this connection;
//   - every byte the client sent so far fits in ReplayBuffer;
//   - the budget (Attempts, Deadline) has an attempt left.
//
// Then the PE is reported, another one is connected (prelude first), the
// copy is written to it and, if the client had already half-closed, the
// half-close is repeated. As soon as the PE sends a byte, or the client sends
// more than ReplayBuffer, the connection is committed: the copy is dropped
// and no replay happens any more. With Config.FirstByteTimeout, a PE that
// has the client's bytes and sends nothing within it (a hung process whose
// kernel still accepts) counts as failed too: it is reported and the copy
// replayed to another PE. Use it only for request/response protocols
// whose first request is safe to run twice (a PE may have executed it before
// dying), and never for protocols where the server speaks first and silence
// is normal for long (the phase waits for the PE's first byte).
//
// # Concurrency
//
// A Dialer is safe for concurrent use; a Tried belongs to one client
// connection. Dial starts a goroutine per attempt; those a hedge overtook
// may outlive Dial (each ends within ConnectTimeout): Tried.Wait waits for
// them. DialReplay starts two goroutines for the replay phase and waits for
// both before it returns.
//
// # Limitations
//
// A PE that answers and then fails is not recovered (the client has seen
// part of an answer). A request that makes every PE crash is replayed to
// up to Attempts PEs, and each of them is reported.
package failover
