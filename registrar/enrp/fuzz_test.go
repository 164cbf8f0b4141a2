package enrp

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// FuzzStep feeds a Node arbitrary ENRP messages (each prefixed by a 2-byte
// length, a sender-address byte and a time step) interleaved with Ticks and
// transport reports (bit 0x40 of the address byte: that address's
// connection was lost, with the IDs 0x200 and 0x999 seen on it; bit 0x20:
// it is unreachable). The
// property: no panic, NextDeadline never goes backwards past now, every
// output message encodes, and the peer list stays within MaxPeers.
func FuzzStep(f *testing.F) {
	seed := func(ms ...wire.Message) []byte {
		var b []byte
		for i, m := range ms {
			e, err := m.AppendBinary(nil)
			if err != nil {
				f.Fatal(err)
			}
			b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
			b = append(b, byte(i), byte(i*37))
			b = append(b, e...)
		}
		return b
	}
	info := &wire.ServerInfo{ServerID: 0x200, Transport: wire.Transport{Type: wire.TransportTCP, Port: 9901,
		Addrs: simElement(1, 1).User.Addrs}}
	f.Add(seed(
		&wire.Presence{Sender: 0x200, Checksum: 0x1234, Info: info},
		&wire.HandleTableResponse{More: true, Sender: 0x200, Pools: []wire.PoolEntry{{PoolHandle: "p", Elements: []wire.PoolElement{simElement(1, 0x200)}}}},
		&wire.HandleUpdate{Sender: 0x200, Action: wire.ActionAddPE, PoolHandle: "p", Element: simElement(2, 0x300)},
		&wire.InitTakeover{Sender: 0x200, Target: 0x300},
		&wire.TakeoverServer{Sender: 0x200, Target: 0x300},
		&wire.HandleTableRequest{Sender: 0x999},
		&wire.ListResponse{Sender: 0x200, Servers: []wire.ServerInfo{*info}},
	))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, hs := newTestNode(t, Config{MaxPeers: 8, TableChunkPEs: 2}, "tcp://10.0.0.2:9901")
		hs.Register("own", simElement(7, n.ID()), t0)
		now := t0
		addrs := []string{"tcp://10.0.0.2:9901", "tcp://10.0.0.3:9901", "tcp://127.0.0.1:5"}
		check := func(outs []Output) {
			for _, o := range outs {
				if o.Kind == Send {
					if _, err := o.Msg.AppendBinary(nil); err != nil {
						t.Fatalf("output %T does not encode: %v", o.Msg, err)
					}
				}
			}
			if len(n.Peers()) > 8 {
				t.Fatalf("%d peers", len(n.Peers()))
			}
		}
		for len(data) >= 4 {
			l := int(binary.BigEndian.Uint16(data))
			src, dt := data[2], data[3]
			data = data[4:]
			if l > len(data) {
				l = len(data)
			}
			msg := data[:l]
			data = data[l:]
			now = now.Add(time.Duration(dt) * 20 * time.Millisecond)
			addr := addrs[int(src&0x1f)%len(addrs)]
			if m, err := wire.ParseENRP(msg); err == nil {
				check(n.Step(now, Source{Addr: addr, Multicast: src&0x80 != 0}, m))
			} else {
				_ = ErrorFor(msg, err)
			}
			if src&0x40 != 0 {
				check(n.PeerConnLost(now, addr, 0x200, 0x999))
			}
			if src&0x20 != 0 {
				check(n.PeerUnreachable(now, addr))
			}
			if d := n.NextDeadline(); !d.After(now) {
				check(n.Tick(now))
			}
		}
		for i := 0; i < 50; i++ {
			d := n.NextDeadline()
			if d.Before(now) {
				t.Fatalf("deadline %v before now %v: peers %+v takeovers %d downloads %d sessions %d", d, now, n.Peers(), len(n.takeovers), len(n.downloads), len(n.sessions))
			}
			now = d
			check(n.Tick(now))
		}
	})
}
