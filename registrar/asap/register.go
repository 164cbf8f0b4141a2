package asap

import (
	"errors"
	"math"
	"net/netip"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/wire"
)

// maxUserAddrs is the most addresses accepted in a user transport (RSPLIB).
const maxUserAddrs = 64

// rejection is a refused registration: the cause and its information, the
// metric labels and the reason for the log.
type rejection struct {
	code   wire.CauseCode
	info   []byte
	result Result
	limit  Limit
	msg    string
}

// register handles ASAP_REGISTRATION (RFC 5352 §3.1, procedures.md §4.3).
func (c *Core) register(now time.Time, cn *conn, m *wire.Registration) {
	handle, pe := m.PoolHandle, m.Element
	if rj := c.admit(cn, handle, &pe); rj != nil {
		c.reject(cn, handle, pe.ID, rj)
		return
	}
	pe.HomeServer = c.cfg.ID
	pe.ASAP = cn.asap
	poolExisted := c.hs.PoolLen(handle) > 0
	e, created, err := c.hs.Register(handle, pe, now)
	if err != nil {
		rj := &rejection{code: wire.CauseInvalidValues, result: ResultInvalid, msg: err.Error()}
		var re *handlespace.RejectError
		if errors.As(err, &re) {
			rj.code, rj.info, rj.msg = re.Code, re.Info, re.Msg
			if re.Code == wire.CauseInconsistentPolicy || re.Code == wire.CauseInconsistentTransport ||
				re.Code == wire.CauseInconsistentDataControl {
				rj.result = ResultInconsistent
			}
		}
		c.reject(cn, handle, pe.ID, rj)
		return
	}
	o := c.monitor(e)
	c.attach(o, cn)
	c.count(o, cn.source())
	o.waiting, o.lost = false, false
	c.schedule(o, now.Add(c.cfg.KeepAliveInterval))
	if c.cfg.ExpireOwned && pe.RegistrationLife != math.MaxUint32 {
		c.hs.SetExpiry(handle, pe.ID, now.Add(time.Duration(pe.RegistrationLife)*time.Millisecond))
	} else {
		c.hs.SetExpiry(handle, pe.ID, time.Time{})
	}
	c.emit(Output{Kind: Registered, Conn: cn.id, Handle: handle, PEID: pe.ID, Element: pe, Result: ResultOK,
		Created: created, PoolCreated: !poolExisted})
	c.send(cn.id, &wire.RegistrationResponse{PoolHandle: handle, ID: pe.ID})
	c.emit(Output{Kind: Change, Action: wire.ActionAddPE, Handle: handle, PEID: pe.ID, Element: e.PoolElement()})
}

func (c *Core) reject(cn *conn, handle wire.PoolHandle, id uint32, rj *rejection) {
	c.emit(Output{Kind: Rejected, Conn: cn.id, Handle: handle, PEID: id, Result: rj.result, Limit: rj.limit,
		Cause: rj.code, Detail: rj.msg})
	info := rj.info
	if limit := c.cfg.MaxMessageSize; limit > 0 {
		// Header, Pool Handle, PE Identifier, Operation Error and cause
		// headers; the cause information (a copy of the long handle, say)
		// gets what is left, so that the response fits the connection.
		room := limit - (4 + 4 + (len(handle)+3)&^3 + 8 + 4 + 4)
		if len(info) > room {
			info = info[:max(room, 0)&^3]
		}
	}
	c.send(cn.id, &wire.RegistrationResponse{Reject: true, PoolHandle: handle, ID: id,
		Error: &wire.OperationError{Causes: []wire.ErrorCause{{Code: rj.code, Info: info}}}})
}

// source returns the address the per-source cap counts for cn.
func (cn *conn) source() netip.Addr {
	if len(cn.remote) > 0 {
		return cn.remote[0]
	}
	return netip.Addr{}
}

func (cn *conn) hasAddr(a netip.Addr) bool {
	for _, r := range cn.remote {
		if r == a {
			return true
		}
	}
	return false
}

// admit checks a registration before the handlespace sees it: values,
// addresses, authorization and limits. It rewrites pe.User (address
// substitution).
func (c *Core) admit(cn *conn, handle wire.PoolHandle, pe *wire.PoolElement) *rejection {
	if len(handle) == 0 {
		return &rejection{code: wire.CauseInvalidValues, info: poolHandleTLV(handle), result: ResultInvalid, msg: "empty pool handle"}
	}
	if max := c.cfg.MaxHandleLength; max > 0 && len(handle) > max {
		return &rejection{code: wire.CauseInvalidValues, info: poolHandleTLV(handle), result: ResultLimit,
			limit: LimitHandleLength, msg: "pool handle too long"}
	}
	if pe.ID == 0 {
		return &rejection{code: wire.CauseInvalidValues, result: ResultInvalid, msg: "PE identifier 0"}
	}
	u, rj := c.userTransport(cn, pe.User)
	if rj != nil {
		return rj
	}
	pe.User = u
	if rj := c.authorize(cn, handle); rj != nil {
		return rj
	}
	lack := func(l Limit, msg string) *rejection {
		return &rejection{code: wire.CauseLackOfResources, result: ResultLimit, limit: l, msg: msg}
	}
	e, exists := c.hs.Get(handle, pe.ID)
	if !exists {
		n := c.hs.PoolLen(handle)
		if n == 0 && capped(c.hs.NumPools(), c.cfg.MaxPools) {
			return lack(LimitPools, "pool limit reached")
		}
		if capped(c.hs.NumElements(), c.cfg.MaxElements) {
			return lack(LimitElements, "PE limit reached")
		}
		max := c.cfg.MaxPoolElements
		if a := c.auth[handle]; a != nil && a.max > 0 {
			max = a.max
		}
		if capped(n, max) {
			return lack(LimitPoolElements, "pool PE limit reached")
		}
	}
	if src := cn.source(); src.IsValid() {
		var o *owned
		if exists {
			o = ownedOf(e)
		}
		if (o == nil || o.src == nil || o.src.addr != src) && capped(c.SourceElements(src), c.cfg.MaxSourceElements) {
			return lack(LimitSourceElements, "per-source PE limit reached")
		}
	}
	return nil
}

// userTransport validates the PE's user transport against the registering
// connection: 0.0.0.0 and :: stand for the connection's addresses, and (by
// default) every address must be one of the connection's (RFC 5352 §2.2.1).
func (c *Core) userTransport(cn *conn, t wire.Transport) (wire.Transport, *rejection) {
	invalid := func(msg string) (wire.Transport, *rejection) {
		return t, &rejection{code: wire.CauseInvalidValues, result: ResultInvalid, msg: msg}
	}
	switch t.Type {
	case wire.TransportSCTP, wire.TransportTCP, wire.TransportUDP, wire.TransportUDPLite, wire.TransportDCCP:
	case wire.TransportOpaque:
		if c.cfg.RequireAddressSubset {
			return t, &rejection{code: wire.CauseRejectedSecurity, result: ResultUnauthorized, limit: LimitAuthorization,
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
		out := make([]netip.Addr, 0, len(t.Addrs)+len(cn.remote))
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
			for _, r := range cn.remote {
				add(r)
			}
		}
		if t.Type != wire.TransportSCTP && len(out) > 1 {
			out = out[:1]
		}
		if len(out) == 0 {
			return invalid("unspecified user transport address, and the connection's address is unknown")
		}
		t.Addrs = out
	}
	if c.cfg.RequireAddressSubset {
		for _, a := range t.Addrs {
			if !cn.hasAddr(a.Unmap()) {
				return t, &rejection{code: wire.CauseRejectedSecurity, result: ResultUnauthorized, limit: LimitAuthorization,
					msg: "user transport address " + a.String() + " is not an address of the registering connection"}
			}
		}
	}
	return t, nil
}

// authorize applies the pool's (or the default) source networks and TLS
// identities (RFC 5355 §2.1-2.4).
func (c *Core) authorize(cn *conn, handle wire.PoolHandle) *rejection {
	allow := c.cfg.Allow
	a := c.auth[handle]
	if a != nil && len(a.allow) > 0 {
		allow = a.allow
	}
	deny := func(msg string) *rejection {
		return &rejection{code: wire.CauseRejectedSecurity, result: ResultUnauthorized, limit: LimitAuthorization, msg: msg}
	}
	if len(allow) > 0 {
		for _, r := range cn.remote {
			if !Contains(allow, r) {
				return deny("source " + r.String() + " is not allowed for this pool")
			}
		}
		if len(cn.remote) == 0 {
			return deny("source address unknown")
		}
	}
	if a != nil && len(a.ids) > 0 {
		for _, id := range cn.tlsIDs {
			if a.ids[id] {
				return nil
			}
		}
		return deny("no authorized TLS client identity")
	}
	return nil
}

// Contains reports whether one of ps contains a.
func Contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// poolHandleTLV encodes a Pool Handle parameter (no padding) for an error
// cause, cut to the largest parameter length.
func poolHandleTLV(h wire.PoolHandle) []byte {
	if len(h) > 0xffff-4 {
		h = h[:0xffff-4]
	}
	n := 4 + len(h)
	b := make([]byte, 0, n)
	b = append(b, 0x00, 0x09, byte(n>>8), byte(n))
	return append(b, h...)
}
