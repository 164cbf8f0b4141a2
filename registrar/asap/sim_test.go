package asap

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/registrar/enrp"
	"github.com/rserpool/rserpool/wire"
)

// The simulation drives one Core and one ENRP node over a shared
// handlespace the way the registrar's loop does, from a byte program, and
// checks the invariants after every step. FuzzCore feeds it arbitrary
// programs; the TestRegression tests replay the ones that once failed.

const simID = 0x100

var simT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// simConfig has small limits so that programs reach them.
func simConfig() Config {
	return Config{
		ID:                     simID,
		KeepAliveInterval:      time.Second,
		KeepAliveTimeout:       time.Second,
		ExpiryCheckInterval:    500 * time.Millisecond,
		RemoveOnConnectionLoss: true,
		RequireAddressSubset:   true,
		UnreachableThreshold:   2,
		ResolutionItems:        3,
		MaxResolutionItems:     4,
		MaxElements:            12,
		MaxPoolElements:        5,
		MaxPools:               4,
		MaxHandleLength:        8,
		MaxSourceElements:      6,
		MaxMessageSize:         512,
		MaxDials:               2,
		Pools: []Pool{
			{Handle: "auth", Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			{Handle: "tls", TLSIdentities: []string{"pe-a"}},
			{Handle: "cap2", MaxElements: 2},
		},
	}
}

// simSlots are the simulated connections' properties; closing one opens a
// new connection with the same properties at its next message.
var simSlots = []ConnInfo{
	{Remote: addrs("127.0.0.1"), ASAP: wire.Transport{Type: wire.TransportTCP, Port: 5000, Addrs: addrs("127.0.0.1")}},
	{Remote: addrs("127.0.0.1"), ASAP: wire.Transport{Type: wire.TransportTCP, Port: 5001, Addrs: addrs("127.0.0.1")}},
	{Remote: addrs("10.0.0.1", "10.0.0.2"), TLSIdentities: []string{"pe-a"},
		ASAP: wire.Transport{Type: wire.TransportSCTP, Port: 5002, Addrs: addrs("10.0.0.1", "10.0.0.2")}},
	{}, // no known address
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

type sim struct {
	t     testing.TB
	now   time.Time
	cfg   Config
	hs    *handlespace.Handlespace
	core  *Core
	node  *enrp.Node
	slots []ConnID // current connection of each slot; 0 = none yet
	open  map[ConnID]bool
	last  ConnID
	reach []Output // Reach outputs not answered yet
	log   []string // what happened, for failure messages
	// record, when set, sees every output of the core (scripts print them).
	record func(Output)
}

func newSim(t testing.TB) *sim {
	s := &sim{t: t, now: simT0, cfg: simConfig(), hs: handlespace.New(handlespace.Options{Rand: rand.New(rand.NewPCG(1, 2))}),
		slots: make([]ConnID, len(simSlots)), open: map[ConnID]bool{}}
	s.core = New(s.cfg, s.hs, s.now)
	s.node = enrp.New(enrp.Config{ID: simID, MaxPeers: 4, TableChunkPEs: 2, MentorDiscovery: -1,
		Rand:       rand.New(rand.NewPCG(3, 4)),
		ServerInfo: wire.ServerInfo{Transport: wire.Transport{Type: wire.TransportTCP, Port: 9901, Addrs: addrs("10.0.0.100")}}},
		s.hs, nil, s.now)
	return s
}

func (s *sim) logf(format string, a ...any) {
	s.log = append(s.log, fmt.Sprintf("%v ", s.now.Sub(simT0))+fmt.Sprintf(format, a...))
}

func (s *sim) fatalf(format string, a ...any) {
	s.t.Helper()
	tail := s.log
	if len(tail) > 30 {
		tail = tail[len(tail)-30:]
	}
	s.t.Fatalf("%s\nlast steps:\n  %s", fmt.Sprintf(format, a...), strings.Join(tail, "\n  "))
}

// conn returns the connection of slot i, opening one when needed.
func (s *sim) conn(i int) ConnID {
	i %= len(s.slots)
	if s.slots[i] == 0 {
		s.last++
		s.slots[i] = s.last
		s.open[s.last] = true
		s.core.Open(s.last, simSlots[i])
	}
	return s.slots[i]
}

// closeConn ends connection id wherever it is.
func (s *sim) closeConn(id ConnID) {
	if !s.open[id] {
		return
	}
	delete(s.open, id)
	for i, c := range s.slots {
		if c == id {
			s.slots[i] = 0
		}
	}
	s.logf("closed conn %d", id)
	s.carry(s.core.Closed(s.now, id))
}

// carry carries out the core's outputs as the registrar's loop does and
// checks each one.
func (s *sim) carry(outs []Output) {
	for _, o := range outs {
		s.checkOutput(o)
		if s.record != nil {
			s.record(o)
		}
		switch o.Kind {
		case Close:
			s.closeConn(o.Conn)
		case Change:
			s.enrp(s.node.LocalChange(s.now, o.Action, o.Handle, o.Element))
		case Reach:
			s.reach = append(s.reach, o)
		}
	}
}

// enrp carries out the node's outputs.
func (s *sim) enrp(outs []enrp.Output) {
	for _, o := range outs {
		switch o.Kind {
		case enrp.Send:
			if _, err := o.Msg.AppendBinary(nil); err != nil {
				s.fatalf("ENRP output %T does not encode: %v\n%+v", o.Msg, err, o.Msg)
			}
		case enrp.KeepAliveHome:
			s.logf("adopt %q/%d", o.Handle, o.PEID)
			s.carry(s.core.Adopt(s.now, o.Handle, o.PEID))
		case enrp.OwnershipLost:
			s.logf("disown %q/%d", o.Handle, o.PEID)
			s.carry(s.core.Disown(s.now, o.Handle, o.PEID, !o.FromTable))
		}
	}
}

// checkOutput: messages encode, decode and fit the connection; events
// carry label values that cannot make a metric panic.
func (s *sim) checkOutput(o Output) {
	switch o.Kind {
	case Send:
		if !s.open[o.Conn] {
			s.fatalf("send on connection %d, which is not open", o.Conn)
		}
		m, err := wire.ParseASAP(o.Data)
		if err != nil {
			s.fatalf("output %T does not decode: %v", o.Msg, err)
		}
		if m.Type() != o.Msg.Type() {
			s.fatalf("output %T decodes as %T", o.Msg, m)
		}
		if len(o.Data) > s.cfg.MaxMessageSize {
			s.fatalf("output %T of %d bytes exceeds the message size %d", o.Msg, len(o.Data), s.cfg.MaxMessageSize)
		}
	case EncodeFailed:
		s.fatalf("encoding failed: %T %s", o.Msg, o.Detail)
	case Change:
		if o.Element.HomeServer != simID {
			s.fatalf("change of a PE with home 0x%x", o.Element.HomeServer)
		}
	case Reach:
		if !strings.HasPrefix(o.Addr, "sctp://") {
			s.fatalf("reach %q", o.Addr)
		}
	case Registered, Rejected, Removed:
		for _, v := range []string{o.Handle.String(), o.Result.String(), o.Limit.String(), o.Reason.String()} {
			if !utf8.ValidString(v) || v == "unknown" {
				s.fatalf("label value %q", v)
			}
		}
	}
	if o.Kind.String() == "" || strings.HasPrefix(o.Kind.String(), "kind(") {
		s.fatalf("output of unknown kind %d", o.Kind)
	}
}

// viaWire returns m as the receiver decodes it, or false when m cannot be
// sent at all (a field the encoder refuses): what arrives has been
// through the wire.
func (s *sim) viaWire(m wire.Message) (wire.Message, bool) {
	b, err := m.AppendBinary(nil)
	if err != nil {
		s.logf("unsendable %T: %v", m, err)
		return nil, false
	}
	d, err := wire.Parse(m.Protocol(), b)
	if err != nil {
		s.fatalf("%T encodes but does not decode: %v", m, err)
	}
	return d, true
}

// stepENRP runs one ENRP message from peer p through the node.
func (s *sim) stepENRP(p uint32, m wire.Message) {
	if m, ok := s.viaWire(m); ok {
		s.enrp(s.node.Step(s.now, enrp.Source{Addr: peerAddr(p)}, m))
	}
}

// step runs one ASAP message through the core, from connection slot i,
// and checks that a registration it admits was within the limits.
func (s *sim) step(i int, m wire.Message) {
	m, ok := s.viaWire(m)
	if !ok {
		return
	}
	id := s.conn(i)
	var before struct{ elements, pools, pool int }
	reg, _ := m.(*wire.Registration)
	if reg != nil {
		before.elements, before.pools, before.pool = s.hs.NumElements(), s.hs.NumPools(), s.hs.PoolLen(reg.PoolHandle)
	}
	s.logf("conn %d: %s", id, describe(m))
	outs := s.core.Step(s.now, id, m)
	for _, o := range outs {
		if o.Kind != Registered || !o.Created {
			continue
		}
		poolMax := s.cfg.MaxPoolElements
		for _, p := range s.cfg.Pools {
			if p.Handle == o.Handle && p.MaxElements > 0 {
				poolMax = p.MaxElements
			}
		}
		switch {
		case len(o.Handle) == 0 || len(o.Handle) > s.cfg.MaxHandleLength:
			s.fatalf("admitted handle of %d bytes", len(o.Handle))
		case o.PEID == 0:
			s.fatalf("admitted PE ID 0")
		case before.elements >= s.cfg.MaxElements:
			s.fatalf("admitted a PE at %d elements", before.elements)
		case before.pool >= poolMax:
			s.fatalf("admitted a PE into a pool of %d", before.pool)
		case o.PoolCreated && before.pools >= s.cfg.MaxPools:
			s.fatalf("admitted a pool at %d pools", before.pools)
		}
	}
	s.carry(outs)
}

// advance moves time on by d and runs every timer due on the way.
func (s *sim) advance(d time.Duration) {
	end := s.now.Add(d)
	for i := 0; i < 10000; i++ {
		next := end
		if cd := s.core.NextDeadline(); !cd.IsZero() && cd.Before(next) {
			next = cd
		}
		if nd := s.node.NextDeadline(); nd.Before(next) {
			next = nd
		}
		if next.After(s.now) {
			s.now = next
		}
		if cd := s.core.NextDeadline(); !cd.IsZero() && !cd.After(s.now) {
			s.carry(s.core.Tick(s.now))
			if cd := s.core.NextDeadline(); !cd.IsZero() && !cd.After(s.now) {
				s.fatalf("core deadline %v not after now after Tick", cd.Sub(simT0))
			}
		}
		if !s.node.NextDeadline().After(s.now) {
			s.enrp(s.node.Tick(s.now))
		}
		if !s.now.Before(end) {
			return
		}
	}
	s.fatalf("timers did not settle within 10,000 ticks")
}

func describe(m wire.Message) string {
	switch m := m.(type) {
	case *wire.Registration:
		return fmt.Sprintf("register %q/%d %v", m.PoolHandle, m.Element.ID, m.Element.User.Addrs)
	case *wire.Deregistration:
		return fmt.Sprintf("deregister %q/%d", m.PoolHandle, m.ID)
	case *wire.EndpointKeepAliveAck:
		return fmt.Sprintf("ack %q/%d", m.PoolHandle, m.ID)
	case *wire.EndpointUnreachable:
		return fmt.Sprintf("unreachable %q/%d", m.PoolHandle, m.ID)
	case *wire.HandleResolution:
		return fmt.Sprintf("resolve %q", m.PoolHandle)
	}
	return fmt.Sprintf("%T", m)
}

// check verifies the invariants that hold between two calls once their
// outputs are carried out.
func (s *sim) check() {
	c := s.core
	// Per-owner checksums and counts against a recomputation.
	sums, counts := map[uint32]wire.ChecksumSum{}, map[uint32]int{}
	nOwned, elements, pools := 0, 0, 0
	s.hs.Pools(func(h wire.PoolHandle, _ wire.PolicyType) bool {
		pools++
		s.hs.Elements(h, func(e *handlespace.Element) bool {
			elements++
			sums[e.HomeServer] = sums[e.HomeServer].Add(wire.PEChecksumPart(h, e.ID))
			counts[e.HomeServer]++
			o := ownedOf(e)
			switch {
			case e.HomeServer == simID && o == nil:
				s.fatalf("PE %q/%d is ours and not monitored", h, e.ID)
			case e.HomeServer != simID && o != nil:
				s.fatalf("PE %q/%d of 0x%x is monitored here", h, e.ID, e.HomeServer)
			case o != nil && (o.e != e || !c.timers.holds(o)):
				s.fatalf("PE %q/%d: monitoring state not in the timer heap", h, e.ID)
			case o != nil && o.c != nil && !s.open[o.c.id]:
				s.fatalf("PE %q/%d on closed connection %d", h, e.ID, o.c.id)
			}
			if o != nil {
				nOwned++
			}
			return true
		})
		return true
	})
	if elements != s.hs.NumElements() || pools != s.hs.NumPools() {
		s.fatalf("counts %d/%d, handlespace says %d/%d", elements, pools, s.hs.NumElements(), s.hs.NumPools())
	}
	for _, o := range s.hs.Owners() {
		if _, ok := counts[o]; !ok {
			s.fatalf("owner 0x%x listed without PEs", o)
		}
	}
	for o, n := range counts {
		if got := s.hs.Checksum(o); got != sums[o].Checksum() {
			s.fatalf("checksum of 0x%x is 0x%04x, recomputed 0x%04x", o, got, sums[o].Checksum())
		}
		if got := s.hs.OwnedCount(o); got != n {
			s.fatalf("owner 0x%x has %d PEs, recomputed %d", o, got, n)
		}
	}
	// The timer heap holds exactly the owned PEs, in heap order.
	if len(c.timers) != nOwned {
		s.fatalf("%d timers for %d owned PEs", len(c.timers), nOwned)
	}
	for i, o := range c.timers {
		if int(o.idx) != i || (i > 0 && c.timers[(i-1)/2].at > o.at) {
			s.fatalf("timer heap broken at %d", i)
		}
	}
	// Connection lists: each owned PE with a connection is on that list once.
	listed := 0
	for id, cn := range c.conns {
		if !s.open[id] {
			s.fatalf("core holds closed connection %d", id)
		}
		var prev *owned
		for o := cn.head; o != nil; o = o.next {
			if o.c != cn || o.prev != prev || ownedOf(o.e) != o {
				s.fatalf("connection %d: list broken", id)
			}
			if listed++; listed > nOwned {
				s.fatalf("connection lists longer than the owned PEs")
			}
			prev = o
		}
	}
	withConn := 0
	sources := map[netip.Addr]int{}
	for _, o := range c.timers {
		if o.c != nil {
			withConn++
		}
		if o.src != nil {
			sources[o.src.addr]++
			if c.sources[o.src.addr] != o.src {
				s.fatalf("source %v: stale record", o.src.addr)
			}
		}
	}
	if listed != withConn {
		s.fatalf("%d PEs on connection lists, %d with a connection", listed, withConn)
	}
	// Per-source counts match and stay within the cap.
	if len(sources) != len(c.sources) {
		s.fatalf("%d sources counted, %d recomputed", len(c.sources), len(sources))
	}
	for a, n := range sources {
		if c.sources[a].pes != n || n > s.cfg.MaxSourceElements {
			s.fatalf("source %v: %d PEs counted, %d recomputed, cap %d", a, c.sources[a].pes, n, s.cfg.MaxSourceElements)
		}
	}
	if len(c.dialing) > s.cfg.MaxDials || len(c.dialing) != len(s.reach) {
		s.fatalf("%d set-ups under way, %d asked for, cap %d", len(c.dialing), len(s.reach), s.cfg.MaxDials)
	}
}

// reader hands out the bytes of a program; past the end it yields zeros.
type reader struct{ b []byte }

func (r *reader) more() bool { return len(r.b) > 0 }

func (r *reader) u8() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 { return uint16(r.u8())<<8 | uint16(r.u8()) }

func (r *reader) u32() uint32 { return uint32(r.u16())<<16 | uint32(r.u16()) }

func (r *reader) bytes(n int) []byte {
	n = min(n, len(r.b))
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

var simHandles = []wire.PoolHandle{"P", "Q", "auth", "tls", "cap2", "", "\xff\x00", "12345678", "123456789", "P\x00",
	"R", "S", "T"}

func (r *reader) handle() wire.PoolHandle {
	b := r.u8()
	if b >= 0xf0 {
		return wire.PoolHandle(r.bytes(int(r.u8()) % 48))
	}
	return simHandles[int(b)%len(simHandles)]
}

func (r *reader) id() uint32 {
	switch b := r.u8(); {
	case b < 0xf0:
		return uint32(b % 8)
	case b < 0xf8:
		return 0xffffffff
	default:
		return r.u32()
	}
}

var simAddrs = [][]netip.Addr{
	addrs("127.0.0.1"), addrs("0.0.0.0"), addrs("10.0.0.1"), addrs("10.0.0.1", "10.0.0.2"), addrs("::"),
	nil, addrs("::1"), addrs("::ffff:127.0.0.1"), addrs("192.0.2.1"),
}

func (r *reader) transport() wire.Transport {
	b := r.u8()
	t := wire.Transport{Port: 7000 + uint16(b&3), Addrs: simAddrs[int(b>>2)%len(simAddrs)]}
	switch r.u8() % 8 {
	case 0, 1, 2:
		t.Type = wire.TransportTCP
	case 3:
		t.Type = wire.TransportSCTP
	case 4:
		t.Type = wire.TransportUDP
	case 5:
		t.Type, t.Port, t.Addrs, t.Opaque = wire.TransportOpaque, 0, nil, []byte("x")
	case 6:
		t.Type, t.Port = wire.TransportTCP, 0
	case 7:
		t.Type = 0x99
	}
	if b == 0xff {
		t.Addrs = make([]netip.Addr, 65)
		for i := range t.Addrs {
			t.Addrs[i] = netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
		}
	}
	return t
}

func (r *reader) policy() wire.Policy {
	switch b := r.u8(); b % 6 {
	case 0, 1:
		return wire.Policy{Type: wire.PolicyRoundRobin}
	case 2:
		return wire.Policy{Type: wire.PolicyWeightedRoundRobin, Weight: uint32(b >> 3)}
	case 3:
		return wire.Policy{Type: wire.PolicyLeastUsed, Load: uint32(b) << 24}
	case 4:
		return wire.Policy{Type: wire.PolicyPriorityLeastUsed, Priority: uint32(b >> 4), Load: uint32(b)}
	default:
		return wire.Policy{Type: 0x12345678, Raw: []uint32{1}}
	}
}

var simASAP = []wire.Transport{
	{},
	{Type: wire.TransportSCTP, Port: 5002, Addrs: addrs("10.0.0.1", "10.0.0.2")},
	{Type: wire.TransportTCP, Port: 5000, Addrs: addrs("127.0.0.1")},
	{Type: wire.TransportSCTP, Port: 5002, Addrs: addrs("0.0.0.0")},
}

// element reads a PE: ID, life, user transport (2 bytes), policy, ASAP
// transport.
func (r *reader) element() wire.PoolElement {
	return wire.PoolElement{ID: r.id(), RegistrationLife: uint32(r.u8()) * 100, User: r.transport(), Policy: r.policy(),
		ASAP: simASAP[int(r.u8())%len(simASAP)]}
}

var simPeers = []uint32{0x200, 0x300, simID, 0}

func peerAddr(p uint32) string { return fmt.Sprintf("tcp://10.0.1.%d:9901", p>>8) }

// Program op codes.
const (
	opRegister = iota
	opDeregister
	opAck
	opResolve
	opUnreachable
	opClose
	opAdvance
	opRawASAP
	opUpdate
	opPresence
	opRawENRP
	opDialed
	opReload
	opTakeover
	opTable
	numOps
)

// run executes a program, checking after every operation.
func (s *sim) run(prog []byte) {
	r := &reader{b: prog}
	for n := 0; r.more() && n < 300; n++ {
		op := r.u8() % numOps
		slot := int(r.u8())
		switch op {
		case opRegister:
			s.step(slot, &wire.Registration{PoolHandle: r.handle(), Element: r.element()})
		case opDeregister:
			s.step(slot, &wire.Deregistration{PoolHandle: r.handle(), ID: r.id()})
		case opAck:
			s.step(slot, &wire.EndpointKeepAliveAck{PoolHandle: r.handle(), ID: r.id()})
		case opResolve:
			b := r.u8()
			s.step(slot, &wire.HandleResolution{PoolHandle: r.handle(), HasItems: b&1 != 0, Items: uint32(b>>1) | uint32(b>>7)*0xffffff00})
		case opUnreachable:
			s.step(slot, &wire.EndpointUnreachable{PoolHandle: r.handle(), ID: r.id()})
		case opClose:
			if id := s.slots[slot%len(s.slots)]; id != 0 {
				s.closeConn(id)
			}
		case opAdvance:
			d := time.Duration(r.u8()) * 50 * time.Millisecond
			s.logf("advance %v", d)
			s.advance(d)
		case opRawASAP:
			raw := r.bytes(min(int(r.u16()), s.cfg.MaxMessageSize))
			m, err := wire.ParseASAP(raw)
			v := Screen(raw, m, err, s.cfg.MaxMessageSize)
			if v.Reply != nil {
				b, err := v.Reply.AppendBinary(nil)
				if err != nil || len(b) > s.cfg.MaxMessageSize {
					s.fatalf("error reply to %x: %d bytes, %v", raw, len(b), err)
				}
				if _, err := wire.ParseASAP(b); err != nil {
					s.fatalf("error reply to %x does not decode: %v", raw, err)
				}
			}
			if err != nil && !v.Bad {
				s.fatalf("undecodable message not counted as bad")
			}
			if v.Msg != nil {
				s.step(slot, v.Msg)
			}
		case opUpdate:
			p := simPeers[slot%len(simPeers)]
			el := r.element()
			el.HomeServer = simPeers[int(r.u8())%len(simPeers)]
			m := &wire.HandleUpdate{Sender: p, Receiver: simID, Action: wire.UpdateAction(r.u8() % 3), PoolHandle: r.handle(), Element: el}
			s.logf("ENRP from 0x%x: update %v %q/%d home 0x%x", p, m.Action, m.PoolHandle, el.ID, el.HomeServer)
			s.stepENRP(p, m)
		case opPresence:
			p := simPeers[slot%len(simPeers)]
			m := &wire.Presence{Sender: p, Receiver: simID, ReplyRequired: r.u8()&1 != 0, Checksum: r.u16(),
				Info: &wire.ServerInfo{ServerID: p, Transport: wire.Transport{Type: wire.TransportTCP, Port: 9901, Addrs: addrs(fmt.Sprintf("10.0.1.%d", p>>8))}}}
			s.logf("ENRP from 0x%x: presence", p)
			s.stepENRP(p, m)
		case opRawENRP:
			p := simPeers[slot%len(simPeers)]
			raw := r.bytes(int(r.u16()))
			if m, err := wire.ParseENRP(raw); err == nil {
				s.logf("ENRP from 0x%x: %T", p, m)
				s.enrp(s.node.Step(s.now, enrp.Source{Addr: peerAddr(p)}, m))
			} else {
				_ = enrp.ErrorFor(raw, err)
			}
		case opDialed:
			if len(s.reach) == 0 {
				break
			}
			s.dialed(slot%len(s.reach), r.u8()&1 != 0)
		case opReload:
			b := r.u8()
			s.cfg.RemoveOnConnectionLoss = b&1 != 0
			s.cfg.ExpireOwned = b&2 != 0
			s.cfg.RequireAddressSubset = b&4 == 0
			s.cfg.ConnectionLossGrace = 0
			if b&8 != 0 {
				s.cfg.ConnectionLossGrace = 300 * time.Millisecond
			}
			s.logf("reload %08b", b)
			s.core.Apply(s.now, s.cfg)
		case opTakeover:
			p := simPeers[slot%len(simPeers)]
			target := simPeers[int(r.u8())%len(simPeers)]
			var m wire.Message = &wire.InitTakeover{Sender: p, Receiver: simID, Target: target}
			if r.u8()&1 != 0 {
				m = &wire.TakeoverServer{Sender: p, Receiver: simID, Target: target}
			}
			s.logf("ENRP from 0x%x: %T target 0x%x", p, m, target)
			s.stepENRP(p, m)
		case opTable:
			p := simPeers[slot%len(simPeers)]
			m := &wire.HandleTableResponse{Sender: p, Receiver: simID, More: r.u8()&1 != 0}
			for range int(r.u8() % 4) {
				el := r.element()
				el.HomeServer = simPeers[int(r.u8())%len(simPeers)]
				m.Pools = append(m.Pools, wire.PoolEntry{PoolHandle: r.handle(), Elements: []wire.PoolElement{el}})
			}
			s.logf("ENRP from 0x%x: table response", p)
			s.stepENRP(p, m)
		}
		s.check()
	}
	// Let every timer run out: monitoring must end consistently too.
	s.advance(30 * time.Second)
	s.check()
}

// dialed ends the set-up of s.reach[i]: ok opens the new association
// (from 10.0.0.9, SCTP), which later messages of the last slot use.
func (s *sim) dialed(i int, ok bool) {
	o := s.reach[i]
	s.reach = append(s.reach[:i], s.reach[i+1:]...)
	var id ConnID
	if ok {
		s.last++
		id = s.last
		s.open[id] = true
		s.core.Open(id, ConnInfo{Remote: addrs("10.0.0.9"), ASAP: wire.Transport{Type: wire.TransportSCTP, Port: 5000, Addrs: addrs("10.0.0.9")}})
	}
	s.logf("dialed %q/%d ok=%v conn %d", o.Handle, o.PEID, ok, id)
	s.carry(s.core.Dialed(s.now, o.Handle, o.PEID, id, ok))
	if ok && s.open[id] {
		s.slots[len(s.slots)-1] = id
	}
}

// prog builds programs for seeds and regression tests.
type prog []byte

func (p prog) op(op byte, slot byte, args ...byte) prog {
	return append(append(p, op, slot), args...)
}

// register: from slot, PE id (< 0xf0) into simHandles[handle], TCP on
// 127.0.0.1 (the registering connection's address on slots 0 and 1).
func (p prog) register(slot, handle, id byte) prog {
	return p.op(opRegister, slot, handle, id, 100, 0, 0, 0, 0)
}

// update: a Handle Update from peer simPeers[peer] adding PE id of home
// simPeers[home] to simHandles[handle], with ASAP transport simASAP[asap]
// and a TCP user transport on 10.0.0.1.
func (p prog) update(peer, id, home, asap, handle byte) prog {
	return p.op(opUpdate, peer, id, 100, 2<<2, 0, 0, asap, home, 0, handle)
}

func (p prog) raw(op byte, slot byte, b []byte) prog {
	p = p.op(op, slot)
	p = binary.BigEndian.AppendUint16(p, uint16(len(b)))
	return append(p, b...)
}
