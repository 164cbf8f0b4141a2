package asap

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/internal/scripttest"
	"github.com/rserpool/rserpool/wire"
)

// Scripts in testdata/*.txt drive one Core (with an ENRP node beside it,
// as in FuzzCore) through the simulation, checking its invariants after
// every command. Each block is a command line, a "----" line, and the
// expected outputs up to a blank line; lines starting with # are comments.
// Messages come via the simulation's endpoints: via=0 and via=1 from
// 127.0.0.1 (TCP), via=2 from 10.0.0.1 and 10.0.0.2 (SCTP, TLS identity
// pe-a), via=3 from an unknown address (and, after a dialed ok, over the
// new association). An endpoint opens a connection at its first message
// and after each close; outputs name the core's connection IDs (conn=),
// numbered in the order the connections open. Limits are simConfig's
// unless new sets them.
//
//	new [key=value...]     a fresh core: max_source, max_elements, max_pool,
//	                       max_pools, remove_on_loss, grace, subset, expire, msgsize
//	reg via=E pool=P pe=N [addr=A,B] [port=N] [transport=tcp|sctp|udp|opaque|bad]
//	                       [policy=rr|wrr|lu|bad] [life=MS]
//	dereg|ack|unreachable via=E pool=P pe=N
//	resolve via=E pool=P [items=N]
//	close via=E
//	tick +DURATION         advance virtual time, running the timers due
//	peer pool=P pe=N home=H [asap=sctp|tcp]   a PE owned by peer H, as ENRP stores it
//	adopt pool=P pe=N      the ENRP node took the PE over (KeepAliveHome)
//	claim pool=P pe=N home=H [table]   a peer states it is the PE's home
//	                       (OwnershipLost): in a Handle Update, or in a table
//	                       (an audit) with table
//	dialed pool=P pe=N ok|fail   the Reach for the PE ended
//	hs                     the handlespace and the monitoring state
func TestScripts(t *testing.T) {
	scripttest.RunFiles(t, "testdata/*.txt", func(t *testing.T) func(string) []string {
		sc := &script{t: t}
		sc.reset(nil)
		return sc.exec
	})
}

type script struct {
	t   *testing.T
	s   *sim
	out []string
}

func (sc *script) reset(a map[string]string) {
	sc.s = newSim(sc.t)
	cfg := simConfig()
	for k, v := range a {
		switch k {
		case "max_source":
			cfg.MaxSourceElements = sc.num(v)
		case "max_elements":
			cfg.MaxElements = sc.num(v)
		case "max_pool":
			cfg.MaxPoolElements = sc.num(v)
		case "max_pools":
			cfg.MaxPools = sc.num(v)
		case "msgsize":
			cfg.MaxMessageSize = sc.num(v)
		case "remove_on_loss":
			cfg.RemoveOnConnectionLoss = v != "false"
		case "grace":
			d, err := time.ParseDuration(v)
			if err != nil {
				sc.t.Fatalf("new: grace: %v", err)
			}
			cfg.ConnectionLossGrace = d
		case "subset":
			cfg.RequireAddressSubset = v != "false"
		case "expire":
			cfg.ExpireOwned = v != "false"
		default:
			sc.t.Fatalf("new: unknown key %q", k)
		}
	}
	sc.s.cfg = cfg
	sc.s.core.Apply(sc.s.now, cfg)
	sc.s.record = func(o Output) { sc.out = append(sc.out, formatOutput(o)) }
}

func (sc *script) num(v string) int { return int(scripttest.Num(sc.t, v)) }

func (sc *script) exec(cmd string) []string {
	f := strings.Fields(cmd)
	a := scripttest.KV(f[1:])
	s := sc.s
	sc.out = nil
	handle := wire.PoolHandle(a["pool"])
	if h, err := wire.ParsePoolHandle(a["pool"]); err == nil {
		handle = h
	}
	id := uint32(0)
	if v, ok := a["pe"]; ok {
		id = uint32(sc.num(v))
	}
	conn := 0
	if v, ok := a["via"]; ok {
		conn = sc.num(v)
	}
	switch f[0] {
	case "new":
		sc.reset(a)
	case "reg":
		pe := wire.PoolElement{ID: id, RegistrationLife: 30000,
			User:   wire.Transport{Type: wire.TransportTCP, Port: 7000, Addrs: addrs("127.0.0.1")},
			Policy: wire.Policy{Type: wire.PolicyRoundRobin}}
		if v, ok := a["addr"]; ok {
			pe.User.Addrs = nil
			for _, x := range strings.Split(v, ",") {
				if x != "" {
					pe.User.Addrs = append(pe.User.Addrs, netip.MustParseAddr(x))
				}
			}
		}
		if v, ok := a["port"]; ok {
			pe.User.Port = uint16(sc.num(v))
		}
		if v, ok := a["life"]; ok {
			pe.RegistrationLife = uint32(sc.num(v))
		}
		switch a["transport"] {
		case "sctp":
			pe.User.Type = wire.TransportSCTP
		case "udp":
			pe.User.Type = wire.TransportUDP
		case "opaque":
			pe.User = wire.Transport{Type: wire.TransportOpaque, Opaque: []byte("x")}
		case "bad":
			pe.User.Type = 0x99
		}
		switch a["policy"] {
		case "wrr":
			pe.Policy = wire.Policy{Type: wire.PolicyWeightedRoundRobin, Weight: 1}
		case "lu":
			pe.Policy = wire.Policy{Type: wire.PolicyLeastUsed}
		case "bad":
			pe.Policy = wire.Policy{Type: 0x12345678, Raw: []uint32{1}}
		}
		s.step(conn, &wire.Registration{PoolHandle: handle, Element: pe})
	case "dereg":
		s.step(conn, &wire.Deregistration{PoolHandle: handle, ID: id})
	case "ack":
		s.step(conn, &wire.EndpointKeepAliveAck{PoolHandle: handle, ID: id})
	case "unreachable":
		s.step(conn, &wire.EndpointUnreachable{PoolHandle: handle, ID: id})
	case "resolve":
		m := &wire.HandleResolution{PoolHandle: handle}
		if v, ok := a["items"]; ok {
			m.HasItems, m.Items = true, uint32(sc.num(v))
		}
		s.step(conn, m)
	case "close":
		if c := s.slots[conn%len(s.slots)]; c != 0 {
			s.closeConn(c)
		}
	case "tick":
		d, err := time.ParseDuration(strings.TrimPrefix(f[1], "+"))
		if err != nil {
			sc.t.Fatalf("%q: %v", cmd, err)
		}
		s.advance(d)
	case "peer":
		pe := wire.PoolElement{ID: id, HomeServer: uint32(sc.num(a["home"])), RegistrationLife: 30000,
			User:   wire.Transport{Type: wire.TransportTCP, Port: 7000, Addrs: addrs("10.0.0.9")},
			Policy: wire.Policy{Type: wire.PolicyRoundRobin}}
		switch a["asap"] {
		case "sctp":
			pe.ASAP = wire.Transport{Type: wire.TransportSCTP, Port: 5000, Addrs: addrs("10.0.0.9")}
		case "tcp":
			pe.ASAP = wire.Transport{Type: wire.TransportTCP, Port: 5000, Addrs: addrs("10.0.0.9")}
		}
		if _, _, err := s.hs.Register(handle, pe, s.now); err != nil {
			sc.t.Fatalf("%q: %v", cmd, err)
		}
	case "adopt":
		s.hs.SetHome(handle, id, simID)
		s.carry(s.core.Adopt(s.now, handle, id))
	case "claim":
		s.hs.SetHome(handle, id, uint32(sc.num(a["home"])))
		_, table := a["table"]
		s.carry(s.core.Disown(s.now, handle, id, !table))
	case "dialed":
		i := slices.IndexFunc(s.reach, func(o Output) bool { return o.Handle == handle && o.PEID == id })
		if i < 0 {
			sc.t.Fatalf("%q: no reach pending for the PE", cmd)
		}
		s.dialed(i, len(f) > 3 && f[3] == "ok")
	case "hs":
		sc.hs()
	default:
		sc.t.Fatalf("unknown command %q", cmd)
	}
	s.check()
	return sc.out
}

// hs prints every PE, whether it is monitored, and the per-source counts.
func (sc *script) hs() {
	s := sc.s
	s.hs.Pools(func(h wire.PoolHandle, _ wire.PolicyType) bool {
		s.hs.Elements(h, func(e *handlespace.Element) bool {
			line := fmt.Sprintf("pe %s/%d home=%#x", h, e.ID, e.HomeServer)
			if o := ownedOf(e); o != nil {
				conn := "none"
				if o.c != nil {
					conn = strconv.Itoa(int(o.c.id))
				}
				line += fmt.Sprintf(" conn=%s waiting=%v timer=+%v", conn, o.waiting, s.core.epoch.Add(o.at).Sub(s.now))
			}
			sc.out = append(sc.out, line)
			return true
		})
		return true
	})
	srcs := make([]string, 0, len(s.core.sources))
	for a, src := range s.core.sources {
		srcs = append(srcs, fmt.Sprintf("source %v: %d PEs", a, src.pes))
	}
	slices.Sort(srcs)
	sc.out = append(sc.out, srcs...)
}

func formatOutput(o Output) string {
	pe := fmt.Sprintf("%s/%d", o.Handle, o.PEID)
	switch o.Kind {
	case Send:
		return fmt.Sprintf("send conn=%d %s", o.Conn, formatMsg(o.Msg))
	case Close:
		return fmt.Sprintf("close conn=%d", o.Conn)
	case Change:
		return fmt.Sprintf("change %v %s", o.Action, pe)
	case Reach:
		return fmt.Sprintf("reach %s %s", pe, o.Addr)
	case Registered:
		r := fmt.Sprintf("registered conn=%d %s %v", o.Conn, pe, o.Element.User.Addrs)
		if o.Created {
			r += " new"
		}
		if o.PoolCreated {
			r += " new-pool"
		}
		return r
	case Rejected:
		return fmt.Sprintf("rejected conn=%d %s cause=%#x result=%v limit=%v (%s)", o.Conn, pe, uint16(o.Cause), o.Result, o.Limit, o.Detail)
	case Deregistered:
		return fmt.Sprintf("deregistered conn=%d %s existed=%v", o.Conn, pe, o.N == 1)
	case DeregistrationRefused:
		return fmt.Sprintf("deregistration-refused conn=%d %s limit=%v", o.Conn, pe, o.Limit)
	case Resolved:
		return fmt.Sprintf("resolved conn=%d %s pes=%d", o.Conn, o.Handle, o.N)
	case KeepAliveAcked:
		return fmt.Sprintf("keepalive-acked conn=%d %s", o.Conn, pe)
	case UnreachableReported:
		return fmt.Sprintf("unreachable-reported %s count=%d", pe, o.N)
	case Removed:
		r := fmt.Sprintf("removed %s reason=%v", pe, o.Reason)
		if o.PoolGone {
			r += " pool-gone"
		}
		return r
	}
	return fmt.Sprintf("%v %s", o.Kind, pe)
}

func formatMsg(m wire.Message) string {
	cause := func(e *wire.OperationError) string {
		if e == nil || len(e.Causes) == 0 {
			return ""
		}
		return fmt.Sprintf(" cause=%#x info=%dB", uint16(e.Causes[0].Code), len(e.Causes[0].Info))
	}
	switch m := m.(type) {
	case *wire.RegistrationResponse:
		r := fmt.Sprintf("registration-response %s/%d", m.PoolHandle, m.ID)
		if m.Reject {
			r += " reject"
		}
		return r + cause(m.Error)
	case *wire.DeregistrationResponse:
		return fmt.Sprintf("deregistration-response %s/%d%s", m.PoolHandle, m.ID, cause(m.Error))
	case *wire.HandleResolutionResponse:
		ids := make([]string, len(m.Elements))
		for i, e := range m.Elements {
			ids[i] = strconv.Itoa(int(e.ID))
		}
		r := fmt.Sprintf("resolution-response %s pes=[%s]", m.PoolHandle, strings.Join(ids, ","))
		if m.Policy != nil {
			r += " policy=" + m.Policy.Type.Name()
		}
		return r + cause(m.Error)
	case *wire.EndpointKeepAlive:
		r := fmt.Sprintf("keep-alive %s/%d", m.PoolHandle, m.ID)
		if m.Home {
			r += " home"
		}
		return r
	}
	return fmt.Sprintf("%T", m)
}
