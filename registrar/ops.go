package registrar

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/wire"
)

// maxUserAddrs is the most addresses accepted in a user transport (RSPLIB).
const maxUserAddrs = 64

// rejection is a refused registration: the cause for the response, the
// result label and the reason for the log.
type rejection struct {
	code   wire.CauseCode
	info   []byte
	result string
	limit  string // limit label, "" if none
	msg    string
}

// register handles ASAP_REGISTRATION (RFC 5352 §3.1, procedures.md §4.3).
func (l *loop) register(c *conn, m *wire.Registration, now time.Time) {
	handle, pe := m.PoolHandle, m.Element
	if rj := l.admit(c, handle, &pe); rj != nil {
		l.rejectRegistration(c, handle, pe.ID, rj)
		return
	}
	pe.HomeServer = l.id
	pe.ASAP = c.asap
	poolExisted := l.hs.PoolLen(handle) > 0
	e, created, err := l.hs.Register(handle, pe, now)
	if err != nil {
		rj := &rejection{code: wire.CauseInvalidValues, result: resultInvalid, msg: err.Error()}
		var re *handlespace.RejectError
		if errors.As(err, &re) {
			rj.code, rj.info, rj.msg = re.Code, re.Info, re.Msg
			if re.Code == wire.CauseInconsistentPolicy || re.Code == wire.CauseInconsistentTransport ||
				re.Code == wire.CauseInconsistentDataControl {
				rj.result = resultInconsistent
			}
		}
		l.rejectRegistration(c, handle, pe.ID, rj)
		return
	}
	o := owned(e)
	if o == nil {
		o = &ownedPE{e: e, idx: -1}
		e.Owner = o
	}
	l.attach(o, c)
	o.waiting = false
	l.schedule(o, now.Add(l.cfg.Timers.KeepAliveInterval))
	if l.cfg.Registration.ExpireOwned && pe.RegistrationLife != math.MaxUint32 {
		l.hs.SetExpiry(handle, pe.ID, now.Add(time.Duration(pe.RegistrationLife)*time.Millisecond))
	} else {
		l.hs.SetExpiry(handle, pe.ID, time.Time{})
	}
	if created {
		l.labels.added(handle, !poolExisted)
		l.gauges()
	}
	l.m.registrations.WithLabelValues(resultOK).Inc()
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("registered", "pool", truncate(handle), "pe", peID(pe.ID), "new", created,
			"policy", pe.Policy.Type.Name(), "addrs", pe.User.Addrs, "port", pe.User.Port)
	}
	l.sendMsg(c, &wire.RegistrationResponse{PoolHandle: handle, ID: pe.ID})
	if l.onChange != nil {
		l.onChange(Change{Action: wire.ActionAddPE, Pool: handle, Element: e.PoolElement()})
	}
}

func (l *loop) rejectRegistration(c *conn, handle wire.PoolHandle, id uint32, rj *rejection) {
	l.m.registrations.WithLabelValues(rj.result).Inc()
	if rj.limit != "" {
		l.m.limitRejections.WithLabelValues(rj.limit).Inc()
	}
	c.logLimited(l.log, "registration rejected", "pool", truncate(handle), "pe", peID(id),
		"cause", causeName(rj.code), "reason", rj.msg)
	l.sendMsg(c, &wire.RegistrationResponse{Reject: true, PoolHandle: handle, ID: id,
		Error: &wire.OperationError{Causes: []wire.ErrorCause{{Code: rj.code, Info: rj.info}}}})
}

// admit checks a registration before the handlespace sees it: values,
// addresses, authorization and limits. It rewrites pe.User (address
// substitution).
func (l *loop) admit(c *conn, handle wire.PoolHandle, pe *wire.PoolElement) *rejection {
	if len(handle) == 0 {
		return &rejection{code: wire.CauseInvalidValues, info: poolHandleTLV(handle), result: resultInvalid, msg: "empty pool handle"}
	}
	if len(handle) > l.cfg.Limits.MaxHandleLength {
		return &rejection{code: wire.CauseInvalidValues, info: poolHandleTLV(handle), result: resultLimit,
			limit: limitHandleLength, msg: "pool handle too long"}
	}
	if pe.ID == 0 {
		return &rejection{code: wire.CauseInvalidValues, result: resultInvalid, msg: "PE identifier 0"}
	}
	u, rj := l.userTransport(c, pe.User)
	if rj != nil {
		return rj
	}
	pe.User = u
	if rj := l.authorize(c, handle); rj != nil {
		return rj
	}
	if _, exists := l.hs.Get(handle, pe.ID); !exists {
		n := l.hs.PoolLen(handle)
		if n == 0 && l.hs.NumPools() >= l.cfg.Limits.MaxPools {
			return &rejection{code: wire.CauseLackOfResources, result: resultLimit, limit: limitPools, msg: "pool limit reached"}
		}
		if l.hs.NumElements() >= l.cfg.Limits.MaxElements {
			return &rejection{code: wire.CauseLackOfResources, result: resultLimit, limit: limitElements, msg: "PE limit reached"}
		}
		max := l.cfg.Limits.MaxPoolElements
		if a := l.auth[handle]; a != nil && a.max > 0 {
			max = a.max
		}
		if n >= max {
			return &rejection{code: wire.CauseLackOfResources, result: resultLimit, limit: limitPoolElements, msg: "pool PE limit reached"}
		}
	}
	return nil
}

// userTransport validates the PE's user transport against the registering
// connection: 0.0.0.0 and :: stand for the connection's addresses, and (by
// default) every address must be one of the connection's (RFC 5352 §2.2.1).
func (l *loop) userTransport(c *conn, t wire.Transport) (wire.Transport, *rejection) {
	invalid := func(msg string) (wire.Transport, *rejection) {
		return t, &rejection{code: wire.CauseInvalidValues, result: resultInvalid, msg: msg}
	}
	switch t.Type {
	case wire.TransportSCTP, wire.TransportTCP, wire.TransportUDP, wire.TransportUDPLite, wire.TransportDCCP:
	case wire.TransportOpaque:
		if l.cfg.Registration.RequireAddressSubset {
			return t, &rejection{code: wire.CauseRejectedSecurity, result: resultUnauthorized, limit: limitAuthz,
				msg: "opaque transport has no address to check"}
		}
		return t, nil
	default:
		return invalid("unknown user transport type")
	}
	if t.Port == 0 {
		return invalid("user transport port 0")
	}
	if len(t.Addrs) == 0 || len(t.Addrs) > maxUserAddrs {
		return invalid("user transport needs 1 to 64 addresses")
	}
	subst := false
	for _, a := range t.Addrs {
		if a.IsUnspecified() {
			subst = true
		}
	}
	if subst {
		out := make([]netip.Addr, 0, len(t.Addrs)+len(c.remote))
		seen := map[netip.Addr]bool{}
		add := func(a netip.Addr) {
			if !seen[a] && len(out) < maxUserAddrs {
				seen[a] = true
				out = append(out, a)
			}
		}
		for _, a := range t.Addrs {
			if !a.IsUnspecified() {
				add(a.Unmap())
				continue
			}
			for _, r := range c.remote {
				add(r)
			}
		}
		if t.Type != wire.TransportSCTP && len(out) > 1 {
			out = out[:1]
		}
		t.Addrs = out
	}
	if l.cfg.Registration.RequireAddressSubset {
		for _, a := range t.Addrs {
			if !c.hasAddr(a.Unmap()) {
				return t, &rejection{code: wire.CauseRejectedSecurity, result: resultUnauthorized, limit: limitAuthz,
					msg: "user transport address " + a.String() + " is not an address of the registering connection"}
			}
		}
	}
	return t, nil
}

// authorize applies the pool's (or the default) source networks and TLS
// identities (RFC 5355 §2.1-2.4).
func (l *loop) authorize(c *conn, handle wire.PoolHandle) *rejection {
	allow := l.allow
	a := l.auth[handle]
	if a != nil && len(a.allow) > 0 {
		allow = a.allow
	}
	deny := func(msg string) *rejection {
		return &rejection{code: wire.CauseRejectedSecurity, result: resultUnauthorized, limit: limitAuthz, msg: msg}
	}
	if len(allow) > 0 {
		for _, r := range c.remote {
			if !contains(allow, r) {
				return deny("source " + r.String() + " is not allowed for this pool")
			}
		}
		if len(c.remote) == 0 {
			return deny("source address unknown")
		}
	}
	if a != nil && len(a.ids) > 0 {
		for _, id := range c.tlsIDs {
			if a.ids[id] {
				return nil
			}
		}
		return deny("no authorized TLS client identity")
	}
	return nil
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// deregister handles ASAP_DEREGISTRATION (RFC 5352 §3.2). An unknown PE is
// answered as a success. A PE registered over another live connection may
// only be deregistered from there (cause 0xa).
func (l *loop) deregister(c *conn, m *wire.Deregistration) {
	l.m.deregistrations.Inc()
	resp := &wire.DeregistrationResponse{PoolHandle: m.PoolHandle, ID: m.ID}
	if o := l.ownedPE(m.PoolHandle, m.ID); o != nil && o.c != nil && o.c != c {
		l.m.limitRejections.WithLabelValues(limitAuthz).Inc()
		c.logLimited(l.log, "deregistration refused: PE belongs to another connection",
			"pool", truncate(m.PoolHandle), "pe", peID(m.ID))
		resp.Error = &wire.OperationError{Causes: []wire.ErrorCause{{Code: wire.CauseRejectedSecurity}}}
		l.sendMsg(c, resp)
		return
	}
	if l.remove(m.PoolHandle, m.ID, reasonDeregistration) {
		l.log.Debug("deregistered", "pool", truncate(m.PoolHandle), "pe", peID(m.ID))
	}
	l.sendMsg(c, resp)
}

// resolve handles ASAP_HANDLE_RESOLUTION (RFC 5352 §3.3): up to N PEs
// selected by the pool policy, with the overall Policy parameter always
// present; unknown pool ⇒ Operation Error 0x9.
func (l *loop) resolve(c *conn, m *wire.HandleResolution) {
	l.m.resolutions.Inc()
	n := l.cfg.Registration.ResolutionItems
	if m.HasItems && m.Items != 0 {
		n = int(min(m.Items, uint32(l.cfg.Registration.MaxResolutionItems)))
	}
	pol, sel, ok := l.hs.Resolve(m.PoolHandle, n, l.sel[:0])
	l.sel = sel
	if !ok || len(sel) == 0 {
		l.m.resolutionMisses.Inc()
		l.sendMsg(c, &wire.HandleResolutionResponse{PoolHandle: m.PoolHandle,
			Error: &wire.OperationError{Causes: []wire.ErrorCause{{Code: wire.CauseUnknownPoolHandle}}}})
		return
	}
	resp := &wire.HandleResolutionResponse{PoolHandle: m.PoolHandle, Policy: &pol,
		Elements: make([]wire.PoolElement, len(sel))}
	for i, e := range sel {
		resp.Elements[i] = e.PoolElement()
		resp.Elements[i].ASAP = wire.Transport{}
		sel[i] = nil
	}
	for {
		b, err := resp.AppendBinary(make([]byte, 0, 256))
		if err != nil {
			l.log.Error("encoding handle resolution response", "err", err)
			return
		}
		// Fit the connection's message size: drop PEs from the end.
		if len(b) <= l.cfg.Limits.MaxMessageSize || len(resp.Elements) <= 1 {
			c.send(b)
			return
		}
		resp.Elements = resp.Elements[:len(resp.Elements)/2]
	}
}

// keepAliveAck handles ASAP_ENDPOINT_KEEP_ALIVE_ACK: the PE is alive; the
// next keep-alive goes out one interval later.
func (l *loop) keepAliveAck(c *conn, m *wire.EndpointKeepAliveAck, now time.Time) {
	l.m.keepAliveAcks.Inc()
	o := l.ownedPE(m.PoolHandle, m.ID)
	if o == nil || !o.waiting {
		return
	}
	if o.c == nil {
		l.attach(o, c)
	}
	o.waiting = false
	l.schedule(o, now.Add(l.cfg.Timers.KeepAliveInterval))
}

// unreachable handles ASAP_ENDPOINT_UNREACHABLE: count per PE, remove at
// the threshold (RSPLIB: no probe, remove when the count reaches it).
func (l *loop) unreachable(m *wire.EndpointUnreachable) {
	l.m.unreachable.Inc()
	n, ok := l.hs.ReportUnreachable(m.PoolHandle, m.ID)
	if ok && n >= l.cfg.Registration.UnreachableThreshold {
		l.log.Info("unreachable threshold reached, removing PE", "pool", truncate(m.PoolHandle),
			"pe", peID(m.ID), "reports", n)
		l.remove(m.PoolHandle, m.ID, reasonUnreachable)
	}
}

// poolHandleTLV encodes a Pool Handle parameter (no padding) for an error
// cause.
func poolHandleTLV(h wire.PoolHandle) []byte {
	if len(h) > 0xffff-4 {
		h = h[:0xffff-4]
	}
	n := 4 + len(h)
	b := make([]byte, 0, n)
	b = append(b, 0x00, 0x09, byte(n>>8), byte(n))
	return append(b, h...)
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
