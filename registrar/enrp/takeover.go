package enrp

import (
	"time"

	"github.com/rserpool/rserpool/wire"
)

// takeover is our attempt to take over a dead peer (RFC 5353 §3.5).
type takeover struct {
	deadline time.Time
	pending  map[uint32]struct{} // peers whose Init Takeover Ack is missing
}

// live reports whether p takes part in takeovers (acks, Takeover Server)
// and is listed in List Responses: a peer heard from, alive as far as we
// know, and not tentative.
func live(p *peer) bool {
	return p.ID != 0 && !p.Tentative && (p.State == PeerActive || p.State == PeerProbing)
}

// peerDead handles a peer that did not answer its probe: a peer owning PEs
// is taken over, any other simply leaves the peer list (RSPLIB).
func (n *Node) peerDead(now time.Time, p *peer) {
	if n.hs.OwnedCount(p.ID) == 0 {
		n.dropPeer(p)
		return
	}
	p.State = PeerTakeover
	t := &takeover{deadline: now.Add(n.cfg.TakeoverExpiry), pending: make(map[uint32]struct{})}
	for _, q := range n.peers {
		if q.ID == 0 {
			continue
		}
		if q == p || live(q) {
			n.send(q.Addr, q.ID, &wire.InitTakeover{Sender: n.id, Receiver: q.ID, Target: p.ID})
		}
		if q != p && live(q) {
			t.pending[q.ID] = struct{}{}
		}
	}
	n.takeovers[p.ID] = t
	// With no other live peer the lone survivor wins at once (checkTakeovers).
}

// checkTakeovers completes attempts that have every ack and abandons expired
// ones (their PEs then age out by registration life).
func (n *Node) checkTakeovers(now time.Time) {
	for target, t := range n.takeovers {
		p := n.findPeer(target)
		switch {
		case p == nil:
			delete(n.takeovers, target)
		case len(t.pending) == 0:
			n.win(p)
		case !now.Before(t.deadline):
			delete(n.takeovers, target)
			n.dropPeer(p)
		}
	}
}

// win finishes a takeover: Takeover Server to every live peer, every PE of
// the target becomes ours and gets a Keep-Alive with H=1.
func (n *Node) win(p *peer) {
	delete(n.takeovers, p.ID)
	for _, q := range n.peers {
		if q != p && live(q) {
			n.send(q.Addr, q.ID, &wire.TakeoverServer{Sender: n.id, Receiver: q.ID, Target: p.ID})
		}
	}
	var keys []peKey
	n.hs.OwnedBy(p.ID, func(e *handlespaceElement) bool {
		keys = append(keys, peKey{e.Pool, e.ID})
		return true
	})
	for _, k := range keys {
		n.hs.SetHome(k.handle, k.id, n.id)
		n.hs.SetExpiry(k.handle, k.id, time.Time{}) // ours now: monitored by keep-alive
		n.emit(Output{Kind: KeepAliveHome, Handle: k.handle, PEID: k.id})
	}
	n.dropPeer(p)
}

func (n *Node) onInitTakeover(now time.Time, p *peer, m *wire.InitTakeover) {
	if m.Target == n.id {
		// False alarm: show everyone we are alive.
		for _, q := range n.peers {
			if q.ID != 0 && !q.Tentative {
				n.sendPresence(q, false)
			}
		}
		return
	}
	if n.takeovers[m.Target] != nil {
		yield := m.Sender < n.id
		if n.cfg.Arbitration == HigherIDWins {
			yield = m.Sender > n.id
		}
		if !yield {
			return
		}
		delete(n.takeovers, m.Target)
	}
	if tp := n.findPeer(m.Target); tp != nil {
		tp.State = PeerNotActive
		tp.deadline = now.Add(n.cfg.TakeoverExpiry + n.cfg.MaxTimeNoResponse)
		for _, t := range n.takeovers {
			delete(t.pending, tp.ID) // it will not ack anything
		}
	}
	n.send(p.Addr, p.ID, &wire.InitTakeoverAck{Sender: n.id, Receiver: p.ID, Target: m.Target})
}

func (n *Node) onInitTakeoverAck(_ time.Time, p *peer, m *wire.InitTakeoverAck) {
	if t := n.takeovers[m.Target]; t != nil {
		delete(t.pending, p.ID)
	}
}

func (n *Node) onTakeoverServer(_ time.Time, p *peer, m *wire.TakeoverServer) {
	if m.Target == n.id {
		for _, q := range n.peers {
			if q.ID != 0 && !q.Tentative {
				n.sendPresence(q, false)
			}
		}
		return
	}
	var keys []peKey
	n.hs.OwnedBy(m.Target, func(e *handlespaceElement) bool {
		keys = append(keys, peKey{e.Pool, e.ID})
		return true
	})
	for _, k := range keys {
		n.hs.SetHome(k.handle, k.id, p.ID)
	}
	delete(n.takeovers, m.Target)
	if tp := n.findPeer(m.Target); tp != nil {
		n.dropPeer(tp)
	}
}
