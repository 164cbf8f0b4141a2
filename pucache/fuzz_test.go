package pucache

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rserpool/rserpool/internal/rsplibvec"
	"github.com/rserpool/rserpool/wire"
)

// FuzzResolutionResponse: whatever a hostile registrar puts in a Handle
// Resolution Response (any policy, any number of PEs with any IDs,
// transports and policy values, repeats), the cache installs it without
// panicking and what the proxy and failover do with a pool holds: every
// Pick returns a PE of the response that is not excluded and its address
// parses, picking with a growing exclude list ends, and unreachable
// reports take PEs out.
func FuzzResolutionResponse(f *testing.F) {
	for _, v := range rsplibvec.Load(f) {
		if v.Protocol == wire.ASAP {
			f.Add(v.Data, uint8(3))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, reports uint8) {
		m, err := wire.ParseASAP(data)
		resp, ok := m.(*wire.HandleResolutionResponse)
		if err != nil || !ok {
			return
		}
		c, err := New(Config{}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		p := c.Pool("P")
		snap := p.apply(resp, time.Now(), nil)
		ids := map[uint32]bool{}
		for _, pe := range resp.Elements {
			ids[pe.ID] = true
		}
		if len(snap.elems) > len(resp.Elements) {
			t.Fatalf("%d elements from a response of %d", len(snap.elems), len(resp.Elements))
		}
		if len(snap.elems) == 0 {
			return // an empty pool would ask a registrar: not this target's business
		}
		ctx := context.Background()
		var exclude []uint32
		for range len(snap.elems) + 2 {
			e, err := p.Pick(ctx, exclude)
			if err != nil {
				if !errors.Is(err, ErrNoElements) {
					t.Fatalf("Pick: %v", err)
				}
				break
			}
			if !ids[e.ID] || slices.Contains(exclude, e.ID) {
				t.Fatalf("picked PE %d: not in the response or excluded (%v)", e.ID, exclude)
			}
			if _, err := e.TransportAddr(); err != nil {
				t.Fatalf("picked PE %d with an address that does not parse: %v", e.ID, err)
			}
			exclude = append(exclude, e.ID)
		}
		for i := range min(int(reports), len(snap.elems)) {
			id := snap.elems[i].ID
			p.ReportUnreachable(id)
			if slices.ContainsFunc(p.Elements(), func(e Element) bool { return e.ID == id }) {
				t.Fatalf("PE %d still cached after its report", id)
			}
		}
		if n := len(p.Elements()); n > 0 {
			if e, err := p.Pick(ctx, nil); err == nil && !ids[e.ID] {
				t.Fatalf("picked PE %d after reports", e.ID)
			}
		}
	})
}
