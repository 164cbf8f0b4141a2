// Package session is RSerPool's session layer (RFC 5351 §3.4, RFC 5352
// §3.8-3.9, §6.5): the data channel between a pool user and a pool element
// together with its ASAP control channel, which carries the PE's cookies
// (state for a failover), the pool user's Cookie Echo after a failover,
// and business cards (preferred failover PEs).
//
// Over SCTP the two channels share the association and are told apart by
// the PPID (ASAP = 11, the application's own otherwise); over the TCP
// mapping they share one connection with the same DATA-chunk PPID. A PE
// that runs a control channel registers its user transport with Transport
// Use "data plus control", as RSPLIB's enhanced-mode PEs do.
//
// # Usage
//
// A pool user opens a session with a pool and talks in messages:
//
//	cache, _ := pucache.New(pucache.Config{Registrars: regs}, pucache.Options{})
//	cache.Start()
//	s, err := session.Dial(ctx, "PingPongPool", session.Config{Cache: cache, PPID: 33})
//	defer s.Close()
//	err = s.Send(ctx, request)      // or s.Write: s is an io.ReadWriter too
//	m, err := s.Recv(ctx)           // m.Data, m.PPID
//	if errors.Is(err, session.ErrFailover) {
//		// the session moved to another PE (after echoing the last cookie):
//		// send again what has no answer yet
//	}
//
// When the association ends (the PE died, closed, or its transport's
// heartbeats went unanswered) or the application calls Failover, the
// session reports the PE unreachable, picks the next one — the PEs of the
// last business card in the card's order, then the pool's policy through
// pucache — connects, sends the last cookie as a Cookie Echo before
// anything else, and tells the application once: as a *FailoverError from
// Send (which then did not send its message) or Recv, whichever meets it
// first, or as Failover's nil error. Requests the application sends again
// may have reached the old PE already, so make them idempotent (a sequence
// number in the request and in the cookie does it), and let the PE send
// the cookie before the answer it belongs to.
//
// A pool element serves sessions:
//
//	srv, _ := session.NewServer(session.ServerConfig{
//		Element: peagent.PEConfig{Registrars: regs, PoolHandle: "PingPongPool"},
//		PPID:    33,
//		Handler: func(ctx context.Context, p *session.Peer) {
//			for {
//				m, err := p.Recv(ctx)
//				if err != nil {
//					return
//				}
//				if m.CookieEcho { // first message after a failover: restore
//					state, err := signer.Verify(m.Data)
//					...
//				}
//				p.SendCookie(signer.Sign(newState))
//				p.Send(answer)
//			}
//		},
//	})
//	ln, _ := transport.Listen("tcp://192.0.2.10:0", nil)
//	go srv.Serve(ctx, ln)           // registers ln's address, accepts sessions
//	...
//	srv.Shutdown(ctx)                // deregisters, lets handlers finish
//
// A PE that is itself a pool user of another pool (RFC 5352's PU/PE case)
// sets Config.BusinessCard to a card of its own pool (Server.Self gives its
// Pool Element); the other side reads it with Peer.BusinessCard.
//
// # Security
//
// Cookies travel through the pool user, who may change or replay them:
// sign them with a Signer (HMAC-SHA256 under a key the PEs of the pool
// share) and verify each Cookie Echo before restoring anything. A PE takes
// a Cookie Echo only as the first message of a session and only up to
// ServerConfig.MaxCookieSize (a larger one ends the session); a pool user
// keeps cookies up to Config.MaxCookieSize and the first MaxCardElements
// PEs of a business card. Business cards are not authenticated: a session
// dials the PEs of a card its PE sent, as RFC 5352 intends.
//
// # Concurrency
//
// Session and Server methods are safe for concurrent use, except Read (one
// reader at a time); Peer.Recv is for one goroutine at a time. A Session
// owns one goroutine that reads the association and fails over; Close
// waits for it. A Server owns, per session, a reader and the handler's
// goroutine; Shutdown and Close wait for them. Received messages go
// through a bounded queue (Config.RecvQueue, ServerConfig.RecvQueue): when
// it is full the reader stops and the transport's flow control holds the
// peer back, so keep calling Recv.
//
// # Limitations
//
//   - Messages lost with a dead association are not retrieved (neither
//     SCTP's nor the TCP mapping's undelivered-message retrieval is used);
//     the application resends after the failover notice.
//   - Only TCP (the mapping) and SCTP user transports are dialled; a TCP PE
//     registered "data only" is a plain TCP server and is skipped.
//   - A business card's PEs are dialled directly from the card; the card's
//     pool is not resolved, and after the card's PEs the session's own pool
//     is used.
//   - RSPLIB pool users cannot decode business cards (RSPLIB's decoder
//     expects another layout) and ignore them; RSPLIB never sends one.
//   - Send options of RFC 5352 §6.5.5 other than failover (send to all,
//     to self, unordered) are not offered.
package session
