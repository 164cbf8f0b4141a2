package registrar

import (
	"container/heap"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rserpool/rserpool/registrar/enrp"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// peerQueueLen bounds the ENRP messages queued for one peer connection. A
// peer that does not read fills it; further messages are dropped (the audit
// repairs what a dropped Handle Update missed).
const peerQueueLen = 16384

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
	evPeerLost struct{ addr string }
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
			l.adopt(o.Handle, o.PEID, now)
		case enrp.OwnershipLost:
			l.disown(o.Handle, o.PEID, now)
		case enrp.PeerUp, enrp.PeerDown:
			l.log.Info("ENRP peer "+strings.TrimPrefix(o.Kind.String(), "peer-"), "peer", ServerID(o.PeerID), "addr", o.To)
			n := 0
			for _, p := range es.node.Peers() {
				if p.ID != 0 && (p.State == enrp.PeerActive || p.State == enrp.PeerProbing) {
					n++
				}
			}
			l.m.peers.Set(float64(n))
		}
	}
	l.gauges()
}

// adopt starts monitoring a PE this registrar took over from a dead peer.
// When the PE has no connection here and its ASAP Transport is SCTP, the
// registrar opens an association to it and sends the Keep-Alive with H=1
// there (reach). Over the TCP mapping a registrar reaches a PE only over a
// connection the PE opened to it, so the PE gets no Keep-Alive here; it keeps
// its entry (now ours) for one keep-alive interval plus timeout, within
// which it re-registers on its own (here or at another registrar, which
// then announces itself as the PE's home).
func (l *loop) adopt(handle wire.PoolHandle, id uint32, now time.Time) {
	e, ok := l.hs.Get(handle, id)
	if !ok || e.HomeServer != l.id {
		return
	}
	o := owned(e)
	if o == nil {
		o = &ownedPE{e: e, idx: -1}
		e.Owner = o
	}
	if o.c != nil {
		// The PE is connected here: ask it to adopt us (H bit).
		ka := &wire.EndpointKeepAlive{ServerID: l.id, PoolHandle: handle, HasID: true, ID: id, Home: true}
		if l.sendMsg(o.c, ka) {
			l.m.keepAlivesSent.Inc()
		}
	} else {
		// Taken over with no connection here: over SCTP open one to the
		// PE's ASAP Transport (RSPLIB behaviour) and send it there.
		l.reach(o)
	}
	o.waiting = true
	l.schedule(o, now.Add(l.cfg.Timers.KeepAliveInterval+l.cfg.Timers.KeepAliveTimeout))
}

// disown handles a peer's claim to be the home of a PE we own. Normally
// the PE re-registered there and we stop monitoring it. But a PE still
// registered over a live connection to us is ours whatever a peer says (a
// registrar on the other side of a healed partition took it over): we
// reclaim it and announce that with a Handle Update, at most once per
// keep-alive interval per PE so that a PE registered at two registrars at
// once cannot make them argue without end.
func (l *loop) disown(handle wire.PoolHandle, id uint32, now time.Time) {
	e, ok := l.hs.Get(handle, id)
	if !ok {
		return
	}
	o := owned(e)
	if o == nil || e.HomeServer == l.id {
		return
	}
	since := max(now.Sub(l.epoch), 1) // 0 in o.reasserted means never
	if o.c != nil && !o.c.gone && (o.reasserted == 0 || since-o.reasserted >= l.cfg.Timers.KeepAliveInterval) {
		o.reasserted = since
		l.hs.SetHome(handle, id, l.id)
		l.hs.SetExpiry(handle, id, time.Time{})
		l.log.Info("PE connected here claimed by a peer; reclaiming it", "pool", truncate(handle), "pe", peID(id))
		if l.onChange != nil {
			l.onChange(Change{Action: wire.ActionAddPE, Pool: handle, Element: e.PoolElement()})
		}
		return
	}
	l.dropOwned(o)
}

// dropOwned forgets the monitoring state of o without touching the
// handlespace.
func (l *loop) dropOwned(o *ownedPE) {
	l.detach(o)
	if o.idx >= 0 && int(o.idx) < len(l.timers) && l.timers[o.idx] == o {
		heap.Remove(&l.timers, int(o.idx))
	}
	o.e.Owner = nil
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

	mu     sync.Mutex
	closed bool
	conns  map[string]*peerConn
}

type peerConn struct {
	addr   string
	lostAs string // address reported to the node when the connection fails
	out    chan []byte
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	tc     transport.Conn
	dialed bool
}

func (pc *peerConn) close() {
	pc.once.Do(func() {
		close(pc.done)
		pc.mu.Lock()
		if pc.tc != nil {
			pc.tc.Close()
		}
		pc.mu.Unlock()
	})
}

// send queues b for addr, dialing it when no connection exists. It never
// blocks; false means the message was dropped.
func (pm *peerMgr) send(addr string, b []byte) bool {
	if addr == "" {
		return false
	}
	lostAs := addr
	if a, err := transport.ParseAddr(addr); err == nil && pm.tlsOnly && a.Scheme() == transport.SchemeTCP {
		addr = a.WithScheme(transport.SchemeTLS).String()
	}
	pm.mu.Lock()
	if pm.closed {
		pm.mu.Unlock()
		return false
	}
	pc := pm.conns[addr]
	if pc == nil {
		if len(pm.conns) >= maxENRPConns {
			pm.mu.Unlock()
			return false
		}
		pc = &peerConn{addr: addr, lostAs: lostAs, out: make(chan []byte, peerQueueLen), done: make(chan struct{}), dialed: true}
		pm.conns[addr] = pc
		pm.wg.Add(1)
		go pm.runDialed(pc)
	}
	pm.mu.Unlock()
	select {
	case pc.out <- b:
		return true
	default:
		return false
	}
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
	tc, err := dialAddr(ctx, pc.addr, &tcfg)
	cancel()
	if err != nil {
		pm.forget(pc)
		pc.close()
		pm.log.Debug("ENRP dial failed", "addr", pc.addr, "err", err)
		pm.post(evPeerLost{pc.lostAs})
		return
	}
	pm.serve(pc, tc)
	pm.post(evPeerLost{pc.lostAs})
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
		case b := <-pc.out:
			if err := tc.WriteMessage(transport.Message{PPID: wire.PPIDENRP, Data: b}); err != nil {
				pm.log.Debug("ENRP write failed", "addr", pc.addr, "err", err)
				return
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
			if !pm.allowed(tc) {
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
					select {
					case pc.out <- b:
					default:
					}
				}
			}
			pm.log.Debug("malformed ENRP message", "addr", pc.addr, "err", err)
			continue
		}
		if !pm.post(evENRP{src: src, m: m}) {
			return
		}
	}
}

func (pm *peerMgr) allowed(tc transport.Conn) bool {
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
		pc := &peerConn{addr: addr, out: make(chan []byte, peerQueueLen), done: make(chan struct{})}
		pm.mu.Lock()
		if pm.closed {
			pm.mu.Unlock()
			tc.Close()
			return
		}
		if len(pm.conns) >= maxENRPConns {
			pm.mu.Unlock()
			tc.Close()
			pm.log.Warn("ENRP connection refused: too many connections", "peer", addr, "max", maxENRPConns)
			continue
		}
		if old := pm.conns[addr]; old != nil {
			old.close()
		}
		pm.conns[addr] = pc
		pm.wg.Add(1)
		pm.mu.Unlock()
		go func() { defer pm.wg.Done(); pm.serve(pc, tc) }()
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
