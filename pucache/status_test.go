package pucache_test

import (
	"errors"
	"testing"
	"time"

	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/pucache/pucachetest"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// TestStatus: each pool's policy, elements, freshness, the registrar that
// answered, and the error of a resolution that failed.
func TestStatus(t *testing.T) {
	r := pucachetest.Start(t)
	r.SetPool("A", wire.PolicyRoundRobin,
		pucachetest.PE(1, ap(t, 7001), wire.PolicyRoundRobin, 0),
		pucachetest.PE(2, ap(t, 7002), wire.PolicyRoundRobin, 0))
	c := newCache(t, pucache.Config{Registrars: []transport.Addr{deadAddr(t), r.Addr()}, StaleTimeout: time.Minute,
		RequestTimeout: time.Second})
	if got := c.Status(time.Now()); len(got) != 0 {
		t.Fatalf("status of an empty cache: %+v", got)
	}
	if err := c.Pool("A").Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Pool("Missing").Refresh(ctxT(t)); !errors.Is(err, pucache.ErrUnknownPool) {
		t.Fatalf("Missing: %v", err)
	}
	now := time.Now()
	st := c.Status(now)
	if len(st) != 2 || st[0].Handle != "A" || st[1].Handle != "Missing" {
		t.Fatalf("status = %+v", st)
	}
	a, m := st[0], st[1]
	if a.Policy != "round-robin" || len(a.Elements) != 2 || !a.Fresh || a.Registrar != r.Addr() || a.Err != nil ||
		now.Sub(a.Resolved) > 10*time.Second {
		t.Errorf("pool A: %+v", a)
	}
	if m.Policy != "" || len(m.Elements) != 0 || m.Fresh || !m.Resolved.IsZero() || !errors.Is(m.Err, pucache.ErrUnknownPool) || m.ErrAt.IsZero() {
		t.Errorf("pool Missing: %+v", m)
	}
	if st := c.Status(now.Add(2 * time.Minute)); st[0].Fresh {
		t.Error("pool A still fresh after twice the stale timeout")
	}
	if c.StaleTimeout() != time.Minute {
		t.Errorf("StaleTimeout = %v", c.StaleTimeout())
	}
}
