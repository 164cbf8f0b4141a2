// Package registrar is an RSerPool pool registrar (RFC 5351-5356): the ASAP
// server that PEs register with and PUs resolve pool handles at, and the
// monitor of every PE it owns.
//
// # Usage
//
//	cfg := registrar.DefaultConfig()
//	cfg.ASAP.Listen = []string{"tcp://127.0.0.1:0"}
//	r, err := registrar.New(cfg, registrar.Options{Logger: log, Registerer: reg})
//	err = r.Start()         // binds every listener; bind errors are returned here
//	addrs := r.ASAPAddrs()  // "tcp://127.0.0.1:40123"
//	...
//	err = r.Shutdown(ctx)   // or r.Close()
//
// Configuration comes from DefaultConfig, LoadConfig (strict TOML: unknown
// keys and bad values are errors naming the key; a file, or a directory
// whose *.toml files are merged, internal/confdir) or both; Reload applies
// limits, authorization, timers and registration rules at run time.
//
// # Layout
//
// The ASAP protocol is the pure core of package registrar/asap: state +
// (now, connection, message) → outputs, no I/O, no goroutines, no clock,
// like the ENRP node of package registrar/enrp. This package is their I/O
// shell:
//
//   - loop.go: the event loop owning handlespace, core and node; it feeds
//     them messages, connection ends and timers and carries out their
//     outputs (queue encoded messages, pass changes to ENRP and OnChange,
//     start association set-ups, count, log);
//   - conn.go: per-connection reader (rate limit, asap.Screen for malformed
//     and unexpected messages) and writer (bounded send queue);
//   - registrar.go: New/Start/Reload/Shutdown, accept loops with the
//     connection limits; enrp.go: ENRP connections, multicast, enrp.allow;
//     dial.go: association set-ups to PEs; admin.go, metrics.go, config.go.
//
// # Protocol decisions
//
//   - Registration Life is in milliseconds (RSPLIB). Owned PEs are monitored
//     by keep-alive and not expired by their life, unless
//     registration.expire_owned is set.
//   - PEs register over the TCP mapping (this project's extension, the
//     default) or SCTP; both use the same code above transport.Conn. The PE's
//     ASAP Transport is the connection's remote address (TCP Transport) or all
//     SCTP peer addresses (SCTP Transport).
//   - Keep-alives (ASAP_ENDPOINT_KEEP_ALIVE, H=0, with RSPLIB's PE Identifier)
//     go over the connection the PE registered on, keepalive_interval after
//     the registration or the last ack; no ack within keepalive_timeout
//     removes the PE. When a connection ends without a deregistration its
//     PEs are removed timers.connection_loss_grace (500 ms) later
//     (registration.remove_on_connection_loss, default true; RSPLIB removes
//     them at once, grace 0 does too): a re-registration over a new
//     connection in time, here or at a peer (its Handle Update), keeps the
//     PE without a removal in between. Without remove_on_connection_loss
//     they get one keepalive_timeout. Connections this registrar closes
//     when it shuts down are not announced as removals: its peers take its
//     PEs over and the PEs re-register elsewhere.
//   - Every user-transport address must be an address of the registering
//     connection (RFC 5352 §2.2.1), else cause 0xa; switch it off with
//     registration.require_address_subset = false for agents that register
//     backends on other hosts. 0.0.0.0 and :: stand for the connection's
//     source address (useful behind NAT).
//   - Handle resolution: PEs picked by the pool policy, RSPLIB's Handle
//     Resolution Option honoured (absent or 0 ⇒ resolution_items, default 3;
//     capped at max_resolution_items, default 128; 0xffffffff ⇒ the cap), the
//     overall Policy parameter always present; unknown pool ⇒ Pool Handle +
//     Operation Error 0x9.
//   - Endpoint Unreachable reports are counted per PE; at
//     unreachable_threshold (default 3, RSPLIB "≥ 3") the PE is removed.
//   - Rejection causes: empty handle, PE ID 0, bad port or address count ⇒
//     0x3 Invalid Values; a handle longer than limits.max_handle_length ⇒
//     0x3 with the Pool Handle TLV (the RFC code rather than RSPLIB's private
//     0xf004); authorization (allow lists, TLS identities, address subset) ⇒
//     0xa; any cap (pools, PEs, PEs per pool, PEs per source address,
//     message rate) ⇒ 0x6 Lack of Resources; pool consistency ⇒ 0x5/0x7/0x8
//     from the handlespace.
//   - Per-source caps: limits.max_source_elements (default 1,000) PEs
//     registered from one source address (the registering connection's
//     first address; re-registering a counted PE is always allowed, PEs
//     taken over from a dead peer are not counted), and
//     limits.max_source_connections (default 256) accepted ASAP
//     connections from one address (closed at accept). Both count in
//     rserpool_registrar_limit_rejections_total (limit="source_elements",
//     "source_connections").
//   - ASAP_ERROR (procedures.md §15): unknown message type with bits 01 ⇒
//     cause 0x2 with the message; unknown parameters with report bits ⇒ one
//     cause 0x1 per TLV (for skip-and-report parameters the message is still
//     processed); invalid values ⇒ 0x3 with the TLV; other framing errors ⇒
//     RSPLIB's 0x0010; a message a registrar does not expect (a response,
//     a cookie, an announce) ⇒ 0x2 with the message. An ASAP_ERROR is never
//     answered. After limits.max_errors such messages the connection is
//     closed. Frames above limits.max_message_size close the connection.
//   - Requests beyond limits.messages_per_second are answered with 0x6
//     (registration, deregistration, resolution) or dropped; keep-alive acks
//     are never dropped.
//   - ASAP Server Announce by UDP multicast (off unless announce.enabled),
//     carrying a TCP or SCTP Transport parameter per ASAP listener.
//
// # ENRP
//
// With enrp.listen, enrp.peers or enrp.multicast set, the registrar runs the
// ENRP node of package registrar/enrp on its event loop: received ENRP
// messages, changes of own PEs (Handle Updates), connection losses and the
// node's timer all go through the loop, which owns handlespace and node.
//
//   - Transports: tcp:// is the TCP mapping carrying ENRP with PPID 12 (this
//     project's extension, port 9901 by convention), sctp:// kernel SCTP,
//     tls:// mutual TLS (client certificates required and verified against
//     tls.client_ca_file; enrp.peer_identities restricts them further, both
//     ways).
//   - One outgoing connection per peer address, dialed on demand when the
//     node sends there, kept while it works. Incoming connections are kept
//     under their remote address so that answers to requests (List/Handle
//     Table Responses) go back over them. sctp:// peers are dialed from the
//     first sctp:// ENRP listener's endpoint (it shares its port), as
//     RSPLIB does: RSPLIB drops a Presence whose Server Information names
//     another port than its association's. Between two such endpoints
//     there is one association; a dial that collides with the one the peer
//     opened hands its queue to it.
//   - Failure detection: a registrar that dies closes its connections (its
//     kernel does), so every connection that ends, dialed or accepted
//     (matched by the server IDs seen on it), makes the node probe its peer
//     at once (PeerConnLost), and a dial that fails is reported
//     (PeerUnreachable): a peer whose probe cannot be sent is dead at once
//     and taken over (RFC 5353 §3.4). A SIGKILLed peer's PEs are owned by a
//     survivor within milliseconds (TestE2EDefaultsTakeoverAfterSIGKILL).
//     A peer that goes silent (a black-holed host) is found by the timers:
//     max_time_last_heard + max_time_no_response (5 s + 5 s). Each peer
//     has a bounded queue (16,384 messages); overflow is dropped and counted
//     (the checksum audit repairs what a lost Handle Update missed).
//   - Presence by UDP multicast (enrp.multicast, default group
//     239.0.0.51:9901) for discovery; only Presences are accepted from it.
//   - enrp.allow (CIDRs) restricts peers by address: accepted connections
//     from outside it are closed, peers outside it are not dialed (a name
//     is checked once resolved), multicast Presences from outside it are
//     ignored; each counts as limit="enrp_allow". Empty (the default)
//     allows any source, so that RSPLIB registrars (which have no TLS)
//     interoperate; the registrar then warns at start when ENRP listens
//     (or listens by multicast) without TLS: "ENRP accepts unauthenticated
//     peers from any source; set enrp.allow or use tls://".
//   - Tools are not peers: a sender known only from one Presence R=0
//     without PEs (RSPLIB's hsdump, `rserpool ctl handlespace`) or only
//     from a peer's List Response is tentative (enrp.Peer.Tentative): not
//     logged, not counted in rserpool_registrar_peers, not in /handlespace,
//     until it answers our Presence.
//   - ASAP is served only after the node's start-up synchronisation (mentor
//     List and Handle Table download, or mentor_discovery without an
//     answer): listeners are bound at Start, connections wait in the
//     backlog, /healthz answers 503 until then (RFC 5353 §3.2). Without
//     peers and without multicast the registrar serves at once.
//   - Takeover over SCTP (RSPLIB behaviour): when a PE taken over, or
//     owned and due for a keep-alive, has no connection here and its ASAP
//     Transport is SCTP with a usable address and port, the registrar opens
//     an association to that address (off the loop, at most one set-up per
//     PE, at most 16 at once, 10 s each), serves it like an accepted ASAP
//     connection, makes it the PE's connection and sends the Keep-Alive with
//     H=1 and the PE Identifier there. A failed set-up changes nothing: the
//     keep-alive timeout removes the PE as before.
//   - Takeover over the TCP mapping (DESIGN.md's open question): a PE's
//     only ASAP path is the connection it opened to its home, so the winner
//     of a takeover cannot send it the Keep-Alive with H=1 unless the PE is
//     also connected to it. The winner records itself as the new home and
//     monitors the entry for one keep-alive interval plus timeout; the PE
//     (pe-agent) re-registers on its own when its home connection dies, at
//     whichever registrar it reaches. Both paths converge on the (pool
//     handle, PE ID) key: a re-registration here just refreshes the entry;
//     one at another registrar is announced by a Handle Update naming that
//     registrar as home, which ends our monitoring (OwnershipLost). A PE
//     that re-registers nowhere is removed when that grace period ends, and
//     the removal is replicated. No duplicates arise because PE identity is
//     the key everywhere.
//   - Metrics: rserpool_registrar_peers (live peers), and counters
//     rserpool_registrar_enrp_handle_updates_{sent,received}_total,
//     _enrp_takeovers_total, _enrp_audits_total,
//     _enrp_messages_dropped_total. /handlespace lists each owner's checksum
//     and the peer list.
//
// # Concurrency
//
// One event loop goroutine owns the handlespace, the ASAP core (with the
// keep-alive timers and all per-PE state) and the ENRP node; connection
// readers decode messages and send them to it, and it answers through each
// connection's bounded send queue (a client that does not read is
// disconnected instead of blocking the loop). Nothing on the loop or an
// accept loop waits for a peer: a transport's Close, which waits up to 2 s
// for the peer's end of stream, runs in the background (connections turned
// away at accept through at most 256 closers, beyond which accepting slows
// down). Changes of owned PEs are reported through Options.OnChange on the
// loop goroutine: the hook for ENRP replication. Every exported method is
// safe for concurrent use; Shutdown and Close wait for every goroutine.
//
// A connection's reader runs only while there is input: an ASAP connection
// over the plain TCP mapping with nothing to read is parked
// (transport.Parker, Linux) and its goroutine ends; the Parker starts a new
// one when input arrives or the connection ends. An idle connection thus
// holds no goroutine and no buffer (TLS and SCTP connections keep their
// reader; ENRP peer connections, a few, keep theirs).
//
// The admin HTTP server is internal/admin's, with its bounds on slow and
// idle clients (5 s header, 30 s idle, 256 connections at once). Its
// status page (status.go) is taken on the loop in one turn, bounded to
// 200 pools of 100 PEs.
//
// # Limitations
//
// A connection that stalls inside a TCP-mapping chunk costs about 13 KiB
// of memory (its reader goroutine and a 4 KiB buffer, more only as a large
// chunk's bytes arrive) until the transport's 30 s chunk timeout (measured,
// TestE2EStalledChunkHeaders): up to about 3.5 MiB per source address at
// the default cap, and max_connections (20,000: about 270 MiB) for many
// sources. An idle connection costs about 4 KiB (TestConnMemory). Per-source caps count addresses, so a host with many addresses
// (an IPv6 prefix) is bounded only by the global caps. PEs replicated from
// ENRP peers are not subject to max_elements, max_pools or
// max_pool_elements: a trusted peer set is assumed (enrp.allow, TLS).
//
// ENRP settings change only on restart; over the TCP mapping the takeover
// Keep-Alive with H=1 reaches only PEs connected to the winner (see ENRP).
// An SCTP association set-up to a PE is bounded by the kernel's INIT
// retransmissions, not by the 10 s limit (transport.Dial checks the
// context only at the start), and Shutdown waits for it. Dynamic handle
// resolution updates (S flag) are not offered. Announces carry no TLS
// transports. Listeners, TLS and announce settings change only on restart.
package registrar
