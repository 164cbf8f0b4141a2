package registrar

import (
	"context"
	"time"

	"github.com/rserpool/rserpool/registrar/asap"
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

// reach starts the association set-up the core asked for; when none can
// start (the registrar is closing, or no dialer in unit tests) the core
// hears at once that it failed.
func (l *loop) reach(o *asap.Output, now time.Time) {
	k := peKey{o.Handle, o.PEID}
	if l.dial == nil || !l.dial(k, o.Addr) {
		l.carry(l.core.Dialed(now, k.pool, k.id, 0, false), now)
		return
	}
	l.log.Info("opening ASAP association to PE without one", "pool", truncate(o.Handle), "pe", peID(o.PEID), "addr", o.Addr)
}

// dialed hands the end of a set-up to the core; a new association is
// opened in the core first (it may carry the PE's answers).
func (l *loop) dialed(ev evDialed, now time.Time) {
	if ev.c == nil || ev.c.gone {
		if ev.c != nil {
			ev.c.close()
		}
		l.carry(l.core.Dialed(now, ev.key.pool, ev.key.id, 0, false), now)
		return
	}
	l.carry(l.core.Dialed(now, ev.key.pool, ev.key.id, l.open(ev.c), true), now)
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
		r.closeRefused(tc)
		r.m.limitRejections.WithLabelValues(limitConnections).Inc()
		return nil
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.nconns.Add(-1)
		r.closeRefused(tc)
		return nil
	}
	r.nextConn++
	c := newConn(r.nextConn, tc, transport.SchemeSCTP, r.limits.Load().SendQueueBytes, r.log, &r.wg)
	r.conns[c] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	r.m.connections.Inc()
	r.m.connectionsTotal.WithLabelValues("dialed").Inc()
	c.resume = func() { r.serveConn(c) }
	go r.serveConn(c)
	return c
}
