// Package regclient is the registrar client of RSerPool's pool users and
// pool elements (RFC 5352 ASAP, PU/PE side): the set of known registrars,
// the server hunt, requests with their retransmission, and reconnection.
// pucache, pe-agent and `rserpool ctl` all reach registrars through it.
//
// # Usage
//
//	c := regclient.New(regclient.Config{Registrars: addrs, AnnounceGroup: "239.0.0.50:3863"})
//	err := c.Start()
//	defer c.Close()
//	m, err := c.Request(ctx, &wire.HandleResolution{PoolHandle: "EchoPool"})
//	resp := m.(*wire.HandleResolutionResponse)
//	err = c.Send(ctx, &wire.EndpointUnreachable{PoolHandle: "EchoPool", ID: id})
//
// A pool element keeps a connection and answers what the registrar sends
// unasked: it sets Config.Handler, whose methods run on the client's
// goroutine, and acts through Client.Link (Request, Send, Want, WakeAt).
//
// Registrars: the static Config.Registrars first, in order, then the ones
// learned from ASAP Server Announces (Config.AnnounceGroup, Learn,
// HandleAnnounce) in the order first heard, each forgotten T7 after it was
// last announced. Learned registrars are bounded (MaxLearned, 64) and can
// never displace a static one; a flood of announces from fake registrars
// can delay a new real one until the fakes expire, but not remove a known
// one that keeps announcing (Set). AnnounceAddrs is the one announce
// parser; its doc states the rule for announces without transports.
//
// The hunt (RFC 5352 §3.6): up to three registrars are tried at once
// (SH1), all at the start or, with Config.HuntStagger, one more each
// HuntStagger while none has answered (so that the first of the list wins
// when it answers; pe-agent staggers by 250 ms); a failed attempt is
// replaced by the next candidate at once (SH4); the
// first connection up wins and the other attempts are abandoned (SH3,
// SH6); when none is up within T5 the attempts are abandoned, T5 doubles
// up to RETRAN-MAX and the remaining candidates are tried (SH5). The
// registrar that failed last is tried again only when every other one
// failed. A hunt in which every registrar failed fails the pending
// requests (ErrNoRegistrar) and the next automatic hunt waits for the
// retry interval, doubling up to RETRAN-MAX; a new request or a newly
// learned registrar starts one at once.
//
// Requests (RFC 5352 §3.7): a request goes to the home registrar; a
// response completes it by type and key (pool handle, PE identifier;
// ASAP_ERROR and ENRP_ERROR answer the oldest request of their protocol).
// When T1 expires without an answer the home registrar is given up, the
// hunt finds another one and the request is re-sent there, at most
// MAX-REQUEST-RETRANSMIT times; so every request ends within
// (MaxRetransmit+1) × T1, answered or with ErrTimeout. Requests waiting
// for a connection are re-sent on the next one.
//
// Moving back (Config.Rebalance, off by default, on in pe-agent): the
// first static registrar is the preferred one. A client connected to
// another registrar checks the preferred one every Rebalance/4 with a
// connection and a Handle Resolution; once it has answered every check for
// Rebalance plus a random part of up to half of it, that connection
// becomes the connection (Handler.Up: a pool element registers there
// first) and the old one is closed. So the pool elements of a registrar
// that failed return to it, spread over time, after it has been up for a
// while. A PE stays registered throughout: the old registrar keeps it for
// its connection-loss grace after the old connection ends, and stops
// monitoring it when the new registrar's Handle Update names the new home,
// whichever of the two it hears first.
//
// Timers and their defaults (Config): T1 3 s, T5 5 s, RETRAN-MAX 30 s,
// retry interval 2 s, MAX-REQUEST-RETRANSMIT 2, T7 5 s. The RFC's T1 is
// 15 s and T5 10 s; these are RSPLIB-like values, which keep failovers
// short.
//
// # Concurrency
//
// A Client's protocol state belongs to one goroutine, its loop: the core
// (core.go) is a pure state machine that takes the time as an argument
// and returns its I/O as effects, which the loop carries out (client.go).
// Each connection has a reader and a writer goroutine, each hunt attempt a
// dialer; the loop owns them and Close waits for all of them. Client
// methods are safe for concurrent use; Handler methods and Link must stay
// on the loop (inside Handler callbacks and Client.Do) and must not block
// or call Client methods.
//
// The core's handling of received messages is fuzzed with hostile input
// (FuzzClient): arbitrary ASAP/ENRP messages in any order, responses to
// requests never sent, keep-alives for unknown elements, errors and
// announces, with connection losses and time passing; the invariants are
// bounded state and that every request completes exactly once within its
// time limit.
//
// # Limitations
//
//   - One connection at a time: the RFC's parallel T1 re-send while the
//     hunt runs is simplified into giving the home registrar up at T1.
//   - A registrar that stops reading fills a 256-message send queue and is
//     then given up; messages beyond MaxMessageSize are refused by the
//     transport.
//   - Subscriptions (the S flag of Handle Resolution) are not supported.
package regclient
