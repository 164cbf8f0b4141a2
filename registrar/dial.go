package registrar

import (
	"context"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// maxPEDials caps the outgoing ASAP associations being set up at once.
const maxPEDials = 16

// maxPEDialTime bounds one outgoing ASAP association set-up.
const maxPEDialTime = 10 * time.Second

// peKey names a PE.
type peKey struct {
	pool wire.PoolHandle
	id   uint32
}

// evDialed reports the end of an outgoing ASAP association set-up to a PE.
type evDialed struct {
	key peKey
	c   *conn // nil when the set-up failed
}

// dialTarget returns the address to open an ASAP association to when a
// PE we own has no connection here: only an SCTP ASAP Transport with a
// usable (specified, non-multicast) address and a port qualifies. Over the
// TCP mapping the PE reconnects by itself.
func dialTarget(t wire.Transport) (string, bool) {
	if t.Type != wire.TransportSCTP {
		return "", false
	}
	a, err := transport.AddrFromTransport(t)
	if err != nil {
		return "", false
	}
	return a.String(), true
}

// reach opens an ASAP association to o's PE when it has no connection
// here and its ASAP Transport allows it; at most one set-up per PE and
// maxPEDials in all are under way. The Keep-Alive with the H bit (home)
// and the PE Identifier follows once the association is up (see dialed):
// the PE learns that this registrar is its home now.
func (l *loop) reach(o *ownedPE) {
	if l.dial == nil || (o.c != nil && !o.c.gone) {
		return
	}
	addr, ok := dialTarget(o.e.ASAP())
	if !ok {
		return
	}
	k := peKey{o.e.Pool, o.e.ID}
	if _, busy := l.dialing[k]; busy || len(l.dialing) >= maxPEDials {
		return
	}
	if !l.dial(k, addr) {
		return
	}
	l.dialing[k] = struct{}{}
	l.log.Info("opening ASAP association to PE without one", "pool", truncate(o.e.Pool), "pe", peID(o.e.ID), "addr", addr)
}

// dialed attaches a new outgoing association to its PE and sends the
// Keep-Alive on it.
func (l *loop) dialed(ev evDialed) {
	delete(l.dialing, ev.key)
	if ev.c == nil {
		return // the keep-alive timeout removes the PE
	}
	o := l.ownedPE(wire.PoolHandle(ev.key.pool), ev.key.id)
	if o == nil || o.e.HomeServer != l.id || (o.c != nil && !o.c.gone) || ev.c.gone {
		ev.c.close() // no longer needed: the PE went, moved or reconnected
		return
	}
	l.attach(o, ev.c)
	ka := &wire.EndpointKeepAlive{ServerID: l.id, PoolHandle: o.e.Pool, HasID: true, ID: o.e.ID, Home: true}
	if l.sendMsg(ev.c, ka) {
		l.m.keepAlivesSent.Inc()
	}
}

// dialPE starts an association set-up to addr for PE k; it reports false
// when the registrar is closing. Runs on the loop goroutine.
func (r *Registrar) dialPE(k peKey, addr string) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		c := r.dialConn(addr)
		select {
		case r.loop.events <- evDialed{k, c}:
		case <-r.loopDone:
			if c != nil {
				c.close()
			}
		}
	}()
	return true
}

// dialConn opens the association and serves it like an accepted one.
func (r *Registrar) dialConn(addr string) *conn {
	ctx, cancel := context.WithTimeout(context.Background(), maxPEDialTime)
	watched := make(chan struct{})
	go func() { // cancels the set-up when the registrar stops
		defer close(watched)
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	tc, err := dialAddr(ctx, addr, &r.tcfg)
	cancel()
	<-watched
	if err != nil {
		r.m.connectionsTotal.WithLabelValues("dial_failed").Inc()
		r.log.Info("ASAP association to PE failed", "addr", addr, "err", err)
		return nil
	}
	if n := r.nconns.Add(1); n > int64(r.limits.Load().MaxConnections) {
		r.nconns.Add(-1)
		tc.Close()
		r.m.limitRejections.WithLabelValues(limitConnections).Inc()
		return nil
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.nconns.Add(-1)
		tc.Close()
		return nil
	}
	r.nextConn++
	c := newConn(r.nextConn, tc, transport.SchemeSCTP, r.limits.Load().SendQueueBytes, r.log)
	r.conns[c] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	r.m.connections.Inc()
	r.m.connectionsTotal.WithLabelValues("dialed").Inc()
	go r.serveConn(c)
	return c
}
