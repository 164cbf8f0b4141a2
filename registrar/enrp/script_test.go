package enrp

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/internal/scripttest"
	"github.com/rserpool/rserpool/wire"
)

// Scripts in testdata/*.txt drive one Node. Each block is a command line,
// a "----" line, and the expected output lines up to a blank line. Lines
// starting with # before a command are comments. Commands:
//
//	new id=0x100 [peers=A,B] [arbitration=higher] [chunk=N] [mcast]
//	tick +DURATION            advance virtual time, then Tick
//	advance +DURATION         advance virtual time only
//	recv from=ADDR [mcast] MSG ...   Step with a message (see parseMsg)
//	register pool=P pe=ID     own PE registered (handlespace + LocalChange ADD_PE)
//	deregister pool=P pe=ID   own PE removed (handlespace + LocalChange DEL_PE)
//	connlost ADDR [ids=ID,ID]  PeerConnLost
//	unreachable ADDR          PeerUnreachable
//	hs                        print the handlespace and the checksum per owner
//	peers                     print the peer list
//	deadline                  print NextDeadline relative to now
type script struct {
	t     *testing.T
	start time.Time
	now   time.Time
	n     *Node
	hs    *handlespace.Handlespace
}

func TestScripts(t *testing.T) {
	scripttest.RunFiles(t, "testdata/*.txt", func(t *testing.T) func(string) []string {
		s := &script{t: t, start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		s.now = s.start
		return s.exec
	})
}

func (s *script) num(v string) uint32 { return scripttest.Num(s.t, v) }

func (s *script) exec(cmd string) []string {
	f := strings.Fields(cmd)
	a := scripttest.KV(f[1:])
	var outs []Output
	switch f[0] {
	case "new":
		cfg := simTimers
		cfg.ID = s.num(a["id"])
		cfg.Rand = rand.New(rand.NewPCG(1, 1))
		cfg.ServerInfo = wire.ServerInfo{Transport: wire.Transport{Type: wire.TransportTCP, Port: 9901,
			Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}}
		if a["arbitration"] == "higher" {
			cfg.Arbitration = HigherIDWins
		}
		if c, ok := a["chunk"]; ok {
			cfg.TableChunkPEs = int(s.num(c))
		}
		_, cfg.Multicast = a["mcast"]
		var peers []string
		if a["peers"] != "" {
			peers = strings.Split(a["peers"], ",")
		}
		s.hs = handlespace.New(handlespace.Options{Rand: rand.New(rand.NewPCG(1, 1))})
		s.n = New(cfg, s.hs, peers, s.now)
		return nil
	case "tick", "advance":
		if len(f) > 1 {
			d, err := time.ParseDuration(strings.TrimPrefix(f[1], "+"))
			if err != nil {
				s.t.Fatalf("%q: %v", cmd, err)
			}
			s.now = s.now.Add(d)
		}
		if f[0] == "advance" {
			return nil
		}
		outs = s.n.Tick(s.now)
	case "recv":
		_, mc := a["mcast"]
		m := s.parseMsg(f[1:])
		// Through the codec, as on the wire.
		b, err := m.AppendBinary(nil)
		if err != nil {
			s.t.Fatalf("%q: encode: %v", cmd, err)
		}
		if m, err = wire.ParseENRP(b); err != nil {
			s.t.Fatalf("%q: parse: %v", cmd, err)
		}
		outs = s.n.Step(s.now, Source{Addr: a["from"], Multicast: mc}, m)
	case "register", "deregister":
		id := s.num(a["pe"])
		pe := simElement(id, s.n.ID())
		action := wire.ActionAddPE
		if f[0] == "register" {
			if _, _, err := s.hs.Register(wire.PoolHandle(a["pool"]), pe, s.now); err != nil {
				s.t.Fatal(err)
			}
		} else {
			s.hs.Deregister(wire.PoolHandle(a["pool"]), id)
			action = wire.ActionDelPE
		}
		outs = s.n.LocalChange(s.now, action, wire.PoolHandle(a["pool"]), pe)
	case "connlost":
		var ids []uint32
		if a["ids"] != "" {
			for _, id := range strings.Split(a["ids"], ",") {
				ids = append(ids, s.num(id))
			}
		}
		outs = s.n.PeerConnLost(s.now, f[1], ids...)
	case "unreachable":
		outs = s.n.PeerUnreachable(s.now, f[1])
	case "hs":
		var r []string
		s.hs.Pools(func(h wire.PoolHandle, _ wire.PolicyType) bool {
			s.hs.Elements(h, func(e *handlespace.Element) bool {
				exp := "never"
				if !e.Expiry.IsZero() {
					exp = "+" + e.Expiry.Sub(s.now).String()
				}
				r = append(r, fmt.Sprintf("pe %s/%d home=%#x expiry=%s", h, e.ID, e.HomeServer, exp))
				return true
			})
			return true
		})
		for _, o := range s.hs.Owners() {
			r = append(r, fmt.Sprintf("checksum %#x = %#04x", o, s.hs.Checksum(o)))
		}
		return r
	case "peers":
		var r []string
		for _, p := range s.n.Peers() {
			heard := "never"
			if !p.LastHeard.IsZero() {
				heard = p.LastHeard.Sub(s.start).String()
			}
			tentative := ""
			if p.Tentative {
				tentative = " tentative"
			}
			r = append(r, fmt.Sprintf("peer %#x %s %s static=%v heard=%s%s", p.ID, p.Addr, p.State, p.Static, heard, tentative))
		}
		return append(r, fmt.Sprintf("ready=%v", s.n.Ready()))
	case "deadline":
		return []string{"+" + s.n.NextDeadline().Sub(s.now).String()}
	default:
		s.t.Fatalf("unknown command %q", cmd)
	}
	r := make([]string, 0, len(outs))
	for _, o := range outs {
		r = append(r, formatOutput(o))
	}
	return r
}

// parseMsg builds a message from "KIND key=value ... FLAG".
func (s *script) parseMsg(f []string) wire.Message {
	var kind string
	var flags []string
	for _, x := range f {
		if strings.HasPrefix(x, "from=") || x == "mcast" {
			continue
		}
		if !strings.Contains(x, "=") {
			if kind == "" {
				kind = x
			} else {
				flags = append(flags, x)
			}
		}
	}
	a := scripttest.KV(f)
	has := func(fl string) bool { return slices.Contains(flags, fl) }
	snd, rcv := s.num(a["sender"]), uint32(0)
	if a["receiver"] != "" {
		rcv = s.num(a["receiver"])
	}
	switch kind {
	case "presence":
		m := &wire.Presence{ReplyRequired: has("R"), Sender: snd, Receiver: rcv, Checksum: uint16(s.num(a["checksum"]))}
		if a["info"] != "" {
			ap := netip.MustParseAddrPort(a["info"])
			m.Info = &wire.ServerInfo{ServerID: snd, Transport: wire.Transport{Type: wire.TransportTCP, Port: ap.Port(), Addrs: []netip.Addr{ap.Addr()}}}
		}
		return m
	case "update":
		act := wire.ActionAddPE
		if has("del") {
			act = wire.ActionDelPE
		}
		home := snd
		if a["home"] != "" {
			home = s.num(a["home"])
		}
		return &wire.HandleUpdate{Sender: snd, Receiver: rcv, Action: act, PoolHandle: wire.PoolHandle(a["pool"]), Element: simElement(s.num(a["pe"]), home)}
	case "htreq":
		return &wire.HandleTableRequest{OwnChildrenOnly: has("W"), Sender: snd, Receiver: rcv}
	case "htresp":
		m := &wire.HandleTableResponse{Reject: has("R"), More: has("M"), Sender: snd, Receiver: rcv}
		home := snd
		if a["home"] != "" {
			home = s.num(a["home"])
		}
		if a["pool"] != "" {
			h, ids, _ := strings.Cut(a["pool"], ":")
			pe := wire.PoolEntry{PoolHandle: wire.PoolHandle(h)}
			for _, id := range strings.Split(ids, ",") {
				pe.Elements = append(pe.Elements, simElement(s.num(id), home))
			}
			m.Pools = append(m.Pools, pe)
		}
		return m
	case "listreq":
		return &wire.ListRequest{Sender: snd, Receiver: rcv}
	case "listresp":
		m := &wire.ListResponse{Reject: has("R"), Sender: snd, Receiver: rcv}
		if a["servers"] != "" {
			for _, sv := range strings.Split(a["servers"], ",") {
				id, addr, _ := strings.Cut(sv, "@")
				ap := netip.MustParseAddrPort(addr)
				m.Servers = append(m.Servers, wire.ServerInfo{ServerID: s.num(id),
					Transport: wire.Transport{Type: wire.TransportTCP, Port: ap.Port(), Addrs: []netip.Addr{ap.Addr()}}})
			}
		}
		return m
	case "init":
		return &wire.InitTakeover{Sender: snd, Receiver: rcv, Target: s.num(a["target"])}
	case "ack":
		return &wire.InitTakeoverAck{Sender: snd, Receiver: rcv, Target: s.num(a["target"])}
	case "takeover":
		return &wire.TakeoverServer{Sender: snd, Receiver: rcv, Target: s.num(a["target"])}
	}
	s.t.Fatalf("unknown message %q", kind)
	return nil
}

func formatOutput(o Output) string {
	switch o.Kind {
	case Send:
		to := o.To
		if o.Multicast {
			to = "multicast"
		}
		return fmt.Sprintf("send %s id=%#x %s", to, o.ToID, formatMsg(o.Msg))
	case KeepAliveHome, OwnershipLost:
		return fmt.Sprintf("%s %s/%d", o.Kind, o.Handle, o.PEID)
	case PeerUp, PeerDown:
		return fmt.Sprintf("%s %#x %s", o.Kind, o.PeerID, o.To)
	}
	return o.Kind.String()
}

func formatMsg(m wire.Message) string {
	flag := func(b bool, s string) string {
		if b {
			return " " + s
		}
		return ""
	}
	switch m := m.(type) {
	case *wire.Presence:
		info := ""
		if m.Info != nil {
			info = fmt.Sprintf(" info=%#x", m.Info.ServerID)
		}
		return fmt.Sprintf("presence%s checksum=%#04x%s", flag(m.ReplyRequired, "R"), m.Checksum, info)
	case *wire.HandleUpdate:
		return fmt.Sprintf("update %s %s/%d home=%#x", m.Action, m.PoolHandle, m.Element.ID, m.Element.HomeServer)
	case *wire.HandleTableRequest:
		return "htreq" + flag(m.OwnChildrenOnly, "W")
	case *wire.HandleTableResponse:
		var ps []string
		for _, p := range m.Pools {
			var ids []string
			for _, e := range p.Elements {
				ids = append(ids, fmt.Sprintf("%d@%#x", e.ID, e.HomeServer))
			}
			ps = append(ps, string(p.PoolHandle)+":"+strings.Join(ids, ","))
		}
		return fmt.Sprintf("htresp%s%s %s", flag(m.Reject, "R"), flag(m.More, "M"), strings.Join(ps, " "))
	case *wire.ListRequest:
		return "listreq"
	case *wire.ListResponse:
		var ss []string
		for _, si := range m.Servers {
			ss = append(ss, fmt.Sprintf("%#x", si.ServerID))
		}
		return fmt.Sprintf("listresp%s [%s]", flag(m.Reject, "R"), strings.Join(ss, " "))
	case *wire.InitTakeover:
		return fmt.Sprintf("init-takeover target=%#x", m.Target)
	case *wire.InitTakeoverAck:
		return fmt.Sprintf("init-takeover-ack target=%#x", m.Target)
	case *wire.TakeoverServer:
		return fmt.Sprintf("takeover-server target=%#x", m.Target)
	}
	return fmt.Sprintf("%T", m)
}
