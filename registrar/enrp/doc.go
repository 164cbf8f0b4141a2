// Package enrp is the ENRP protocol core of a registrar (RFC 5353): the peer
// list, Presence heartbeats and liveness, mentor discovery and the start-up
// handlespace download, Handle Update replication, the checksum audit and
// the takeover of dead peers. It is a pure state machine in the style of
// etcd-io/raft: it does no I/O, starts no goroutines and reads no clock.
//
// # Usage
//
//	n := enrp.New(enrp.Config{ID: id, ServerInfo: si}, hs, []string{"tcp://10.0.0.2:9901"}, now)
//	for {
//		// timer at n.NextDeadline():   outs = n.Tick(now)
//		// ENRP message m from src:      outs = n.Step(now, src, m)
//		// own PE added/updated/removed: outs = n.LocalChange(now, wire.ActionAddPE, handle, pe)
//		// connection ended (closed/reset): outs = n.PeerConnLost(now, addr, idsSeenOnIt...)
//		// dial to addr failed:             outs = n.PeerUnreachable(now, addr)
//		for _, o := range outs { /* Send, Ready, KeepAliveHome, OwnershipLost, PeerUp, PeerDown */ }
//	}
//
// An undecodable message is answered (or not) with ErrorFor. Tools such as
// RSPLIB's hsdump and `rserpool ctl handlespace` fetch the handlespace with
// Handle Table Requests from a server ID that is not a peer; they are served
// in chunks like a peer and are not added to the peer list (neither are
// senders of List Requests). Such a tool may introduce itself with one
// Presence R=0 (hsdump does): a sender known only that way, or only from a
// peer's List Response (RSPLIB lists hsdump among its peers), is tentative
// (Peer.Tentative) until its next Presence or a message only registrars
// send. Any other message from an unknown registrar adds it to the peer list
// and is answered with a Presence R=1.
//
// Failure detection: the caller reports every connection that ends
// (PeerConnLost, with the server IDs seen on it) and every dial that fails
// (PeerUnreachable). A live peer is then probed at once instead of after
// MaxTimeLastHeard; a peer whose probe cannot be sent is dead at once (RFC
// 5353 §3.4) and taken over, instead of after MaxTimeNoResponse. A
// registrar that dies closes its connections and its host refuses new
// ones, so its PEs change hands within a few message round trips; a silent
// one is found by the timers.
//
// # Concurrency
//
// A Node is not safe for concurrent use. It mutates the handlespace it was
// given (peer-owned entries, ownership after takeover, audit purges), so the
// goroutine that owns the handlespace (the registrar's event loop) must own
// the Node too. Messages in Outputs may share slices with the handlespace and
// must be encoded before the handlespace changes again or not at all.
//
// # Protocol choices
//
//   - Timers default to RSPLIB's values (heartbeat 2.444 s ± 12.5 %,
//     last-heard 5 s, no-response 5 s, takeover expiry 5 s, mentor discovery
//     5 s); the RFC's 30 s/61 s are configurable.
//   - Every Presence carries the PE checksum and our Server Information
//     (RSPLIB requires both). Periodic Presences are sent during start-up
//     too; they carry our own checksum, which is that of an empty set.
//   - Mentor: the first registrar whose Presence we receive during start-up
//     (a configured peer answers our start-up Presence R=1, others are heard
//     by multicast). List Request and Handle Table Request (W=0) go out back
//     to back, as in RSPLIB; serving starts after the final chunk (Ready) or
//     when MentorDiscovery has passed without a running download.
//   - The first Presence received point-to-point from a peer after start-up
//     is followed by one List Request to it (RSPLIB), so registrars
//     configured with different peers still find each other. List
//     Responses skip entries with server ID 0 and our own.
//   - Handle Update receivers follow the sender's statement of home and
//     ignore ADD_PE (and table entries) naming our own ID as home, as RSPLIB
//     does: only our ASAP side decides what we own, so a peer's stale view
//     cannot create entries we would have to monitor without a keep-alive
//     connection. After a takeover the PE is already ours here; a peer's
//     ADD_PE naming itself as home means the PE re-registered there, and the
//     Output OwnershipLost tells the registrar to stop monitoring it. Peer-
//     owned entries expire after their Registration Life (milliseconds, as
//     RSPLIB; 0xffffffff = never) unless refreshed. Ordering: see LocalChange.
//   - Audit: a Presence (not multicast, after start-up) whose checksum
//     differs from ours for its sender starts a W=1 download unless one with
//     that peer runs; entries still marked after the final chunk are purged.
//   - Takeover arbitration defaults to LowerIDWins, RSPLIB's rule, the
//     reverse of RFC 5353 §3.5.1 (HigherIDWins is available); both
//     initiators must use the same rule. A peer owning no PEs is dropped
//     without a takeover. Without other live peers the takeover wins at once.
//     The winner's PEs get no expiry and a KeepAliveHome Output each.
//   - Configured peers that die return to ID 0 and are found again when a
//     registrar answers at their address.
//
// # Limitations
//
//   - The peer list is capped (Config.MaxPeers) and so are concurrently
//     served table downloads (Config.MaxSessions; further requesters get
//     R=1), so that hostile senders cannot grow memory without bound.
//   - A mentor that fails or rejects is not replaced at once: the next
//     Presence from any peer starts a new download, and MentorDiscovery
//     ends the start-up when none comes.
//   - No order exists between updates of different registrars: a late ADD_PE
//     from a PE's previous home can move it back there until the audit or the
//     PE's next re-registration repairs it.
//   - A Handle Table download serves a snapshot of the keys taken at its
//     first request; PEs added later reach peers by Handle Update only.
//   - The T bit (takeover suggestion) of Handle Updates is accepted and
//     ignored; distances of DPF policies are not adjusted.
package enrp
