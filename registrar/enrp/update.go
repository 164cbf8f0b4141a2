package enrp

import (
	"time"

	"github.com/rserpool/rserpool/wire"
)

// LocalChange announces a change of a PE this registrar owns (registration,
// re-registration, deregistration, keep-alive or unreachable removal) to
// every known peer as an ENRP_HANDLE_UPDATE (RFC 5353 §3.3): action
// wire.ActionAddPE or wire.ActionDelPE, the complete PE (its HomeServer is
// set to our ID). The handlespace change itself is the caller's. The
// returned slice is the caller's; its messages share pe's slices.
func (n *Node) LocalChange(now time.Time, action wire.UpdateAction, handle wire.PoolHandle, pe wire.PoolElement) []Output {
	n.lastNow = now
	pe.HomeServer = n.id
	for _, p := range n.peers {
		if p.ID == 0 || p.Tentative || p.State == PeerTakeover || p.State == PeerNotActive {
			continue
		}
		n.send(p.Addr, p.ID, &wire.HandleUpdate{
			Sender: n.id, Receiver: p.ID, Action: action, PoolHandle: handle, Element: pe,
		})
	}
	return n.flush()
}

// onHandleUpdate applies a peer's Handle Update.
//
// Ordering and idempotence: an ADD_PE replaces the entry with the sender's
// statement (applying it twice changes nothing); a DEL_PE removes the entry
// only while the sender is its home, so a late or repeated DEL_PE from a
// registrar the PE has left does not delete its new registration, and a
// DEL_PE for an absent PE is a no-op. Messages from one peer arrive in order
// (one association or connection per peer); between different peers no order
// exists, and a late ADD_PE from a PE's previous home can move the entry back
// to it. Such a difference shows in the next Presence checksums and the audit
// (W=1 from both registrars) repairs it; a PE's periodic re-registration
// (ADD_PE from its real home) repairs it as well.
func (n *Node) onHandleUpdate(now time.Time, p *peer, m *wire.HandleUpdate) {
	switch m.Action {
	case wire.ActionAddPE:
		n.applyPE(now, p.ID, m.PoolHandle, m.Element, false)
		if dl := n.downloads[p.ID]; dl != nil && dl.marks != nil {
			delete(dl.marks, peKey{m.PoolHandle, m.Element.ID})
		}
	case wire.ActionDelPE:
		if e, ok := n.hs.Get(m.PoolHandle, m.Element.ID); ok && e.HomeServer == p.ID {
			n.hs.Deregister(m.PoolHandle, m.Element.ID)
		}
	}
}
