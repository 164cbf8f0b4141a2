package asap

import (
	"net/netip"
	"slices"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/wire"
)

// ConnInfo is what admission needs to know about an ASAP connection.
type ConnInfo struct {
	// Remote holds the peer's addresses (every SCTP path, or the TCP
	// peer), unmapped. Remote[0] is the source address that the per-source
	// cap counts; a connection without one is not counted.
	Remote []netip.Addr
	// ASAP is the ASAP Transport recorded for PEs registering over the
	// connection (TCP with the peer's address, or SCTP with every path).
	ASAP wire.Transport
	// TLSIdentities are the verified client certificate's identities (CN
	// and SANs); empty without TLS.
	TLSIdentities []string
}

// Core is the ASAP side of a registrar (RFC 5352 §3): registration,
// deregistration, handle resolution, keep-alive monitoring of the PEs it
// owns, endpoint-unreachable reports, and the admission rules (values,
// addresses, authorization, limits). It is a pure state machine: it does no
// I/O, starts no goroutines and reads no clock.
//
// A Core is not safe for concurrent use. It shares the handlespace with
// the ENRP node (package registrar/enrp); one goroutine owns both.
type Core struct {
	cfg   Config
	hs    *handlespace.Handlespace
	epoch time.Time // origin of owned.at

	timers  timerHeap
	conns   map[ConnID]*conn
	sources map[netip.Addr]*source
	auth    map[wire.PoolHandle]*poolAuth
	dialing map[peKey]struct{}
	// expiryAt is the next Registration Life check (ExpireOwned); zero
	// when off.
	expiryAt time.Time

	sel     []*handlespace.Element
	expired []*handlespace.Element
	out     []Output
}

// conn is the core's view of one ASAP connection.
type conn struct {
	id     ConnID
	remote []netip.Addr
	asap   wire.Transport
	tlsIDs []string
	head   *owned // the PEs monitored over this connection
}

// source counts the PEs registered here from one source address.
type source struct {
	addr netip.Addr
	pes  int
}

type peKey struct {
	pool wire.PoolHandle
	id   uint32
}

// New returns a Core for the registrar cfg.ID over handlespace hs. now is
// the origin of its timers.
func New(cfg Config, hs *handlespace.Handlespace, now time.Time) *Core {
	c := &Core{
		hs:      hs,
		epoch:   now,
		conns:   map[ConnID]*conn{},
		sources: map[netip.Addr]*source{},
		dialing: map[peKey]struct{}{},
	}
	c.Apply(now, cfg)
	return c
}

// Apply installs a new configuration (a reload). Timers already armed keep
// their times; the new values apply from the next one.
func (c *Core) Apply(now time.Time, cfg Config) {
	c.cfg = cfg
	c.auth = compileAuth(cfg.Pools)
	switch {
	case !cfg.ExpireOwned:
		c.expiryAt = time.Time{}
	case c.expiryAt.IsZero():
		c.expiryAt = now.Add(cfg.ExpiryCheckInterval)
	}
}

// Open makes connection id known with what admission needs. Opening an
// id that is already open changes nothing.
func (c *Core) Open(id ConnID, info ConnInfo) {
	if _, ok := c.conns[id]; ok {
		return
	}
	c.conns[id] = &conn{id: id, remote: slices.Clone(info.Remote), asap: info.ASAP,
		tlsIDs: slices.Clone(info.TLSIdentities)}
}

// Step handles one ASAP message received over connection id:
// ASAP_REGISTRATION, ASAP_DEREGISTRATION, ASAP_HANDLE_RESOLUTION,
// ASAP_ENDPOINT_KEEP_ALIVE_ACK and ASAP_ENDPOINT_UNREACHABLE. Other messages
// (see Screen) and messages over a connection that is not open are ignored.
// The returned slice is the caller's.
func (c *Core) Step(now time.Time, id ConnID, m wire.Message) []Output {
	cn := c.conns[id]
	if cn == nil {
		return nil
	}
	switch m := m.(type) {
	case *wire.Registration:
		c.register(now, cn, m)
	case *wire.Deregistration:
		c.deregister(cn, m)
	case *wire.HandleResolution:
		c.resolve(cn, m)
	case *wire.EndpointKeepAliveAck:
		c.keepAliveAck(now, cn, m)
	case *wire.EndpointUnreachable:
		c.unreachable(m)
	}
	return c.flush()
}

// Closed reports the end of connection id. Its PEs are removed (with
// RemoveOnConnectionLoss) after ConnectionLossGrace, or at once when it is
// 0; without RemoveOnConnectionLoss they get one KeepAliveTimeout. A
// re-registration within that time, over any connection, keeps the PE
// without a removal in between, and so does a peer's statement that it
// re-registered there (Disown). Unknown ids are ignored.
func (c *Core) Closed(now time.Time, id ConnID) []Output {
	cn := c.conns[id]
	if cn == nil {
		return nil
	}
	delete(c.conns, id)
	if c.cfg.RemoveOnConnectionLoss && c.cfg.ConnectionLossGrace <= 0 {
		for cn.head != nil {
			o := cn.head
			e := o.e
			c.drop(o)
			if cur, ok := c.hs.Get(e.Pool, e.ID); ok && cur == e {
				c.removeElement(e, ReasonConnection)
			}
		}
		return c.flush()
	}
	grace := c.cfg.KeepAliveTimeout
	if c.cfg.RemoveOnConnectionLoss {
		grace = c.cfg.ConnectionLossGrace
	}
	for cn.head != nil {
		o := cn.head
		c.detach(o)
		o.waiting, o.lost = true, c.cfg.RemoveOnConnectionLoss
		c.schedule(o, now.Add(grace))
	}
	return c.flush()
}

// NextDeadline returns when Tick must run next; the zero time when no
// timer is armed.
func (c *Core) NextDeadline() time.Time {
	var d time.Time
	if len(c.timers) > 0 {
		d = c.epoch.Add(c.timers[0].at)
	}
	if !c.expiryAt.IsZero() && (d.IsZero() || c.expiryAt.Before(d)) {
		d = c.expiryAt
	}
	return d
}

// Tick runs the timers due at now: keep-alives, keep-alive timeouts and
// (ExpireOwned) the Registration Life check.
func (c *Core) Tick(now time.Time) []Output {
	c.fire(now)
	if !c.expiryAt.IsZero() && !now.Before(c.expiryAt) {
		c.expire(now)
		c.expiryAt = now.Add(c.cfg.ExpiryCheckInterval)
	}
	return c.flush()
}

// Dialing returns the number of association set-ups (Reach) under way.
func (c *Core) Dialing() int { return len(c.dialing) }

// SourceElements returns the number of PEs registered here from source
// address a and monitored now.
func (c *Core) SourceElements(a netip.Addr) int {
	if s := c.sources[a]; s != nil {
		return s.pes
	}
	return 0
}

func (c *Core) flush() []Output {
	out := c.out
	c.out = nil
	return out
}

func (c *Core) emit(o Output) {
	if c.out == nil {
		c.out = make([]Output, 0, 4) // a registration makes 3
	}
	c.out = append(c.out, o)
}

// send encodes m for connection cn.
func (c *Core) send(id ConnID, m wire.Message) {
	b, err := m.AppendBinary(make([]byte, 0, 64))
	if err != nil {
		c.emit(Output{Kind: EncodeFailed, Conn: id, Msg: m, Detail: err.Error()})
		return
	}
	c.emit(Output{Kind: Send, Conn: id, Msg: m, Data: b})
}
