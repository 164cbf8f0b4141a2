package enrp

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// PeerState is what this registrar believes about a peer.
type PeerState uint8

const (
	// PeerUnknown: a configured peer not heard from yet (ID 0).
	PeerUnknown PeerState = iota
	// PeerActive: heard within MaxTimeLastHeard.
	PeerActive
	// PeerProbing: silent too long; a Presence R=1 awaits its answer.
	PeerProbing
	// PeerNotActive: another registrar is taking it over (we acked).
	PeerNotActive
	// PeerTakeover: dead; this registrar is taking it over.
	PeerTakeover
)

func (s PeerState) String() string {
	return [...]string{"unknown", "active", "probing", "not-active", "takeover"}[s]
}

// Peer is a snapshot of one entry of the peer list.
type Peer struct {
	ID        uint32 // 0 until heard (configured peers)
	Addr      string // transport address to reach it, e.g. "tcp://10.0.0.2:9901"
	State     PeerState
	LastHeard time.Time // zero if never heard
	Static    bool      // configured; kept (with ID 0) after it dies
	Checksum  uint16    // checksum in its last Presence
	// Tentative: heard only from one point-to-point Presence without R
	// flag and without PEs, as a tool (RSPLIB's hsdump, `rserpool ctl
	// handlespace`) introduces itself before its requests, or only named
	// in a peer's List Response (RSPLIB lists such tools among its peers).
	// It is not a peer yet: not counted, not logged, not asked to ack
	// takeovers, sent no Handle Updates, listed in no List Response; its
	// next Presence (the answer to ours) or a message only registrars
	// send confirms it (PeerUp), else it is forgotten silently after
	// MaxTimeNoResponse.
	Tentative bool
}

type peer struct {
	Peer
	info          *wire.ServerInfo
	deadline      time.Time // PeerProbing: probe expiry; PeerNotActive: give up waiting for Takeover Server
	listRequested bool
}

// Node is the ENRP state machine of one registrar (RFC 5353). It does no I/O,
// starts no goroutines and reads no clock: every method takes the current
// time and returns the Outputs the caller must carry out, in order.
//
// A Node mutates the Handlespace it was given (peer-owned entries, takeover,
// audit); it and the Handlespace must be owned by the same goroutine. Node is
// not safe for concurrent use.
type Node struct {
	cfg Config
	hs  *handlespace.Handlespace
	id  uint32

	peers []*peer

	ready         bool
	startDeadline time.Time
	mentor        uint32 // peer whose W=0 download is the start-up sync; 0 = none
	nextHeartbeat time.Time
	lastNow       time.Time

	downloads map[uint32]*download    // by peer ID: our Handle Table Requests in progress
	sessions  map[sessionKey]*session // Handle Table Responses we are serving
	takeovers map[uint32]*takeover    // by target ID

	out         []Output
	expired     []*handlespace.Element
	policySizes map[wire.PolicyType]int
}

type handlespaceElement = handlespace.Element

// New returns a Node for registrar cfg.ID owning hs. staticPeers are the
// configured peers' addresses ("tcp://h:p", "sctp://h:p", "tls://h:p"; no
// scheme means tcp). The start-up Presences (R=1) to the static peers are
// returned by the first Tick.
func New(cfg Config, hs *handlespace.Handlespace, staticPeers []string, now time.Time) *Node {
	cfg.setDefaults()
	n := &Node{
		cfg:       cfg,
		hs:        hs,
		id:        cfg.ID,
		downloads: make(map[uint32]*download),
		sessions:  make(map[sessionKey]*session),
		takeovers: make(map[uint32]*takeover),
		lastNow:   now,

		policySizes: make(map[wire.PolicyType]int),
	}
	for _, a := range staticPeers {
		a = NormalizeAddr(a)
		if slices.ContainsFunc(n.peers, func(p *peer) bool { return p.Addr == a }) {
			continue
		}
		n.peers = append(n.peers, &peer{Peer: Peer{Addr: a, Static: true}})
	}
	for _, p := range n.peers {
		n.sendPresence(p, true)
	}
	n.startDeadline = now.Add(cfg.MentorDiscovery)
	if len(n.peers) == 0 && cfg.MentorDiscovery < 0 {
		n.becomeReady()
	}
	n.nextHeartbeat = now.Add(n.jitter(cfg.PeerHeartbeat))
	return n
}

// ID returns this registrar's server ID.
func (n *Node) ID() uint32 { return n.id }

// Ready reports whether the start-up synchronisation is over.
func (n *Node) Ready() bool { return n.ready }

// Peers returns a snapshot of the peer list; the slice is the caller's.
func (n *Node) Peers() []Peer {
	ps := make([]Peer, len(n.peers))
	for i, p := range n.peers {
		ps[i] = p.Peer
	}
	return ps
}

// NormalizeAddr returns the canonical form of a transport address
// (transport.Addr; "h:p" means tcp), or a unchanged when it does not parse.
func NormalizeAddr(a string) string {
	if x, err := transport.ParseAddr(a); err == nil {
		return x.String()
	}
	return a
}

// ServerInfoAddr returns the transport address ("tcp://h:p" or "sctp://h:p")
// at which the registrar described by si is reached, or "" when si names no
// usable address. For a Presence received by multicast, pass the datagram's
// source as src: its host replaces the Server Information's addresses
// (RSPLIB: datagram source plus the port from the Server Information).
func ServerInfoAddr(si *wire.ServerInfo, src Source) string {
	if si == nil {
		return ""
	}
	t := si.Transport
	t.Addrs = nil
	if src.Multicast { // src.Addr is the datagram's source, "udp://host:port"
		_, hp, _ := strings.Cut(src.Addr, "://")
		if ap, err := netip.ParseAddrPort(hp); err == nil {
			t.Addrs = []netip.Addr{ap.Addr()}
		}
	}
	if len(t.Addrs) == 0 {
		for _, a := range si.Transport.Addrs {
			if !a.IsUnspecified() {
				t.Addrs = []netip.Addr{a}
				break
			}
		}
	}
	a, err := transport.AddrFromTransport(t)
	if err != nil {
		return ""
	}
	return a.String()
}

// jitter returns d ± 12.5 %, uniformly (RSPLIB).
func (n *Node) jitter(d time.Duration) time.Duration {
	lo := d - d/8
	span := int64(d / 4)
	if span <= 0 {
		return d
	}
	return lo + time.Duration(n.cfg.Rand.Int64N(span+1))
}

func (n *Node) flush() []Output {
	out := n.out
	n.out = nil
	return out
}

func (n *Node) send(to string, toID uint32, m wire.Message) {
	n.out = append(n.out, Output{Kind: Send, To: to, ToID: toID, Msg: m})
}

func (n *Node) emit(o Output) { n.out = append(n.out, o) }

func (n *Node) serverInfo() *wire.ServerInfo {
	si := n.cfg.ServerInfo
	return &si
}

func (n *Node) presence(receiver uint32, reply bool) *wire.Presence {
	return &wire.Presence{
		ReplyRequired: reply,
		Sender:        n.id,
		Receiver:      receiver,
		Checksum:      n.hs.Checksum(n.id),
		Info:          n.serverInfo(),
	}
}

func (n *Node) sendPresence(p *peer, reply bool) {
	n.send(p.Addr, p.ID, n.presence(p.ID, reply))
}

// findPeer returns the peer with server ID id, or nil.
func (n *Node) findPeer(id uint32) *peer {
	if id == 0 {
		return nil
	}
	for _, p := range n.peers {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// matchPeer finds the peer a message from id came from; a configured peer
// not heard yet is matched by address and learns its ID.
func (n *Node) matchPeer(id uint32, src Source, info *wire.ServerInfo) *peer {
	if p := n.findPeer(id); p != nil {
		return p
	}
	sa := NormalizeAddr(src.Addr)
	ia := ServerInfoAddr(info, src)
	for _, p := range n.peers {
		if p.ID == 0 && (p.Addr == sa || (ia != "" && p.Addr == ia)) {
			p.ID = id
			p.State = PeerActive
			n.emit(Output{Kind: PeerUp, PeerID: id, To: p.Addr})
			return p
		}
	}
	return nil
}

// addPeer adds a peer learned from a message, a Presence or a List
// Response; a tentative one is not announced (PeerUp) until confirmed.
func (n *Node) addPeer(id uint32, addr string, info *wire.ServerInfo, now time.Time, tentative bool) *peer {
	p := &peer{Peer: Peer{ID: id, Addr: addr, State: PeerActive, LastHeard: now, Tentative: tentative}, info: info}
	n.peers = append(n.peers, p)
	if !tentative {
		n.emit(Output{Kind: PeerUp, PeerID: id, To: addr})
	}
	return p
}

// confirm makes a tentative peer a peer: it is announced (PeerUp) and takes
// part in everything from now on.
func (n *Node) confirm(p *peer) {
	if p.Tentative {
		p.Tentative = false
		n.emit(Output{Kind: PeerUp, PeerID: p.ID, To: p.Addr})
	}
}

// dropPeer takes p off the peer list: a configured peer goes back to
// PeerUnknown (so that a restarted registrar at its address is found
// again), a learned one is removed. A tentative one leaves silently.
func (n *Node) dropPeer(p *peer) {
	if !p.Tentative {
		n.emit(Output{Kind: PeerDown, PeerID: p.ID, To: p.Addr})
	}
	delete(n.downloads, p.ID)
	delete(n.takeovers, p.ID)
	for _, t := range n.takeovers {
		delete(t.pending, p.ID)
	}
	if n.mentor == p.ID {
		n.mentor = 0
	}
	if p.Static {
		p.Peer = Peer{Addr: p.Addr, Static: true}
		p.info, p.listRequested = nil, false
		return
	}
	n.peers = slices.DeleteFunc(n.peers, func(q *peer) bool { return q == p })
}

// heard records that a message from p arrived.
func (n *Node) heard(p *peer, now time.Time) {
	p.LastHeard = now
	if p.State == PeerProbing || p.State == PeerUnknown {
		p.State = PeerActive
	}
}

func (n *Node) becomeReady() {
	if n.ready {
		return
	}
	n.ready = true
	n.mentor = 0
	n.emit(Output{Kind: Ready})
}

// Step processes message m received from src at time now. Messages whose
// Sender is our own ID (multicast loop-back) and ASAP messages are ignored.
// The returned slice is the caller's.
func (n *Node) Step(now time.Time, src Source, m wire.Message) []Output {
	n.lastNow = now
	switch m := m.(type) {
	case *wire.Presence:
		n.onPresence(now, src, m)
	case *wire.HandleTableRequest:
		n.onTableRequest(now, src, m)
	case *wire.HandleTableResponse:
		if p := n.known(now, src, m.Sender); p != nil {
			n.onTableResponse(now, p, m)
		}
	case *wire.HandleUpdate:
		if p := n.known(now, src, m.Sender); p != nil {
			n.onHandleUpdate(now, p, m)
		}
	case *wire.ListRequest:
		n.onListRequest(now, src, m)
	case *wire.ListResponse:
		if p := n.known(now, src, m.Sender); p != nil {
			n.onListResponse(now, p, m)
		}
	case *wire.InitTakeover:
		if p := n.known(now, src, m.Sender); p != nil {
			n.onInitTakeover(now, p, m)
		}
	case *wire.InitTakeoverAck:
		if p := n.known(now, src, m.Sender); p != nil {
			n.onInitTakeoverAck(now, p, m)
		}
	case *wire.TakeoverServer:
		if p := n.known(now, src, m.Sender); p != nil {
			n.onTakeoverServer(now, p, m)
		}
	case *wire.ENRPError:
		n.known(now, src, m.Sender)
	}
	n.checkTakeovers(now)
	return n.flush()
}

// known returns the peer that sent a message with sender ID id, adding an
// unknown registrar to the peer list and asking it for a Presence
// (RFC 5353 §3.4). It returns nil for our own ID and for ID 0.
func (n *Node) known(now time.Time, src Source, id uint32) *peer {
	if id == 0 || id == n.id {
		return nil
	}
	p := n.matchPeer(id, src, nil)
	if p == nil {
		if len(n.peers) >= n.cfg.MaxPeers {
			return nil
		}
		p = n.addPeer(id, NormalizeAddr(src.Addr), nil, now, false)
		n.sendPresence(p, true)
	}
	n.confirm(p) // only registrars send these messages
	n.heard(p, now)
	return p
}

func (n *Node) onPresence(now time.Time, src Source, m *wire.Presence) {
	if m.Sender == 0 || m.Sender == n.id {
		return
	}
	p := n.matchPeer(m.Sender, src, m.Info)
	isNew := p == nil
	if isNew && len(n.peers) >= n.cfg.MaxPeers {
		return
	}
	if isNew {
		addr := ServerInfoAddr(m.Info, src)
		if addr == "" {
			addr = NormalizeAddr(src.Addr)
		}
		// A registrar asks for our Presence (R=1), heartbeats by multicast
		// or owns PEs; a tool sends one Presence R=0 before its requests
		// and answers nothing (see Peer.Tentative).
		tentative := !src.Multicast && !m.ReplyRequired && m.Checksum == emptyChecksum
		p = n.addPeer(m.Sender, addr, m.Info, now, tentative)
	} else {
		n.confirm(p)
		if m.Info != nil {
			p.info = m.Info
			if !p.Static && !src.Multicast {
				if a := ServerInfoAddr(m.Info, src); a != "" {
					p.Addr = a
				}
			}
		}
	}
	p.LastHeard = now
	p.Checksum = m.Checksum
	p.State = PeerActive // alive: ends probing, a false takeover alarm, ours too
	delete(n.takeovers, p.ID)
	switch {
	case isNew:
		n.sendPresence(p, true)
	case m.ReplyRequired:
		n.sendPresence(p, false)
	}
	if p.Tentative {
		return
	}
	if !n.ready {
		if n.mentor == 0 {
			n.startMentorSync(now, p)
		}
		return
	}
	if !p.listRequested && !src.Multicast {
		// Once per peer (RSPLIB): learn the registrars it knows, so that
		// registrars configured with different peers still find each other.
		p.listRequested = true
		n.send(p.Addr, p.ID, &wire.ListRequest{Sender: n.id, Receiver: p.ID})
	}
	if !src.Multicast && m.Checksum != n.hs.Checksum(p.ID) && n.downloads[p.ID] == nil {
		n.startAudit(now, p)
	}
}

// emptyChecksum is the PE checksum of a registrar that owns no PE.
var emptyChecksum = wire.ChecksumSum(0).Checksum()

// PeerConnLost tells the Node that a connection over which peers talked to
// us ended: it was closed or reset. That is how a registrar's death
// usually shows (its host's kernel closes its connections), so a live peer
// reached at addr, or whose messages arrived over the connection (ids),
// is probed at once with a Presence R=1 instead of after MaxTimeLastHeard.
// If the probe cannot be sent (PeerUnreachable) the peer is dead at once;
// without an answer it is dead after MaxTimeNoResponse. A tentative peer
// (a tool) that disconnects is forgotten. The returned slice is the
// caller's.
func (n *Node) PeerConnLost(now time.Time, addr string, ids ...uint32) []Output {
	addr = NormalizeAddr(addr)
	return n.transportFailed(now, false, func(p *peer) bool { return p.Addr == addr || slices.Contains(ids, p.ID) })
}

// PeerUnreachable tells the Node that messages for addr could not be sent:
// no connection could be set up (refused, unreachable, timed out). RFC
// 5353 §3.4: a peer whose probe cannot be sent is dead, so a peer at addr
// that is being probed is taken over (or dropped) now. A live peer at
// addr is probed; if that probe fails the same way, it is dead. The
// returned slice is the caller's.
func (n *Node) PeerUnreachable(now time.Time, addr string) []Output {
	addr = NormalizeAddr(addr)
	return n.transportFailed(now, true, func(p *peer) bool { return p.Addr == addr })
}

// transportFailed handles a failure of the transport to the peers matched:
// tentative ones are forgotten, live ones probed, and with unreachable
// (the probe could not be sent) those being probed are dead.
func (n *Node) transportFailed(now time.Time, unreachable bool, match func(*peer) bool) []Output {
	n.lastNow = now
	for _, p := range slices.Clone(n.peers) {
		if p.ID == 0 || !match(p) {
			continue
		}
		switch {
		case p.Tentative:
			n.dropPeer(p)
		case p.State == PeerActive:
			n.probe(now, p)
		case p.State == PeerProbing && unreachable:
			n.peerDead(now, p)
		}
	}
	n.checkTakeovers(now)
	return n.flush()
}

// probe asks a live peer for a Presence; without an answer within
// MaxTimeNoResponse it is dead.
func (n *Node) probe(now time.Time, p *peer) {
	p.State = PeerProbing
	p.deadline = now.Add(n.cfg.MaxTimeNoResponse)
	n.sendPresence(p, true)
}

// Tick runs the timers due at now; call it at NextDeadline (calling it
// earlier or more often is harmless). The returned slice is the caller's.
func (n *Node) Tick(now time.Time) []Output {
	n.lastNow = now
	if !n.ready && !now.Before(n.startDeadline) && n.mentor == 0 {
		n.becomeReady()
	}
	if !now.Before(n.nextHeartbeat) {
		for _, p := range n.peers {
			if p.State != PeerTakeover && p.State != PeerNotActive && !p.Tentative {
				n.sendPresence(p, p.ID == 0)
			}
		}
		if n.cfg.Multicast {
			n.out = append(n.out, Output{Kind: Send, Multicast: true, Msg: n.presence(0, false)})
		}
		n.nextHeartbeat = now.Add(n.jitter(n.cfg.PeerHeartbeat))
	}
	for _, p := range slices.Clone(n.peers) {
		switch {
		case p.Tentative:
			if !now.Before(p.LastHeard.Add(n.cfg.MaxTimeNoResponse)) {
				n.dropPeer(p) // a tool that is done, or a registrar that never answered
			}
			continue
		}
		switch p.State {
		case PeerActive:
			if !now.Before(p.LastHeard.Add(n.cfg.MaxTimeLastHeard)) {
				n.probe(now, p)
			}
		case PeerProbing:
			if !now.Before(p.deadline) {
				n.peerDead(now, p)
			}
		case PeerNotActive:
			if !now.Before(p.deadline) {
				n.dropPeer(p) // the winner's Takeover Server never came (RSPLIB: drop)
			}
		}
	}
	n.checkTakeovers(now)
	n.tickDownloads(now)
	n.tickSessions(now)
	n.expire(now)
	if !n.ready && !now.Before(n.startDeadline) && n.mentor == 0 {
		n.becomeReady() // the mentor left the peer list above
	}
	return n.flush()
}

// expire removes peer-owned entries whose registration life ran out. Entries
// this registrar owns are the caller's (ASAP keep-alive, expiry policy).
func (n *Node) expire(now time.Time) {
	n.expired = n.hs.Expired(now, n.expired[:0])
	for _, e := range n.expired {
		if e.HomeServer != n.id {
			n.hs.Deregister(e.Pool, e.ID)
		}
	}
	clear(n.expired)
}

// NextDeadline returns when Tick must run next.
func (n *Node) NextDeadline() time.Time {
	if len(n.out) > 0 {
		return n.lastNow // start-up Presences from New
	}
	d := n.nextHeartbeat
	at := func(t time.Time) {
		if !t.IsZero() && t.Before(d) {
			d = t
		}
	}
	if !n.ready && n.mentor == 0 {
		at(n.startDeadline)
	}
	for _, p := range n.peers {
		switch {
		case p.Tentative:
			at(p.LastHeard.Add(n.cfg.MaxTimeNoResponse))
		case p.State == PeerActive:
			at(p.LastHeard.Add(n.cfg.MaxTimeLastHeard))
		case p.State == PeerProbing, p.State == PeerNotActive:
			at(p.deadline)
		}
	}
	for _, t := range n.takeovers {
		at(t.deadline)
		if len(t.pending) == 0 {
			at(n.lastNow)
		}
	}
	for _, dl := range n.downloads {
		at(dl.deadline)
	}
	for _, s := range n.sessions {
		at(s.last.Add(n.cfg.MaxTimeNoResponse))
	}
	if t, ok := n.hs.NextExpiry(); ok {
		if !t.After(n.lastNow) {
			// Due now but possibly one of our own entries, which the
			// caller removes: look again shortly instead of spinning.
			t = n.lastNow.Add(n.cfg.PeerHeartbeat / 8)
		}
		at(t)
	}
	return d
}
