package enrp_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/registrar/enrp"
	"github.com/rserpool/rserpool/wire"
)

// Two registrars: B starts with A as its configured peer, copies A's
// handlespace, then receives A's next registration as a Handle Update.
func Example() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	info := func(ip string) wire.ServerInfo {
		return wire.ServerInfo{Transport: wire.Transport{Type: wire.TransportTCP, Port: 9901,
			Addrs: []netip.Addr{netip.MustParseAddr(ip)}}}
	}
	pe := func(id uint32) wire.PoolElement {
		return wire.PoolElement{ID: id, HomeServer: 0xa, RegistrationLife: 30000,
			User:   wire.Transport{Type: wire.TransportTCP, Port: 7000, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.9")}},
			Policy: wire.Policy{Type: wire.PolicyRoundRobin}}
	}
	hsA, hsB := handlespace.New(handlespace.Options{}), handlespace.New(handlespace.Options{})
	a := enrp.New(enrp.Config{ID: 0xa, ServerInfo: info("10.0.0.1"), MentorDiscovery: -1}, hsA, nil, now)
	b := enrp.New(enrp.Config{ID: 0xb, ServerInfo: info("10.0.0.2")}, hsB, []string{"10.0.0.1:9901"}, now)
	hsA.Register("EchoPool", pe(1), now)

	nodes := map[string]*enrp.Node{"tcp://10.0.0.1:9901": a, "tcp://10.0.0.2:9901": b}
	from := map[*enrp.Node]string{a: "tcp://10.0.0.1:9901", b: "tcp://10.0.0.2:9901"}
	var deliver func(n *enrp.Node, outs []enrp.Output)
	deliver = func(n *enrp.Node, outs []enrp.Output) {
		for _, o := range outs {
			switch o.Kind {
			case enrp.Send:
				deliver(nodes[o.To], nodes[o.To].Step(now, enrp.Source{Addr: from[n]}, o.Msg))
			case enrp.Ready:
				fmt.Printf("%#x ready with %d PEs\n", n.ID(), map[*enrp.Node]*handlespace.Handlespace{a: hsA, b: hsB}[n].NumElements())
			}
		}
	}
	deliver(a, a.Tick(now))
	deliver(b, b.Tick(now))

	hsA.Register("EchoPool", pe(2), now)
	deliver(a, a.LocalChange(now, wire.ActionAddPE, "EchoPool", pe(2)))
	fmt.Printf("B holds %d PEs; checksum of A's PEs at B %#04x, at A %#04x\n",
		hsB.NumElements(), hsB.Checksum(0xa), hsA.Checksum(0xa))
	// Output:
	// 0xa ready with 1 PEs
	// 0xb ready with 1 PEs
	// B holds 2 PEs; checksum of A's PEs at B 0x24a0, at A 0x24a0
}
