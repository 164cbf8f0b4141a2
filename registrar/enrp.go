package registrar

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rserpool/rserpool/registrar/asap"
	"github.com/rserpool/rserpool/registrar/enrp"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// errNotAllowed is a peer address outside enrp.allow.
var errNotAllowed = errors.New("outside enrp.allow")

// peerQueueLen bounds the ENRP messages queued for one peer connection. A
// peer that does not read fills it; further messages are dropped (the audit
// repairs what a dropped Handle Update missed).
const peerQueueLen = 16384

// peerQueue is an ENRP connection's FIFO of at most peerQueueLen messages. It
// grows as messages come, so that an idle connection costs nothing: a
// channel of peerQueueLen allocates its whole buffer (384 KiB) up front,
// and maxENRPConns connections that send nothing held 400 MiB.
type peerQueue struct {
	mu   sync.Mutex // guards q
	q    [][]byte
	wake chan struct{} // capacity 1: q may have become non-empty
}

func newPeerQueue() *peerQueue { return &peerQueue{wake: make(chan struct{}, 1)} }

// push queues b unless the queue is full.
func (s *peerQueue) push(b []byte) bool {
	s.mu.Lock()
	if len(s.q) >= peerQueueLen {
		s.mu.Unlock()
		return false
	}
	s.q = append(s.q, b)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// pop takes the oldest message, if any.
func (s *peerQueue) pop() ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.q) == 0 {
		s.q = nil // let an emptied queue's backing array go
		return nil, false
	}
	b := s.q[0]
	s.q[0] = nil
	s.q = s.q[1:]
	return b, true
}

// maxENRPConns caps ENRP connections (dialed and accepted): far above any
// registrar set, low enough that a flood of connections cannot exhaust
// memory.
const maxENRPConns = 1024

// ENRP events handled by the loop.
type (
	evENRP struct {
		src enrp.Source
		m   wire.Message
	}
	// evPeerLost: an ENRP connection ended (addr is its address: the
	// peer's for dialed ones, the remote one for accepted ones; ids the
	// server IDs whose messages came over it), or, with unreachable, no
	// connection to addr could be set up.
	evPeerLost struct {
		addr        string
		ids         []uint32
		unreachable bool
	}
)

// enrpSide is the loop's ENRP state: the protocol node and where its
// outputs go. Owned by the loop goroutine, except pm and mc which are safe
// for concurrent use.
type enrpSide struct {
	node  *enrp.Node
	pm    *peerMgr
	mc    *transport.MulticastSender // nil without multicast
	ready chan struct{}              // closed when the node is Ready
	done  bool
}

// enrpConfig converts the registrar configuration to the node's.
func enrpConfig(cfg Config, info wire.ServerInfo) enrp.Config {
	e := cfg.ENRP
	ec := enrp.Config{
		ID:                uint32(cfg.ID),
		ServerInfo:        info,
		PeerHeartbeat:     e.PeerHeartbeat,
		MaxTimeLastHeard:  e.MaxTimeLastHeard,
		MaxTimeNoResponse: e.MaxTimeNoResponse,
		TakeoverExpiry:    e.TakeoverExpiry,
		MentorDiscovery:   e.MentorDiscovery,
		TableChunkPEs:     e.TableChunkPEs,
		TableChunkBytes:   e.TableChunkBytes,
		Multicast:         e.Multicast.Enabled,
	}
	if e.Arbitration == "higher-id-wins" {
		ec.Arbitration = enrp.HigherIDWins
	}
	if len(e.Peers) == 0 && !e.Multicast.Enabled {
		ec.MentorDiscovery = -1 // nobody to wait for
	}
	return ec
}

// serverInfo describes the first tcp:// or sctp:// ENRP listener, else a
// tls:// one as a TCP transport (the parameter has no TLS type; a TLS-only
// registrar reaches every peer over TLS, see peerMgr.tlsOnly).
func serverInfo(addrs []string) wire.ServerInfo {
	tlsOnly := !slices.ContainsFunc(addrs, func(s string) bool { return schemeOf(s) != transport.SchemeTLS })
	for _, s := range addrs {
		a, err := transport.ParseAddr(s)
		if err != nil {
			continue
		}
		if a.Scheme() == transport.SchemeTLS {
			if !tlsOnly {
				continue
			}
			a = a.WithScheme(transport.SchemeTCP)
		}
		if t, ok := a.Transport(); ok {
			return wire.ServerInfo{Transport: t}
		}
	}
	return wire.ServerInfo{}
}

// enrpOut carries out the node's outputs on the loop goroutine.
func (l *loop) enrpOut(outs []enrp.Output, now time.Time) {
	es := l.enrp
	for _, o := range outs {
		switch o.Kind {
		case enrp.Send:
			b, err := o.Msg.AppendBinary(make([]byte, 0, 128))
			if err != nil {
				l.log.Error("ENRP encoding failed", "type", o.Msg.Type(), "err", err)
				continue
			}
			switch m := o.Msg.(type) {
			case *wire.HandleUpdate:
				l.m.updatesSent.Inc()
			case *wire.TakeoverServer:
				l.m.takeovers.Inc()
			case *wire.HandleTableRequest:
				if m.OwnChildrenOnly {
					l.m.audits.Inc()
				}
			}
			if o.Multicast {
				if es.mc != nil {
					if err := es.mc.Send(b); err != nil {
						l.log.Debug("ENRP multicast send failed", "err", err)
					}
				}
				continue
			}
			if !es.pm.send(o.To, b) {
				l.m.enrpDropped.Inc()
			}
		case enrp.Ready:
			if !es.done {
				es.done = true
				close(es.ready)
				l.log.Info("ENRP start-up synchronisation done; serving ASAP", "elements", l.hs.NumElements())
			}
		case enrp.KeepAliveHome:
			l.carry(l.core.Adopt(now, o.Handle, o.PEID), now)
		case enrp.OwnershipLost:
			l.carry(l.core.Disown(now, o.Handle, o.PEID, !o.FromTable), now)
		case enrp.PeerUp, enrp.PeerDown:
			msg := "ENRP peer up"
			if o.Kind == enrp.PeerDown {
				msg = "ENRP peer down"
			}
			l.log.Info(msg, "peer", ServerID(o.PeerID), "addr", o.To)
			if o.Kind == enrp.PeerDown {
				es.pm.abortPeer(o.To)
			}
			n := 0
			for _, p := range es.node.Peers() {
				if p.ID != 0 && !p.Tentative && (p.State == enrp.PeerActive || p.State == enrp.PeerProbing) {
					n++
				}
			}
			l.m.peers.Set(float64(n))
		}
	}
	l.gauges()
}

// adopt starts monitoring a PE this registrar took over from a dead peer
// (see asap.Core.Adopt).
func (l *loop) adopt(handle wire.PoolHandle, id uint32, now time.Time) {
	l.carry(l.core.Adopt(now, handle, id), now)
}

// enrpMessage feeds a received ENRP message to the node.
func (l *loop) enrpMessage(ev evENRP, now time.Time) {
	if _, ok := ev.m.(*wire.HandleUpdate); ok {
		l.m.updatesReceived.Inc()
	}
	l.enrpOut(l.enrp.node.Step(now, ev.src, ev.m), now)
}

// peerMgr holds one ENRP connection per address: dialed on demand for
// peers, accepted ones under their remote address (answers to requests go
// back over them).
type peerMgr struct {
	log    *slog.Logger
	tcfg   transport.Config
	tlsCli *tls.Config // client side of tls:// peers; nil without TLS
	ids    map[string]bool
	events chan<- any
	stop   <-chan struct{}
	wg     *sync.WaitGroup
	dialTO time.Duration
	// tlsOnly: every ENRP listener is tls://, so peers advertised with a
	// TCP transport are dialed over TLS (never in plain text).
	tlsOnly bool
	ctx     context.Context // cancelled by closeAll: aborts dials
	cancel  context.CancelFunc
	// allow is enrp.allow: the networks peers may be in; empty = any.
	allow []netip.Prefix
	// sctpLocal is the first sctp:// ENRP listener's endpoint: sctp://
	// peers are dialed from it (RSPLIB drops a Presence whose Server
	// Information names another port than the association's). Zero
	// without an sctp:// listener.
	sctpLocal transport.Addr
	// accepted is closed and replaced whenever an accepted connection is
	// registered (a dial that collided with it waits for it).
	accepted chan struct{}
	// closeRefused closes a connection in the background (Registrar.closeRefused).
	closeRefused func(transport.Conn)
	m            *metrics

	mu     sync.Mutex
	closed bool
	conns  map[string]*peerConn
}

type peerConn struct {
	wg     *sync.WaitGroup // tracks the background Close of tc
	addr   string
	lostAs string // address reported to the node when the connection fails
	out    *peerQueue
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex // guards tc and ids
	tc     transport.Conn
	ids    []uint32 // server IDs whose messages arrived (at most maxConnIDs)
	dialed bool
}

// maxConnIDs bounds the server IDs remembered per connection: one peer
// uses one ID; a hostile sender cycling IDs gains nothing beyond that.
const maxConnIDs = 4

// saw records that a message from server ID id arrived over pc.
func (pc *peerConn) saw(id uint32) {
	pc.mu.Lock()
	if id != 0 && len(pc.ids) < maxConnIDs && !slices.Contains(pc.ids, id) {
		pc.ids = append(pc.ids, id)
	}
	pc.mu.Unlock()
}

// lost is the event that reports pc's end to the loop.
func (pc *peerConn) lost() evPeerLost {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return evPeerLost{addr: pc.lostAs, ids: slices.Clone(pc.ids)}
}

// idle reports whether pc has no transport connection yet (a dial under
// way).
func (pc *peerConn) idle() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.tc == nil
}

// close ends the connection without blocking (the transport's Close waits
// for the peer up to its close timeout); the caller may hold peerMgr.mu.
func (pc *peerConn) close() { pc.end(transport.Conn.Close) }

// abort ends the connection with a reset, discarding what is queued for
// the peer here and in the kernel, without blocking (the transport waits
// for its writers to return); the caller may hold peerMgr.mu.
func (pc *peerConn) abort() { pc.end(transport.Abort) }

// end stops pc once and ends its transport connection with how, in a
// goroutine of its own.
func (pc *peerConn) end(how func(transport.Conn) error) {
	pc.once.Do(func() {
		close(pc.done)
		pc.mu.Lock()
		if tc := pc.tc; tc != nil {
			pc.wg.Add(1)
			go func() { defer pc.wg.Done(); how(tc) }()
		}
		pc.mu.Unlock()
	})
}

// abortPeer resets our connection to the address of a peer the node gave
// up on (PeerDown). What is still queued on it was meant for a peer we
// believed alive, and a connection whose peer stopped answering has its
// kernel retransmission timer backed off to seconds: kept, it would
// deliver stale Presences and takeover messages seconds after the peer is
// back (a healed partition) and hold up the audits that reconcile the
// handlespace. The next message to the peer dials a fresh connection.
// Connections the peer opened to us are its own to reset.
func (pm *peerMgr) abortPeer(addr string) {
	if pm.tlsOnly && strings.HasPrefix(addr, "tcp://") {
		addr = "tls://" + strings.TrimPrefix(addr, "tcp://")
	}
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if pc := pm.conns[addr]; pc != nil {
		delete(pm.conns, addr)
		pc.abort()
	}
}

// allowed reports whether an ENRP peer at a may be talked to (enrp.allow).
func (pm *peerMgr) allowed(a netip.Addr) bool {
	return len(pm.allow) == 0 || (a.IsValid() && asap.Contains(pm.allow, a.Unmap()))
}

// allowedConn reports whether every address of tc's peer (every path of
// an SCTP association) is in enrp.allow.
func (pm *peerMgr) allowedConn(tc transport.Conn) bool {
	if len(pm.allow) == 0 {
		return true
	}
	addrs, _ := peerAddrs(tc)
	for _, a := range addrs {
		if !pm.allowed(a) {
			return false
		}
	}
	return len(addrs) > 0
}

// send queues b for addr, dialing it when no connection exists. It never
// blocks; false means the message was dropped.
func (pm *peerMgr) send(addr string, b []byte) bool {
	if addr == "" {
		return false
	}
	lostAs := addr
	if pm.tlsOnly && strings.HasPrefix(addr, "tcp://") {
		addr = "tls://" + strings.TrimPrefix(addr, "tcp://")
	}
	pm.mu.Lock()
	if pm.closed {
		pm.mu.Unlock()
		return false
	}
	pc := pm.conns[addr]
	if pc == nil {
		pc = pm.sameEndpoint(addr)
	}
	if pc == nil {
		if len(pm.conns) >= maxENRPConns {
			pm.mu.Unlock()
			return false
		}
		pc = &peerConn{wg: pm.wg, addr: addr, lostAs: lostAs, out: newPeerQueue(), done: make(chan struct{}), dialed: true}
		pm.conns[addr] = pc
		pm.wg.Add(1)
		go pm.runDialed(pc)
	}
	pm.mu.Unlock()
	return pc.out.push(b)
}

// sameEndpoint returns a connection to the SCTP endpoint addr under
// another name (an association a multi-homed peer opened, listed under all
// its addresses), or nil. Between two endpoints there is one association,
// since both sides dial from their listening endpoint. The caller holds
// pm.mu.
func (pm *peerMgr) sameEndpoint(addr string) *peerConn {
	a, err := transport.ParseAddr(addr)
	if err != nil || a.Scheme() != transport.SchemeSCTP {
		return nil
	}
	for k, pc := range pm.conns {
		b, err := transport.ParseAddr(k)
		if err == nil && b.Scheme() == transport.SchemeSCTP && b.Port() == a.Port() &&
			slices.ContainsFunc(b.Hosts(), func(h string) bool { return slices.Contains(a.Hosts(), h) }) {
			return pc
		}
	}
	return nil
}

// post hands an event to the loop, giving up when the registrar stops.
func (pm *peerMgr) post(ev any) bool {
	select {
	case pm.events <- ev:
		return true
	case <-pm.stop:
		return false
	}
}

func (pm *peerMgr) forget(pc *peerConn) {
	pm.mu.Lock()
	if pm.conns[pc.addr] == pc {
		delete(pm.conns, pc.addr)
	}
	pm.mu.Unlock()
}

// runDialed connects to pc.addr, then writes its queue and reads what the
// peer sends back until the connection fails; the node then hears of the
// loss and the next message dials again.
func (pm *peerMgr) runDialed(pc *peerConn) {
	defer pm.wg.Done()
	ctx, cancel := context.WithTimeout(pm.ctx, pm.dialTO)
	tcfg := pm.tcfg
	if schemeOf(pc.addr) == transport.SchemeTLS {
		tcfg.TLS = pm.tlsCli
		if tcfg.TLS == nil {
			pm.log.Warn("ENRP peer uses tls:// but tls.cert_file is not configured", "addr", pc.addr)
		}
	}
	if schemeOf(pc.addr) == transport.SchemeSCTP {
		tcfg.LocalAddr = pm.sctpLocal
	}
	var tc transport.Conn
	err := errNotAllowed
	if ip, ok := addrIP(pc.addr); !ok || pm.allowed(ip) {
		collided := time.Time{}
		for {
			tc, err = dialAddr(ctx, pc.addr, &tcfg)
			if !errors.Is(err, syscall.EADDRNOTAVAIL) || tcfg.LocalAddr.IsZero() {
				break
			}
			// An association between our endpoint and the peer's exists:
			// one the peer opened (the accept loop takes it and it carries
			// the queue), or ours, still closing after the peer died. Wait
			// for the first, dial again for the second.
			if collided.IsZero() {
				collided = time.Now()
			}
			if pm.handOver(pc, collidedRetry) {
				cancel()
				return
			}
			if time.Since(collided) > handOverWait || ctx.Err() != nil {
				break
			}
		}
		if err == nil && !pm.allowedConn(tc) {
			pm.closeRefused(tc)
			err = errNotAllowed
		}
	}
	cancel()
	if errors.Is(err, syscall.EADDRNOTAVAIL) && !tcfg.LocalAddr.IsZero() {
		pm.forget(pc)
		pc.close()
		pm.log.Debug("ENRP dial collided with an association that neither ended nor was accepted", "addr", pc.addr)
		pm.post(pc.lost()) // not unreachable: an association with the peer exists
		return
	}
	if err != nil {
		pm.forget(pc)
		pc.close()
		if err == errNotAllowed {
			pm.m.limitRejections.WithLabelValues(limitENRPAllow).Inc()
			pm.log.Warn("ENRP peer outside enrp.allow; not connecting", "addr", pc.addr)
		} else {
			pm.log.Debug("ENRP dial failed", "addr", pc.addr, "err", err)
		}
		pm.post(evPeerLost{addr: pc.lostAs, unreachable: true})
		return
	}
	pm.serve(pc, tc)
	pm.post(pc.lost())
}

// handOverWait bounds how long a dial that collided with an association
// between the same endpoints keeps waiting for the accept loop to take it
// (or for it to end); collidedRetry is how often it dials again meanwhile.
const (
	handOverWait  = time.Second
	collidedRetry = 50 * time.Millisecond
)

// handOver is for a dial from our SCTP endpoint that failed because an
// association between the two endpoints exists. If the peer opened it, the
// accept loop takes it now or soon: handOver waits (at most d) for that
// connection, moves pc's queued messages to it and reports true; false
// when none came.
func (pm *peerMgr) handOver(pc *peerConn, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		pm.mu.Lock()
		var other *peerConn
		if cur := pm.conns[pc.addr]; cur != nil && cur != pc {
			other = cur
		} else if cur == nil || cur == pc {
			other = pm.sameEndpoint(pc.addr)
			if other == pc {
				other = nil
			}
		}
		changed := pm.accepted
		pm.mu.Unlock()
		if other != nil {
			pm.forget(pc)
			for b, ok := pc.out.pop(); ok; b, ok = pc.out.pop() {
				other.out.push(b)
			}
			pc.close()
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		case <-pm.stop:
			return false
		}
	}
}

// serve runs the reader (in a new goroutine) and the writer of pc over tc
// until either fails or the registrar stops.
func (pm *peerMgr) serve(pc *peerConn, tc transport.Conn) {
	pc.mu.Lock()
	pc.tc = tc
	pc.mu.Unlock()
	select {
	case <-pc.done: // closed meanwhile
		tc.Close()
	default:
	}
	pm.wg.Add(1)
	go func() {
		defer pm.wg.Done()
		defer pc.close()
		pm.read(pc, tc)
	}()
	defer pm.forget(pc)
	defer pc.close()
	for {
		select {
		case <-pm.stop:
			return
		case <-pc.done:
			return
		case <-pc.out.wake:
			for b, ok := pc.out.pop(); ok; b, ok = pc.out.pop() {
				if err := tc.WriteMessage(transport.Message{PPID: wire.PPIDENRP, Data: b}); err != nil {
					pm.log.Debug("ENRP write failed", "addr", pc.addr, "err", err)
					return
				}
			}
		}
	}
}

// read decodes ENRP messages from tc and posts them to the loop.
func (pm *peerMgr) read(pc *peerConn, tc transport.Conn) {
	checked := pm.ids == nil || schemeOf(pc.addr) != transport.SchemeTLS
	src := enrp.Source{Addr: pc.addr}
	for {
		msg, err := tc.ReadMessage()
		if err != nil {
			return
		}
		if !checked {
			if !pm.identified(tc) {
				pm.log.Warn("ENRP peer certificate not in enrp.peer_identities; closing", "addr", pc.addr)
				return
			}
			checked = true
		}
		if msg.PPID != wire.PPIDENRP {
			continue
		}
		raw := slices.Clone(msg.Data)
		m, err := wire.ParseENRP(raw)
		if err != nil {
			if em := enrp.ErrorFor(raw, err); em != nil {
				if b, err := em.AppendBinary(nil); err == nil {
					pc.out.push(b)
				}
			}
			pm.log.Debug("malformed ENRP message", "addr", pc.addr, "err", err)
			continue
		}
		pc.saw(binary.BigEndian.Uint32(raw[4:8])) // the Sending Server's ID (RFC 5353 §2.1)
		if !pm.post(evENRP{src: src, m: m}) {
			return
		}
	}
}

// identified reports whether tc's client certificate is one of
// enrp.peer_identities.
func (pm *peerMgr) identified(tc transport.Conn) bool {
	for _, id := range tlsIdentities(tc) {
		if pm.ids[id] {
			return true
		}
	}
	return false
}

// accept serves incoming ENRP connections of ln until it closes.
func (pm *peerMgr) accept(ln transport.Listener, scheme transport.Scheme) {
	defer pm.wg.Done()
	for {
		tc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-pm.stop:
				return
			case <-time.After(10 * time.Millisecond): // back off on e.g. EMFILE
			}
			continue
		}
		addr := tc.RemoteAddr().String()
		if ra, err := transport.AddrFromNet(scheme, tc.RemoteAddr()); err == nil {
			addr = ra.String()
		}
		if !pm.allowedConn(tc) {
			pm.closeRefused(tc)
			pm.m.limitRejections.WithLabelValues(limitENRPAllow).Inc()
			pm.log.Warn("ENRP connection refused: source not in enrp.allow", "peer", addr)
			continue
		}
		pc := &peerConn{wg: pm.wg, addr: addr, lostAs: addr, out: newPeerQueue(), done: make(chan struct{})}
		pm.mu.Lock()
		if pm.closed {
			pm.mu.Unlock()
			pm.closeRefused(tc)
			return
		}
		if len(pm.conns) >= maxENRPConns {
			pm.wg.Add(1) // Close waits for the peer's end of stream: not in this loop
			pm.mu.Unlock()
			pm.closeRefused(tc)
			pm.log.Warn("ENRP connection refused: too many connections", "peer", addr, "max", maxENRPConns)
			continue
		}
		if old := pm.conns[addr]; old != nil {
			if old.dialed && old.idle() {
				// Our dial to this endpoint collides with this
				// association (bound source ports: one per pair); the
				// dial hands its queue over (handOver).
			} else {
				old.close()
			}
		}
		pm.conns[addr] = pc
		close(pm.accepted)
		pm.accepted = make(chan struct{})
		pm.wg.Add(1)
		pm.mu.Unlock()
		go func() {
			defer pm.wg.Done()
			pm.serve(pc, tc)
			pm.post(pc.lost()) // a peer that dies closes the connections it opened too
		}()
	}
}

// closeAll closes every connection; the goroutines end on their own.
func (pm *peerMgr) closeAll() {
	pm.mu.Lock()
	pm.closed = true
	pm.cancel()
	conns := pm.conns
	pm.conns = map[string]*peerConn{}
	pm.mu.Unlock()
	for _, pc := range conns {
		pc.close()
	}
}

// receiveMulticast posts ENRP messages from the multicast channel until rc
// closes.
func (pm *peerMgr) receiveMulticast(rc *transport.MulticastReceiver) {
	defer pm.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, src, err := rc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-pm.stop:
				return
			default:
				continue
			}
		}
		m, err := wire.ParseENRP(slices.Clone(buf[:n]))
		if err != nil {
			continue
		}
		if _, ok := m.(*wire.Presence); !ok {
			continue // only Presence travels by multicast
		}
		if !pm.allowed(src.Addr()) {
			pm.m.limitRejections.WithLabelValues(limitENRPAllow).Inc()
			pm.log.Debug("ENRP multicast Presence from outside enrp.allow ignored", "src", src.String())
			continue
		}
		if !pm.post(evENRP{src: enrp.Source{Addr: "udp://" + src.String(), Multicast: true}, m: m}) {
			return
		}
	}
}

// clientTLS is the client side of tls:// ENRP peers: our certificate and
// the CA that signs the peers'.
func clientTLS(c TLSConfig) (*tls.Config, error) {
	if c.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pool, err := loadCAPool(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
