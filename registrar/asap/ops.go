package asap

import (
	"time"

	"github.com/rserpool/rserpool/wire"
)

// deregister handles ASAP_DEREGISTRATION (RFC 5352 §3.2). An unknown PE is
// answered as a success. A PE registered over another live connection may
// only be deregistered from there (cause 0xa).
func (c *Core) deregister(cn *conn, m *wire.Deregistration) {
	resp := &wire.DeregistrationResponse{PoolHandle: m.PoolHandle, ID: m.ID}
	if o := c.ownedPE(m.PoolHandle, m.ID); o != nil && o.c != nil && o.c != cn {
		c.emit(Output{Kind: DeregistrationRefused, Conn: cn.id, Handle: m.PoolHandle, PEID: m.ID, Limit: LimitAuthorization})
		resp.Error = &wire.OperationError{Causes: []wire.ErrorCause{{Code: wire.CauseRejectedSecurity}}}
		c.send(cn.id, resp)
		return
	}
	o := Output{Kind: Deregistered, Conn: cn.id, Handle: m.PoolHandle, PEID: m.ID}
	if c.remove(m.PoolHandle, m.ID, ReasonDeregistration) {
		o.N = 1
	}
	c.emit(o)
	c.send(cn.id, resp)
}

// resolve handles ASAP_HANDLE_RESOLUTION (RFC 5352 §3.3): up to N PEs
// selected by the pool policy, with the overall Policy parameter always
// present; unknown pool ⇒ Operation Error 0x9. The response is trimmed
// (PEs dropped from the end) to MaxMessageSize.
func (c *Core) resolve(cn *conn, m *wire.HandleResolution) {
	n := c.cfg.ResolutionItems
	if m.HasItems && m.Items != 0 {
		n = int(min(m.Items, uint32(max(c.cfg.MaxResolutionItems, 1))))
	}
	pol, sel, ok := c.hs.Resolve(m.PoolHandle, n, c.sel[:0])
	c.sel = sel
	if !ok || len(sel) == 0 {
		c.emit(Output{Kind: Resolved, Conn: cn.id, Handle: m.PoolHandle})
		c.send(cn.id, &wire.HandleResolutionResponse{PoolHandle: m.PoolHandle,
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
			c.emit(Output{Kind: EncodeFailed, Conn: cn.id, Msg: resp, Detail: err.Error()})
			return
		}
		// Fit the connection's message size: drop PEs from the end.
		if c.cfg.MaxMessageSize <= 0 || len(b) <= c.cfg.MaxMessageSize || len(resp.Elements) <= 1 {
			c.emit(Output{Kind: Resolved, Conn: cn.id, Handle: m.PoolHandle, N: len(resp.Elements)})
			c.emit(Output{Kind: Send, Conn: cn.id, Msg: resp, Data: b})
			return
		}
		resp.Elements = resp.Elements[:len(resp.Elements)/2]
	}
}

// keepAliveAck handles ASAP_ENDPOINT_KEEP_ALIVE_ACK: the PE is alive; the
// next keep-alive goes out one interval later. A PE without a connection
// (after a connection loss, or taken over) takes the acking one.
func (c *Core) keepAliveAck(now time.Time, cn *conn, m *wire.EndpointKeepAliveAck) {
	c.emit(Output{Kind: KeepAliveAcked, Conn: cn.id, Handle: m.PoolHandle, PEID: m.ID})
	o := c.ownedPE(m.PoolHandle, m.ID)
	if o == nil || !o.waiting {
		return
	}
	if o.c == nil {
		c.attach(o, cn)
	}
	o.waiting, o.lost = false, false
	c.schedule(o, now.Add(c.cfg.KeepAliveInterval))
}

// unreachable handles ASAP_ENDPOINT_UNREACHABLE: count per PE, remove at
// the threshold (RSPLIB: no probe, remove when the count reaches it).
func (c *Core) unreachable(m *wire.EndpointUnreachable) {
	n, ok := c.hs.ReportUnreachable(m.PoolHandle, m.ID)
	c.emit(Output{Kind: UnreachableReported, Handle: m.PoolHandle, PEID: m.ID, N: n})
	if ok && n >= c.cfg.UnreachableThreshold {
		c.remove(m.PoolHandle, m.ID, ReasonUnreachable)
	}
}
