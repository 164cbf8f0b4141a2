package hostile

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// TestRegistrarENRP attacks the registrar's ENRP port (TCP mapping, PPID
// 12) from peers nobody configured.
func TestRegistrarENRP(t *testing.T) {
	sc := currentScale()
	w := newWorld(t, registrarTOML(sc.MaxConns, ""))
	vs := loadVectors(t)
	addr := hostport(w.reg.enrp[0])
	spray := sprayer{addr: addr, workers: 4, batch: 8}

	w.runAttack(t, attack{name: "ENRP: every message type out of order, every PPID", unit: "messages", target: w.reg.daemon,
		run: func(t *testing.T) (int64, string) {
			sent, err := spray.spray(misdirected(vs))
			return sent, outcome(err, "answered, refused or ignored")
		}})
	w.runAttack(t, attack{name: "ENRP: mutated RSPLIB vectors", unit: "messages", target: w.reg.daemon,
		run: func(t *testing.T) (int64, string) {
			sent, err := spray.spray(mutatedFrames(vs, sc.Mutations, 2, wire.PPIDENRP))
			return sent, outcome(err, "each refused with an ENRP error or ignored")
		}})
	w.runAttack(t, attack{name: "ENRP: bad TCP-mapping chunk framing", unit: "connections", target: w.reg.daemon,
		run: func(t *testing.T) (int64, string) {
			sent, err := sprayer{addr: addr, workers: 4, batch: 1, noInit: true}.spray(badFraming(20))
			return sent, outcome(err, "each connection closed or its chunk skipped")
		}})
	w.runAttack(t, attack{name: "ENRP: unknown peer without TLS (today's posture)", unit: "messages", target: w.reg.daemon,
		run: func(t *testing.T) (int64, string) { return enrpImpostor(t, w) }})
	w.runAttack(t, attack{name: "ENRP: Presence flood from distinct fake server IDs", unit: "messages", target: w.reg.daemon,
		run: func(t *testing.T) (int64, string) { return presenceFlood(t, w, sc.PresenceFlood) }})
	w.runAttack(t, attack{name: "ENRP: slowloris: half a chunk header", unit: "connections", target: w.reg.daemon,
		run: func(t *testing.T) (int64, string) {
			return slowloris(t, addr, sc.Slowloris, sc.Hold, append(append([]byte(nil), chunkINIT...), 0, 0))
		}})
}

// enrpConn is an ENRP peer over the TCP mapping.
type enrpConn struct {
	c    transport.Conn
	msgs chan wire.Message
	done chan struct{}
}

func dialENRP(t *testing.T, addr string) *enrpConn {
	t.Helper()
	c, err := transport.Dial(t.Context(), addr, &transport.Config{HeartbeatInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := &enrpConn{c: c, msgs: make(chan wire.Message, 1024), done: make(chan struct{})}
	go func() {
		defer close(e.done)
		for {
			m, err := c.ReadMessage()
			if err != nil {
				return
			}
			if msg, err := wire.ParseENRP(m.Data); err == nil {
				select {
				case e.msgs <- msg:
				default:
				}
			}
		}
	}()
	t.Cleanup(e.close)
	return e
}

func (e *enrpConn) close() {
	e.c.Close()
	<-e.done
}

func (e *enrpConn) send(t *testing.T, m wire.Message) {
	t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.WriteMessage(transport.Message{PPID: wire.PPIDENRP, Data: b}); err != nil {
		t.Fatal(err)
	}
}

// await returns the first message of type T within d, or nil.
func await[T wire.Message](e *enrpConn, d time.Duration) T {
	var zero T
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m := <-e.msgs:
			if v, ok := m.(T); ok {
				return v
			}
		case <-e.done:
			return zero
		case <-timer.C:
			return zero
		}
	}
}

// enrpImpostor plays a registrar nobody configured, over plain TCP: it
// announces itself, asks for the handlespace, injects a PE into the
// unrelated pool, tries to delete the unrelated PE and to take the
// registrar over. It reports what the registrar accepted; the unrelated
// PE must survive (world.intact).
func enrpImpostor(t *testing.T, w *world) (int64, string) {
	const fake, injected = 0x0badbad1, 0x0f0f0f0f
	e := dialENRP(t, w.reg.enrp[0])
	var sent int64
	send := func(m wire.Message) { e.send(t, m); sent++ }
	info := &wire.ServerInfo{ServerID: fake, Transport: wire.Transport{Type: wire.TransportTCP, Port: 9, Addrs: []netip.Addr{loopback}}}
	facts := []string{fmt.Sprintf("peers known before: %v", w.reg.metric(t, "rserpool_registrar_peers"))}

	send(&wire.Presence{ReplyRequired: true, Sender: fake, Info: info})
	p := await[*wire.Presence](e, time.Second)
	facts = append(facts, fmt.Sprintf("Presence answered: %v", p != nil))

	send(&wire.HandleTableRequest{Sender: fake, Receiver: w.reg.id})
	tr := await[*wire.HandleTableResponse](e, 2*time.Second)
	leaked := tr != nil && !tr.Reject && len(tr.Pools) > 0
	facts = append(facts, fmt.Sprintf("handlespace sent to it: %v", leaked))

	pe := registration(w.pool, injected, 9).Element
	pe.HomeServer = fake
	send(&wire.HandleUpdate{Sender: fake, Receiver: w.reg.id, Action: wire.ActionAddPE, PoolHandle: w.pool, Element: pe})
	var ids []uint32
	var err error
	for range 20 { // the update is applied by the registrar's loop: poll the resolution for it
		if ids, err = resolveIDs(w.pu, w.pool); err != nil || slices.Contains(ids, injected) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	facts = append(facts, fmt.Sprintf("injected PE resolvable: %v", slices.Contains(ids, injected)))

	victim := registration(w.pool, w.peID, w.echo.port()).Element
	victim.HomeServer = w.reg.id
	send(&wire.HandleUpdate{Sender: fake, Receiver: w.reg.id, Action: wire.ActionDelPE, PoolHandle: w.pool, Element: victim})
	victim.HomeServer = fake
	send(&wire.HandleUpdate{Sender: fake, Receiver: w.reg.id, Action: wire.ActionDelPE, PoolHandle: w.pool, Element: victim})
	send(&wire.InitTakeover{Sender: fake, Receiver: w.reg.id, Target: w.reg.id})
	send(&wire.TakeoverServer{Sender: fake, Receiver: w.reg.id, Target: w.reg.id})
	time.Sleep(500 * time.Millisecond) // give the loop time to apply what it would apply; the check below is the assertion
	ids, err = resolveIDs(w.pu, w.pool)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ids, w.peID) {
		t.Errorf("an unknown ENRP peer removed the registrar's own PE %08x (pool now %08x)", w.peID, ids)
	}
	facts = append(facts, fmt.Sprintf("owned PE survived deletion and takeover: %v", slices.Contains(ids, w.peID)))
	// Take the injected PE out again so that later attacks see a clean pool.
	send(&wire.HandleUpdate{Sender: fake, Receiver: w.reg.id, Action: wire.ActionDelPE, PoolHandle: w.pool, Element: pe})
	return sent, strings.Join(facts, "; ")
}

// presenceFlood sends n Presences, each from another fake server ID, over
// a few connections, and reports how many peers the registrar then counts.
func presenceFlood(t *testing.T, w *world, n int) (int64, string) {
	var sent int64
	for c := range 4 {
		e := dialENRP(t, w.reg.enrp[0])
		for i := c; i < n; i += 4 {
			id := 0x70000000 + uint32(i)
			info := &wire.ServerInfo{ServerID: id, Transport: wire.Transport{Type: wire.TransportTCP, Port: 9, Addrs: []netip.Addr{loopback}}}
			b, err := (&wire.Presence{Sender: id, Info: info}).AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			if e.c.WriteMessage(transport.Message{PPID: wire.PPIDENRP, Data: b}) != nil {
				break
			}
			sent++
		}
	}
	time.Sleep(500 * time.Millisecond) // let the loop take them in before counting; the figure is recorded, not asserted
	peers := w.reg.metric(t, "rserpool_registrar_peers")
	return sent, fmt.Sprintf("rserpool_registrar_peers = %v afterwards", peers)
}
