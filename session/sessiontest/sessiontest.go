// Package sessiontest runs what tests of sessions need, for real, on
// loopback: a registrar, session servers (PEs) registered in it, and pool
// user caches. Everything it starts is stopped by the test's cleanup.
package sessiontest

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	peagent "github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/registrar"
	"github.com/rserpool/rserpool/session"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Registrar starts a registrar on a free loopback port and returns its
// ASAP address; the test's cleanup stops it.
func Registrar(t testing.TB) string {
	t.Helper()
	cfg := registrar.DefaultConfig()
	cfg.ASAP.Listen = []string{"tcp://127.0.0.1:0"}
	r, err := registrar.New(cfg, registrar.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	select {
	case <-r.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("registrar not ready within 10s")
	}
	return r.ASAPAddrs()[0]
}

// Cache returns a pool user's cache of the registrar; cleanup closes it.
func Cache(t testing.TB, reg string) *pucache.Cache {
	t.Helper()
	c, err := pucache.New(pucache.Config{Registrars: []transport.Addr{transport.MustParseAddr(reg)}}, pucache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// PE is a session server of a test.
type PE struct {
	Srv      *session.Server
	done     chan error // Serve's result
	once     sync.Once
	serveErr error
}

// StartPE serves handler as PE id of pool (round robin), registered at
// reg, on a free loopback port (TCP mapping), and waits for the
// registration. mod (optional) changes the configuration first. The test's
// cleanup kills it.
func StartPE(t testing.TB, reg string, pool wire.PoolHandle, id uint32, handler func(context.Context, *session.Peer), mod func(*session.ServerConfig)) *PE {
	t.Helper()
	cfg := session.ServerConfig{
		Element: peagent.PEConfig{Registrars: []transport.Addr{transport.MustParseAddr(reg)}, PoolHandle: pool, ID: id,
			Policy: wire.Policy{Type: wire.PolicyRoundRobin}},
		Handler: handler,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := session.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := transport.Listen(transport.MustParseAddr("tcp://127.0.0.1:0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &PE{Srv: srv, done: make(chan error, 1)}
	go func() { p.done <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(p.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

// Kill closes the PE like a crash (Server.Close) and waits for Serve to
// return. Idempotent.
func (p *PE) Kill() {
	p.Srv.Close()
	p.Wait()
}

// Wait waits for Serve to return and returns its error.
func (p *PE) Wait() error {
	p.once.Do(func() { p.serveErr = <-p.done })
	return p.serveErr
}

// Addr returns the PE's user transport address, "tcp://127.0.0.1:port".
func (p *PE) Addr() transport.Addr {
	u := p.Srv.Self().User
	return transport.AddrFrom(transport.SchemeTCP, netip.AddrPortFrom(u.Addrs[0], u.Port))
}
