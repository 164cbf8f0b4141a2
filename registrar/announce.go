package registrar

import (
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// announcer sends ASAP_SERVER_ANNOUNCE by UDP multicast (RFC 5352 §3.6)
// every interval ±12.5 % (RSPLIB), listing the registrar's ASAP transports.
type announcer struct {
	snd      *transport.MulticastSender
	group    string
	interval time.Duration
	msg      []byte
	log      *slog.Logger
	m        *metrics
}

func newAnnouncer(cfg AnnounceConfig, id uint32, asapAddrs []string, log *slog.Logger, m *metrics) (*announcer, error) {
	sa := &wire.ServerAnnounce{ServerID: id}
	for _, s := range asapAddrs {
		a, err := transport.ParseAddr(s)
		if err != nil || a.Scheme() == transport.SchemeTLS {
			continue
		}
		t, ok := a.Transport()
		if !ok {
			continue
		}
		if slices.ContainsFunc(t.Addrs, netip.Addr.IsUnspecified) {
			// A wildcard listener has no address to announce; receivers then
			// fall back to the datagram's source address (RFC 5352 §3.6).
			log.Warn("announce: listener on a wildcard address is not announced; listen on a specific address", "addr", a)
			continue
		}
		sa.Transports = append(sa.Transports, t)
	}
	msg, err := sa.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	snd, err := transport.NewMulticastSender(cfg.Group, cfg.Interface, cfg.TTL, true)
	if err != nil {
		return nil, err
	}
	return &announcer{snd: snd, group: cfg.Group, interval: cfg.Interval, msg: msg, log: log, m: m}, nil
}

// run sends announces until stop is closed, then closes the socket.
func (a *announcer) run(stop <-chan struct{}) {
	defer a.snd.Close()
	t := time.NewTimer(0)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if err := a.snd.Send(a.msg); err != nil {
			if !failed {
				a.log.Warn("sending server announce failed", "group", a.group, "err", err)
			}
			failed = true
		} else {
			failed = false
			a.m.announces.Inc()
		}
		jitter := 0.875 + 0.25*rand.Float64()
		t.Reset(time.Duration(float64(a.interval) * jitter))
	}
}
