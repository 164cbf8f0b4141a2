// Package asap is the ASAP protocol core of a registrar (RFC 5352 §3):
// registration with its admission rules, deregistration, handle resolution,
// keep-alive monitoring of the PEs the registrar owns, endpoint-unreachable
// reports, and what ENRP asks of the ASAP side (monitoring PEs taken over
// from a dead peer, letting go of PEs that re-registered elsewhere). It is
// a pure state machine in the style of package registrar/enrp: it does no
// I/O, starts no goroutines and reads no clock.
//
// # Usage
//
//	c := asap.New(asap.Config{ID: id, ...}, hs, now)
//	for {
//		// a connection's first message:   c.Open(id, asap.ConnInfo{Remote: addrs, ASAP: t, TLSIdentities: ids})
//		// bytes b received on connection:  m, err := wire.ParseASAP(b); v := asap.Screen(b, m, err, max)
//		//                                  (send v.Reply; outs = c.Step(now, id, v.Msg))
//		// connection ended:                outs = c.Closed(now, id)
//		// timer at c.NextDeadline():       outs = c.Tick(now)
//		// ENRP KeepAliveHome/OwnershipLost: outs = c.Adopt(now, h, pe) / c.Disown(now, h, pe)
//		// association set-up (Reach) done: outs = c.Dialed(now, h, pe, id, ok)
//		for _, o := range outs { /* Send, Close, Change, Reach; the rest: count and log */ }
//	}
//
// # Concurrency
//
// A Core is not safe for concurrent use. It shares its handlespace with the
// ENRP node, which also changes it (peer-owned entries, takeovers); the
// goroutine that owns one owns both. The monitoring state of an owned PE
// lives in its handlespace.Element (Owner); every Element whose Home ENRP
// Server is this registrar carries it once the caller has carried out the
// node's outputs, and no other Element does.
//
// # Limitations
//
// The rules are those stated in package registrar's documentation; the
// core applies them and the registrar documents them. Per-source counting
// uses the registering connection's first address: an IPv6 host that
// rotates source addresses within its prefix is counted once per address,
// and the global caps (max_elements, max_connections) still bound it.
package asap
