package registrar

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/registrar/asap"
	"github.com/rserpool/rserpool/wire"
)

// Change is a change of a PE this registrar owns: what ENRP announces to
// peers as ENRP_HANDLE_UPDATE (RFC 5353 §3.3). Element is a copy.
type Change struct {
	Action  wire.UpdateAction // wire.ActionAddPE or wire.ActionDelPE
	Pool    wire.PoolHandle
	Element wire.PoolElement
}

// Events handled by the loop.
type (
	evMsg struct {
		c *conn
		m wire.Message
	}
	evClosed struct{ c *conn }
	evReload struct {
		cfg  Config
		done chan struct{}
	}
	evFunc struct{ fn func(*loop) } // for tests and in-process queries (onLoop)
)

// loop is the I/O shell around the ASAP core (package registrar/asap) and
// the ENRP node (package registrar/enrp): it owns both and the handlespace
// they share, feeds them events (messages, connection ends, timers) and
// carries out their outputs (queue messages, dial, count, log). Only its
// run goroutine touches these fields.
type loop struct {
	id       uint32
	cfg      Config
	log      *slog.Logger
	m        *metrics
	onChange func(Change)

	hs     *handlespace.Handlespace
	core   *asap.Core
	conns  map[asap.ConnID]*conn // the connections the core knows
	lastID asap.ConnID

	events chan any

	enrp *enrpSide // nil when ENRP is off; set before run starts

	// dial starts an outgoing ASAP association set-up to a PE (the core's
	// Reach); nil in loop unit tests, where every set-up fails at once.
	dial func(k peKey, addr string) bool
}

func newLoop(id uint32, cfg Config, log *slog.Logger, m *metrics, onChange func(Change)) *loop {
	l := &loop{
		id:       id,
		cfg:      cfg,
		log:      log,
		m:        m,
		onChange: onChange,
		hs:       handlespace.New(handlespace.Options{}),
		conns:    map[asap.ConnID]*conn{},
		events:   make(chan any, 4096),
	}
	l.core = asap.New(asapConfig(id, cfg), l.hs, time.Now())
	return l
}

// asapConfig converts the registrar configuration to the core's.
func asapConfig(id uint32, cfg Config) asap.Config {
	t, r, lim := cfg.Timers, cfg.Registration, cfg.Limits
	ac := asap.Config{
		ID:                     id,
		KeepAliveInterval:      t.KeepAliveInterval,
		KeepAliveTimeout:       t.KeepAliveTimeout,
		ExpireOwned:            r.ExpireOwned,
		ExpiryCheckInterval:    t.ExpiryCheckInterval,
		RemoveOnConnectionLoss: r.RemoveOnConnectionLoss,
		ConnectionLossGrace:    t.ConnectionLossGrace,
		RequireAddressSubset:   r.RequireAddressSubset,
		UnreachableThreshold:   r.UnreachableThreshold,
		ResolutionItems:        r.ResolutionItems,
		MaxResolutionItems:     r.MaxResolutionItems,
		Allow:                  parsePrefixes(r.Allow),
		MaxElements:            lim.MaxElements,
		MaxPoolElements:        lim.MaxPoolElements,
		MaxPools:               lim.MaxPools,
		MaxHandleLength:        lim.MaxHandleLength,
		MaxSourceElements:      lim.MaxSourceElements,
		MaxMessageSize:         lim.MaxMessageSize,
		MaxDials:               maxPEDials,
	}
	for _, p := range cfg.Pools {
		ac.Pools = append(ac.Pools, asap.Pool{Handle: p.Handle, Allow: parsePrefixes(p.Allow),
			TLSIdentities: p.TLSIdentities, MaxElements: p.MaxElements})
	}
	return ac
}

// apply installs the parts of cfg that may change at run time.
func (l *loop) apply(cfg Config, now time.Time) {
	l.cfg = cfg
	l.core.Apply(now, asapConfig(l.id, cfg))
}

func parsePrefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil { // validated by Config.Validate
			out = append(out, p.Masked())
		}
	}
	return out
}

// run processes events and timers until stop is closed.
func (l *loop) run(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var armed time.Time
	var enrpC <-chan time.Time
	var enrpArmed time.Time
	var enrpTimer *time.Timer
	if l.enrp != nil {
		enrpTimer = time.NewTimer(time.Hour)
		defer enrpTimer.Stop()
		enrpC = enrpTimer.C
	}
	for {
		if l.enrp != nil {
			if d := l.enrp.node.NextDeadline(); !d.Equal(enrpArmed) {
				enrpTimer.Reset(time.Until(d))
				enrpArmed = d
			}
		}
		if d := l.core.NextDeadline(); !d.IsZero() && !d.Equal(armed) {
			timer.Reset(time.Until(d))
			armed = d
		}
		select {
		case <-stop:
			return
		case ev := <-l.events:
			l.handle(ev, time.Now())
		case now := <-timer.C:
			armed = time.Time{}
			l.carry(l.core.Tick(now), now)
		case now := <-enrpC:
			enrpArmed = time.Time{}
			l.enrpOut(l.enrp.node.Tick(now), now)
		}
	}
}

func (l *loop) handle(ev any, now time.Time) {
	switch ev := ev.(type) {
	case evMsg:
		l.carry(l.core.Step(now, l.open(ev.c), ev.m), now)
		select {
		case <-ev.c.slots:
		default:
		}
	case evClosed:
		ev.c.gone = true
		if ev.c.cid != 0 {
			delete(l.conns, ev.c.cid)
			l.carry(l.core.Closed(now, ev.c.cid), now)
		}
	case evReload:
		l.apply(ev.cfg, now)
		close(ev.done)
	case evFunc:
		ev.fn(l)
	case evDialed:
		l.dialed(ev, now)
	case evENRP:
		if l.enrp != nil {
			l.enrpMessage(ev, now)
		}
	case evPeerLost:
		switch {
		case l.enrp == nil:
		case ev.unreachable:
			l.enrpOut(l.enrp.node.PeerUnreachable(now, ev.addr), now)
		default:
			l.enrpOut(l.enrp.node.PeerConnLost(now, ev.addr, ev.ids...), now)
		}
	}
}

// open makes c known to the core (at its first message, when a TLS
// handshake is complete) and returns its core identifier.
func (l *loop) open(c *conn) asap.ConnID {
	if c.cid == 0 {
		l.lastID++
		c.cid = l.lastID
		l.conns[c.cid] = c
		l.core.Open(c.cid, asap.ConnInfo{Remote: c.remote, ASAP: c.asap, TLSIdentities: c.tlsIDs})
	}
	return c.cid
}

// carry carries out the core's outputs: it queues messages, passes changes
// to ENRP and Options.OnChange, starts association set-ups, and counts and
// logs what happened. Label values come from fixed lists or the escaped
// pool handle, so that no input can make a metric panic.
func (l *loop) carry(outs []asap.Output, now time.Time) {
	for i := range outs {
		o := &outs[i]
		c := l.conns[o.Conn]
		switch o.Kind {
		case asap.Send:
			if c == nil || !c.send(o.Data) {
				continue
			}
			if _, ok := o.Msg.(*wire.EndpointKeepAlive); ok {
				l.m.keepAlivesSent.Inc()
			}
		case asap.Close:
			if c != nil {
				c.close()
			}
		case asap.Change:
			ch := Change{Action: o.Action, Pool: o.Handle, Element: o.Element}
			if l.enrp != nil {
				l.enrpOut(l.enrp.node.LocalChange(now, ch.Action, ch.Pool, ch.Element), now)
			}
			if l.onChange != nil {
				l.onChange(ch)
			}
		case asap.Reach:
			l.reach(o, now)
		case asap.Registered:
			l.m.registrations.WithLabelValues(asap.ResultOK.String()).Inc()
			if l.log.Enabled(context.Background(), slog.LevelDebug) {
				l.log.Debug("registered", "pool", truncate(o.Handle), "pe", peID(o.PEID), "new", o.Created,
					"policy", o.Element.Policy.Type.Name(), "addrs", o.Element.User.Addrs, "port", o.Element.User.Port)
			}
		case asap.Rejected:
			l.m.registrations.WithLabelValues(o.Result.String()).Inc()
			if o.Limit != asap.LimitNone {
				l.m.limitRejections.WithLabelValues(o.Limit.String()).Inc()
			}
			c.logLimited(l.log, "registration rejected", "pool", truncate(o.Handle), "pe", peID(o.PEID),
				"cause", causeName(o.Cause), "reason", o.Detail)
		case asap.Deregistered:
			l.m.deregistrations.Inc()
			if o.N > 0 {
				l.log.Debug("deregistered", "pool", truncate(o.Handle), "pe", peID(o.PEID))
			}
		case asap.DeregistrationRefused:
			l.m.deregistrations.Inc()
			l.m.limitRejections.WithLabelValues(o.Limit.String()).Inc()
			c.logLimited(l.log, "deregistration refused: PE belongs to another connection",
				"pool", truncate(o.Handle), "pe", peID(o.PEID))
		case asap.Resolved:
			l.m.resolutions.Inc()
			if o.N == 0 {
				l.m.resolutionMisses.Inc()
			}
		case asap.KeepAliveAcked:
			l.m.keepAliveAcks.Inc()
		case asap.UnreachableReported:
			l.m.unreachable.Inc()
		case asap.Removed:
			l.m.removals.WithLabelValues(o.Reason.String()).Inc()
			switch o.Reason {
			case asap.ReasonKeepAlive:
				l.log.Info("keep-alive timeout, removing PE", "pool", truncate(o.Handle), "pe", peID(o.PEID))
			case asap.ReasonExpiry:
				l.log.Info("registration life expired, removing PE", "pool", truncate(o.Handle), "pe", peID(o.PEID))
			case asap.ReasonUnreachable:
				l.log.Info("unreachable threshold reached, removing PE", "pool", truncate(o.Handle),
					"pe", peID(o.PEID), "reports", o.N)
			}
		case asap.Reclaimed:
			l.log.Info("PE connected here claimed by a peer; reclaiming it", "pool", truncate(o.Handle), "pe", peID(o.PEID))
		case asap.EncodeFailed:
			l.log.Error("encoding failed", "type", o.Msg.Type(), "err", o.Detail)
		}
	}
	l.gauges()
}

func (l *loop) gauges() {
	l.m.elements.Set(float64(l.hs.NumElements()))
	l.m.pools.Set(float64(l.hs.NumPools()))
}

// peID formats a PE identifier for logs.
type peID uint32

func (p peID) LogValue() slog.Value {
	return slog.StringValue(ServerID(p).String())
}

// truncate returns the escaped form of a pool handle for logs, shortened
// to its first 64 bytes and the total length when it is longer.
func truncate(h wire.PoolHandle) string {
	if len(h) > 64 {
		return h[:64].String() + "…(" + strconv.Itoa(len(h)) + " bytes)"
	}
	return h.String()
}

func causeName(c wire.CauseCode) string {
	switch c {
	case wire.CauseInvalidValues:
		return "invalid values"
	case wire.CauseInconsistentPolicy:
		return "inconsistent pooling policy"
	case wire.CauseLackOfResources:
		return "lack of resources"
	case wire.CauseInconsistentTransport:
		return "inconsistent transport type"
	case wire.CauseInconsistentDataControl:
		return "inconsistent data/control configuration"
	case wire.CauseRejectedSecurity:
		return "rejected due to security considerations"
	}
	return ServerID(c).String()
}
