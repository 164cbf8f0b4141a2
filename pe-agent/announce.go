package peagent

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// DefaultAnnounceTTL is T7-ENRPoutdate: how long an address heard in an
// ASAP Server Announce stays in the hunt list without being heard again.
const DefaultAnnounceTTL = 5 * time.Second

// announceAddrs turns an ASAP Server Announce into registrar addresses.
// TCP transports become "tcp://", SCTP ones "sctp://"; others are skipped.
// An announce without transports means SCTP at the datagram's source
// address and the ASAP port (RFC 5352 §3.6).
func announceAddrs(sa *wire.ServerAnnounce, src netip.AddrPort) []transport.Addr {
	if len(sa.Transports) == 0 {
		if !src.Addr().IsValid() {
			return nil
		}
		return []transport.Addr{transport.AddrFrom(transport.SchemeSCTP, netip.AddrPortFrom(src.Addr(), wire.PortASAP))}
	}
	var out []transport.Addr
	for _, t := range sa.Transports {
		for _, ip := range t.Addrs {
			one := t
			one.Addrs = []netip.Addr{ip}
			if a, err := transport.AddrFromTransport(one); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// listenAnnounces reads ASAP Server Announces until r is closed and adds
// the announced addresses to the hunt list for ttl. Announces are not
// authenticated: they only add candidates, never replace the static list.
func (s *session) listenAnnounces(r *transport.MulticastReceiver, ttl time.Duration) {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	bad := 0
	for {
		n, src, err := r.ReadFrom(buf)
		if err != nil {
			return
		}
		msg, err := wire.ParseASAP(buf[:n])
		sa, ok := msg.(*wire.ServerAnnounce)
		if err != nil || !ok {
			if bad++; bad == 1 || bad%1000 == 0 { // rate-limited: announces are unauthenticated
				s.log.Debug("ignoring datagram on the announce group", "from", src, "err", err, "count", bad)
			}
			continue
		}
		for _, a := range announceAddrs(sa, src) {
			s.learn(a, ttl)
		}
	}
}

// startAnnounces joins the announce group when configured.
func (s *session) startAnnounces(group, iface string, ttl time.Duration) error {
	if group == "" {
		return nil
	}
	if ttl <= 0 {
		ttl = DefaultAnnounceTTL
	}
	r, err := transport.ListenMulticast(group, iface)
	if err != nil {
		return fmt.Errorf("peagent: announce group %s: %w", group, err)
	}
	s.annRecv = r
	s.wg.Add(1)
	go s.listenAnnounces(r, ttl)
	return nil
}
