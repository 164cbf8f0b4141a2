package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/registrar"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// ctl handlespace follows M=1 across many small Handle Table Responses and
// computes the owner checksum the registrar itself reports.
func TestCtlHandlespaceChunks(t *testing.T) {
	cfg := registrar.DefaultConfig()
	cfg.ASAP.Listen = []string{"tcp://127.0.0.1:0"}
	cfg.ENRP.Listen = []string{"tcp://127.0.0.1:0"}
	cfg.ENRP.TableChunkPEs = 2
	cfg.Timers.KeepAliveInterval = time.Hour
	r, err := registrar.New(cfg, registrar.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	<-r.Ready()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.MustParseAddr(r.ASAPAddrs()[0]), &transport.Config{HeartbeatInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 7
	for i := range n {
		reg := &wire.Registration{PoolHandle: []wire.PoolHandle{"A", "B"}[i%2], Element: wire.PoolElement{
			ID: uint32(i + 1), RegistrationLife: 30000,
			User:   wire.Transport{Type: wire.TransportTCP, Port: uint16(7000 + i), Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
			Policy: wire.Policy{Type: wire.PolicyRoundRobin}}}
		b, _ := reg.AppendBinary(nil)
		if err := c.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	d, err := fetchHandlespace(transport.MustParseAddr(r.ENRPAddrs()[0]), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Elements != n || len(d.Pools) != 2 || len(d.Checksums) != 1 {
		t.Fatalf("dump: %+v", d)
	}
	if d.Registrar != r.ID().String() || d.Checksums[0].Checksum != snap.Checksums[0].Checksum {
		t.Fatalf("dump %+v, registrar says %+v", d, snap.Checksums)
	}
	var text, js bytes.Buffer
	if err := printHandlespace(&text, d, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), `pool "B" policy round-robin, 3 PEs`) ||
		!strings.Contains(text.String(), "checksum "+snap.Checksums[0].Checksum) {
		t.Fatalf("text output:\n%s", text.String())
	}
	if err := printHandlespace(&js, d, true); err != nil {
		t.Fatal(err)
	}
	var back hsDump
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Elements != n {
		t.Fatalf("json output %s: %v", js.String(), err)
	}
	if _, err := fetchHandlespace(transport.MustParseAddr("tcp://127.0.0.1:1"), time.Second); err == nil {
		t.Fatal("no error from a closed port")
	}
}
