// Package pucachetest provides a scripted registrar for tests of pool users:
// it answers ASAP Handle Resolutions from a table the test controls, records
// Endpoint Unreachable reports, and can be made slow, silent, negative or
// dead. It speaks the real wire format over the real transport.
package pucachetest

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Registrar is a scripted ASAP registrar on 127.0.0.1. Safe for concurrent use.
type Registrar struct {
	ln transport.Listener
	wg sync.WaitGroup

	mu          sync.Mutex // guards the fields below
	pools       map[wire.PoolHandle]pool
	delay       time.Duration
	silent      bool
	conns       map[transport.Conn]struct{}
	resolutions map[wire.PoolHandle]int
	reports     []wire.EndpointUnreachable
	changed     chan struct{} // closed and replaced on every recorded event
}

type pool struct {
	policy wire.PolicyType
	elems  []wire.PoolElement
}

// Start starts a Registrar on a free port; it is stopped by t.Cleanup.
func Start(t testing.TB) *Registrar {
	t.Helper()
	return StartAt(t, transport.MustParseAddr("tcp://127.0.0.1:0"))
}

// StartAt starts a Registrar listening on addr (a restarted registrar
// takes the address of the one it replaces).
func StartAt(t testing.TB, addr transport.Addr) *Registrar {
	t.Helper()
	ln, err := transport.Listen(addr, nil)
	if err != nil {
		t.Fatalf("pucachetest: listen: %v", err)
	}
	r := &Registrar{ln: ln, pools: map[wire.PoolHandle]pool{}, conns: map[transport.Conn]struct{}{},
		resolutions: map[wire.PoolHandle]int{}, changed: make(chan struct{})}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(r.Stop)
	return r
}

// Addr returns the registrar's ASAP address ("tcp://127.0.0.1:port").
func (r *Registrar) Addr() transport.Addr {
	a, err := transport.AddrFromNet(transport.SchemeTCP, r.ln.Addr())
	if err != nil {
		panic("pucachetest: " + err.Error())
	}
	return a
}

// Stop closes the listener and every connection and waits for all goroutines.
// It is idempotent.
func (r *Registrar) Stop() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// PE returns a Pool Element with a TCP user transport at addr.
func PE(id uint32, addr netip.AddrPort, policy wire.PolicyType, weight uint32) wire.PoolElement {
	return wire.PoolElement{
		ID:               id,
		RegistrationLife: 30000,
		User:             wire.Transport{Type: wire.TransportTCP, Port: addr.Port(), Addrs: []netip.Addr{addr.Addr()}},
		Policy:           wire.Policy{Type: policy, Weight: weight},
	}
}

// SetPool sets (or, with no elements, removes) a pool.
func (r *Registrar) SetPool(handle wire.PoolHandle, policy wire.PolicyType, elems ...wire.PoolElement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(elems) == 0 {
		delete(r.pools, handle)
		return
	}
	r.pools[handle] = pool{policy, elems}
}

// SetDelay delays every answer by d.
func (r *Registrar) SetDelay(d time.Duration) { r.mu.Lock(); r.delay = d; r.mu.Unlock() }

// SetSilent makes the registrar read requests without ever answering.
func (r *Registrar) SetSilent(s bool) { r.mu.Lock(); r.silent = s; r.mu.Unlock() }

// Resolutions returns how many Handle Resolutions arrived for handle.
func (r *Registrar) Resolutions(handle wire.PoolHandle) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resolutions[handle]
}

// Reports returns a copy of the Endpoint Unreachable reports received.
func (r *Registrar) Reports() []wire.EndpointUnreachable {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wire.EndpointUnreachable(nil), r.reports...)
}

// WaitFor waits until cond (called with the registrar unlocked) holds or
// timeout passes, re-checking after every recorded event.
func (r *Registrar) WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("pucachetest: timed out after %v waiting for %s", timeout, what)
		}
	}
}

func (r *Registrar) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Registrar) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns[c] = struct{}{}
		r.mu.Unlock()
		r.wg.Add(1)
		go r.handle(c)
	}
}

func (r *Registrar) handle(c transport.Conn) {
	defer r.wg.Done()
	defer func() {
		c.Close()
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}()
	for {
		m, err := c.ReadMessage()
		if err != nil {
			return
		}
		msg, err := wire.ParseASAP(m.Data)
		if err != nil {
			continue
		}
		switch req := msg.(type) {
		case *wire.HandleResolution:
			r.mu.Lock()
			r.resolutions[req.PoolHandle]++
			p, ok := r.pools[req.PoolHandle]
			delay, silent := r.delay, r.silent
			r.notifyLocked()
			r.mu.Unlock()
			if silent {
				continue
			}
			if delay > 0 {
				time.Sleep(delay) // scripted slowness: part of the double's behaviour
			}
			resp := &wire.HandleResolutionResponse{PoolHandle: req.PoolHandle}
			if ok {
				resp.Policy = &wire.Policy{Type: p.policy}
				resp.Elements = p.elems
			} else {
				resp.Error = &wire.OperationError{Causes: []wire.ErrorCause{{Code: wire.CauseUnknownPoolHandle}}}
			}
			b, err := resp.AppendBinary(nil)
			if err != nil {
				panic("pucachetest: encode: " + err.Error())
			}
			if c.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b}) != nil {
				return
			}
		case *wire.EndpointUnreachable:
			r.mu.Lock()
			r.reports = append(r.reports, *req)
			r.notifyLocked()
			r.mu.Unlock()
		}
	}
}
