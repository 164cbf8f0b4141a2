package enrp

import (
	"math"
	"time"

	"github.com/rserpool/rserpool/wire"
)

type peKey struct {
	handle wire.PoolHandle
	id     uint32
}

// download is a Handle Table Request sequence we run against a peer: the
// start-up sync from the mentor (W=0) or an audit (W=1, RFC 5353 §3.6).
type download struct {
	ownOnly  bool
	mentor   bool
	deadline time.Time
	marks    map[peKey]struct{} // audit: the peer's PEs not confirmed yet
}

// sessionKey names a requester being served: a peer by ID, anyone else
// (a tool such as hsdump) by ID and source address.
type sessionKey struct {
	id   uint32
	addr string
}

// session is a Handle Table Response sequence we serve (mentor side).
type session struct {
	keys    []peKey // snapshot taken at the first request
	pos     int
	ownOnly bool
	last    time.Time
}

func (n *Node) startMentorSync(now time.Time, p *peer) {
	n.mentor = p.ID
	if !p.listRequested {
		p.listRequested = true
		n.send(p.Addr, p.ID, &wire.ListRequest{Sender: n.id, Receiver: p.ID})
	}
	n.downloads[p.ID] = &download{mentor: true, deadline: now.Add(n.cfg.MaxTimeNoResponse)}
	n.send(p.Addr, p.ID, &wire.HandleTableRequest{Sender: n.id, Receiver: p.ID})
}

func (n *Node) startAudit(now time.Time, p *peer) {
	marks := make(map[peKey]struct{}, n.hs.OwnedCount(p.ID))
	n.hs.OwnedBy(p.ID, func(e *handlespaceElement) bool {
		marks[peKey{e.Pool, e.ID}] = struct{}{}
		return true
	})
	n.downloads[p.ID] = &download{ownOnly: true, marks: marks, deadline: now.Add(n.cfg.MaxTimeNoResponse)}
	n.send(p.Addr, p.ID, &wire.HandleTableRequest{OwnChildrenOnly: true, Sender: n.id, Receiver: p.ID})
}

func (n *Node) onTableResponse(now time.Time, p *peer, m *wire.HandleTableResponse) {
	dl := n.downloads[p.ID]
	if dl == nil {
		return // not requested, or given up
	}
	if m.Reject {
		delete(n.downloads, p.ID)
		if dl.mentor {
			n.mentor = 0 // another peer, or the MentorDiscovery deadline, decides
		}
		return
	}
	for i := range m.Pools {
		pe := &m.Pools[i]
		for j := range pe.Elements {
			n.applyPE(now, p.ID, pe.PoolHandle, pe.Elements[j], true)
			if dl.marks != nil {
				delete(dl.marks, peKey{pe.PoolHandle, pe.Elements[j].ID})
			}
		}
	}
	if m.More {
		dl.deadline = now.Add(n.cfg.MaxTimeNoResponse)
		n.send(p.Addr, p.ID, &wire.HandleTableRequest{OwnChildrenOnly: dl.ownOnly, Sender: n.id, Receiver: p.ID})
		return
	}
	delete(n.downloads, p.ID)
	for k := range dl.marks {
		if e, ok := n.hs.Get(k.handle, k.id); ok && e.HomeServer == p.ID {
			n.hs.Deregister(k.handle, k.id)
		}
	}
	if dl.mentor {
		n.becomeReady()
	}
}

// applyPE stores a PE stated by peer sender (Handle Update ADD_PE, or a
// table entry when fromTable). The stated Home ENRP ID decides ownership (0
// means the sender). A PE stated to be ours is ignored (RSPLIB): only this
// registrar's ASAP side decides what it owns.
//
// A PE we own that a peer states as its own: a Handle Update means the PE
// has just re-registered there, so it moves and the caller is told with
// OwnershipLost. A table entry is only a view (two registrars can both
// believe they own a PE after a takeover across a partition, and would
// otherwise each yield to the other's audit response and both drop it);
// there the lower server ID keeps the PE, and the PE's next re-registration
// (a Handle Update from its real home) settles it.
func (n *Node) applyPE(now time.Time, sender uint32, handle wire.PoolHandle, pe wire.PoolElement, fromTable bool) bool {
	if pe.HomeServer == 0 {
		pe.HomeServer = sender
	}
	if pe.HomeServer == n.id {
		return false
	}
	old, existed := n.hs.Get(handle, pe.ID)
	wasOurs := existed && old.HomeServer == n.id
	if wasOurs && fromTable && pe.HomeServer > n.id {
		return false
	}
	if _, _, err := n.hs.Register(handle, pe, now); err != nil {
		return false // inconsistent with the pool here: the audit repairs whichever side is wrong
	}
	var exp time.Time
	if pe.RegistrationLife != math.MaxUint32 {
		exp = now.Add(time.Duration(pe.RegistrationLife) * time.Millisecond)
	}
	n.hs.SetExpiry(handle, pe.ID, exp)
	if wasOurs {
		n.emit(Output{Kind: OwnershipLost, Handle: handle, PEID: pe.ID, FromTable: fromTable})
	}
	return true
}

func (n *Node) tickDownloads(now time.Time) {
	for id, dl := range n.downloads {
		if now.Before(dl.deadline) {
			continue
		}
		delete(n.downloads, id)
		if dl.mentor {
			n.mentor = 0
			if !now.Before(n.startDeadline) {
				n.becomeReady()
			}
		}
	}
}

func (n *Node) onTableRequest(now time.Time, src Source, m *wire.HandleTableRequest) {
	if m.Sender == n.id {
		return
	}
	key := sessionKey{id: m.Sender, addr: src.Addr}
	if p := n.matchPeer(m.Sender, src, nil); p != nil {
		n.heard(p, now)
		key.addr = ""
	}
	s := n.sessions[key]
	if s == nil && len(n.sessions) >= n.cfg.MaxSessions {
		n.send(src.Addr, m.Sender, &wire.HandleTableResponse{Reject: true, Sender: n.id, Receiver: m.Sender})
		return
	}
	if s == nil || s.ownOnly != m.OwnChildrenOnly {
		s = n.newSession(m.OwnChildrenOnly)
		n.sessions[key] = s
	}
	s.last = now
	resp := n.nextChunk(s)
	resp.Sender, resp.Receiver = n.id, m.Sender
	if !resp.More {
		delete(n.sessions, key)
	}
	n.send(src.Addr, m.Sender, resp)
}

func (n *Node) newSession(ownOnly bool) *session {
	s := &session{ownOnly: ownOnly}
	if ownOnly {
		s.keys = make([]peKey, 0, n.hs.OwnedCount(n.id))
		n.hs.OwnedBy(n.id, func(e *handlespaceElement) bool {
			s.keys = append(s.keys, peKey{e.Pool, e.ID})
			return true
		})
		return s
	}
	s.keys = make([]peKey, 0, n.hs.NumElements())
	n.hs.Pools(func(h wire.PoolHandle, _ wire.PolicyType) bool {
		n.hs.Elements(h, func(e *handlespaceElement) bool {
			s.keys = append(s.keys, peKey{h, e.ID})
			return true
		})
		return true
	})
	return s
}

// nextChunk builds the next Handle Table Response of s: at most
// TableChunkPEs PEs and about TableChunkBytes bytes (never fewer than one
// PE). PEs removed since the snapshot are skipped; PEs added since then
// reach a peer by Handle Update. The PoolElements share their slices with
// the handlespace and must not be modified.
func (n *Node) nextChunk(s *session) *wire.HandleTableResponse {
	resp := &wire.HandleTableResponse{}
	size, count := 12, 0
	var cur *wire.PoolEntry
	for s.pos < len(s.keys) && count < n.cfg.TableChunkPEs {
		k := s.keys[s.pos]
		e, ok := n.hs.Get(k.handle, k.id)
		if !ok {
			s.pos++
			continue
		}
		pe := e.PoolElement()
		sz := n.peSize(&pe)
		if cur == nil || cur.PoolHandle != k.handle {
			sz += 4 + pad4(len(k.handle))
		}
		if count > 0 && size+sz > n.cfg.TableChunkBytes {
			break
		}
		if cur == nil || cur.PoolHandle != k.handle {
			resp.Pools = append(resp.Pools, wire.PoolEntry{PoolHandle: k.handle})
			cur = &resp.Pools[len(resp.Pools)-1]
		}
		cur.Elements = append(cur.Elements, pe)
		size += sz
		count++
		s.pos++
	}
	// Skip removed entries at the tail so that M is exact.
	for s.pos < len(s.keys) {
		if _, ok := n.hs.Get(s.keys[s.pos].handle, s.keys[s.pos].id); ok {
			break
		}
		s.pos++
	}
	resp.More = s.pos < len(s.keys)
	return resp
}

func (n *Node) tickSessions(now time.Time) {
	for k, s := range n.sessions {
		if !now.Before(s.last.Add(n.cfg.MaxTimeNoResponse)) {
			delete(n.sessions, k)
		}
	}
}

func pad4(l int) int { return (l + 3) &^ 3 }

// peSize estimates the encoded size of a Pool Element parameter.
func (n *Node) peSize(pe *wire.PoolElement) int {
	sz := 16 + transportSize(&pe.User) + n.policySize(&pe.Policy)
	if pe.ASAP.Type != 0 {
		sz += transportSize(&pe.ASAP)
	}
	return sz
}

func transportSize(t *wire.Transport) int {
	if t.Type == wire.TransportOpaque {
		return 4 + pad4(len(t.Opaque))
	}
	sz := 8
	if t.Type == wire.TransportDCCP {
		sz += 4
	}
	for _, a := range t.Addrs {
		if a.Is4() || a.Is4In6() {
			sz += 8
		} else {
			sz += 20
		}
	}
	return sz
}

func (n *Node) policySize(p *wire.Policy) int {
	if !p.Type.Known() {
		return 8 + 4*len(p.Raw)
	}
	sz, ok := n.policySizes[p.Type]
	if !ok {
		sz = 8 + 4*len(p.Type.Fields())
		n.policySizes[p.Type] = sz
	}
	return sz
}

func (n *Node) onListRequest(now time.Time, src Source, m *wire.ListRequest) {
	if m.Sender == n.id {
		return
	}
	if p := n.matchPeer(m.Sender, src, nil); p != nil {
		n.heard(p, now)
	}
	resp := &wire.ListResponse{Sender: n.id, Receiver: m.Sender}
	for _, p := range n.peers {
		if p.info != nil && p.ID != m.Sender && live(p) {
			resp.Servers = append(resp.Servers, *p.info)
		}
	}
	n.send(src.Addr, m.Sender, resp)
}

func (n *Node) onListResponse(now time.Time, _ *peer, m *wire.ListResponse) {
	if m.Reject {
		return
	}
	for i := range m.Servers {
		si := m.Servers[i]
		if si.ServerID == 0 || si.ServerID == n.id || n.findPeer(si.ServerID) != nil {
			continue
		}
		addr := ServerInfoAddr(&si, Source{})
		if addr == "" {
			continue
		}
		p := n.matchPeer(si.ServerID, Source{Addr: addr}, &si)
		if p == nil && len(n.peers) >= n.cfg.MaxPeers {
			return
		}
		if p == nil {
			// Tentative until it answers the Presence below: RSPLIB lists
			// tools such as hsdump among its peers.
			p = n.addPeer(si.ServerID, addr, &si, now, true)
		}
		p.info = &si
		p.LastHeard = now
		n.sendPresence(p, true)
	}
}
