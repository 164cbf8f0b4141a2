package handlespace

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

var update = flag.Bool("update", false, "rewrite the expected output of testdata/*.txt")

// TestScripts runs the scenarios in testdata/*.txt. A scenario is a list of
// commands, each a line starting with "> ", followed by its expected output.
// Run with -update to regenerate the expected output.
//
// Commands (times are seconds after a fixed epoch):
//
//	register POOL ID [home=H] [policy=NAME] [weight=W] [load=L] [ldeg=D] [prio=P]
//	         [transport=tcp|udp|sctp] [use=U] [addr=A] [port=P] [at=T]
//	deregister POOL ID
//	resolve POOL N
//	sethome POOL ID HOME
//	setexpiry POOL ID T
//	expire T          (lists and removes the PEs expired at T)
//	unreachable POOL ID
//	checksum OWNER
//	dump
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			h := New(Options{Rand: seeded(1)})
			var cmd string
			var want strings.Builder
			flush := func() {
				if cmd == "" {
					return
				}
				got := runCommand(h, cmd)
				fmt.Fprintf(&out, "> %s\n%s", cmd, got)
				if !*update && got != want.String() {
					t.Errorf("%s: > %s\ngot:\n%swant:\n%s", file, cmd, got, want.String())
				}
			}
			for _, line := range strings.SplitAfter(string(data), "\n") {
				if c, ok := strings.CutPrefix(line, "> "); ok {
					flush()
					cmd = strings.TrimSpace(c)
					want.Reset()
					continue
				}
				if cmd == "" {
					out.WriteString(line) // leading comments
					continue
				}
				want.WriteString(line)
			}
			flush()
			if *update {
				if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func runCommand(h *Handlespace, cmd string) string {
	f := strings.Fields(cmd)
	num := func(i int) uint32 {
		if i >= len(f) {
			return 0
		}
		v, _ := strconv.ParseUint(f[i], 0, 32)
		return uint32(v)
	}
	at := func(s uint32) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var b strings.Builder
	switch f[0] {
	case "register":
		pe := wire.PoolElement{ID: num(2), RegistrationLife: 30000,
			User:   wire.Transport{Type: wire.TransportTCP, Port: 7000, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
			Policy: wire.Policy{Type: wire.PolicyRoundRobin}}
		now := t0
		for _, kv := range f[3:] {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseUint(v, 0, 32)
			switch k {
			case "home":
				pe.HomeServer = uint32(n)
			case "policy":
				if t, err := wire.ParsePolicyName(v); err == nil {
					pe.Policy.Type = t
				} else {
					pe.Policy.Type = wire.PolicyType(n)
				}
			case "weight":
				pe.Policy.Weight = uint32(n)
			case "load":
				pe.Policy.Load = uint32(n)
			case "ldeg":
				pe.Policy.LoadDegradation = uint32(n)
			case "prio":
				pe.Policy.Priority = uint32(n)
			case "transport":
				pe.User.Type = map[string]wire.TransportType{"tcp": wire.TransportTCP, "udp": wire.TransportUDP, "sctp": wire.TransportSCTP}[v]
			case "use":
				pe.User.Use = wire.TransportUse(n)
			case "addr":
				pe.User.Addrs = []netip.Addr{netip.MustParseAddr(v)}
			case "port":
				pe.User.Port = uint16(n)
			case "at":
				now = at(uint32(n))
			}
		}
		_, created, err := h.Register(wire.PoolHandle(f[1]), pe, now)
		var rej *RejectError
		switch {
		case errors.As(err, &rej):
			fmt.Fprintf(&b, "rejected cause=0x%04x info=%x\n", uint16(rej.Code), rej.Info)
		case err != nil:
			fmt.Fprintf(&b, "error %v\n", err)
		case created:
			b.WriteString("created\n")
		default:
			b.WriteString("updated\n")
		}
	case "deregister":
		_, ok := h.Deregister(wire.PoolHandle(f[1]), num(2))
		fmt.Fprintf(&b, "ok=%v\n", ok)
	case "resolve":
		pol, es, ok := h.Resolve(wire.PoolHandle(f[1]), int(num(2)), nil)
		if !ok {
			b.WriteString("unknown pool\n")
			break
		}
		fmt.Fprintf(&b, "policy %s:", pol.Type.Name())
		for _, e := range es {
			fmt.Fprintf(&b, " %d", e.ID)
		}
		b.WriteString("\n")
	case "sethome":
		fmt.Fprintf(&b, "ok=%v\n", h.SetHome(wire.PoolHandle(f[1]), num(2), num(3)))
	case "setexpiry":
		fmt.Fprintf(&b, "ok=%v\n", h.SetExpiry(wire.PoolHandle(f[1]), num(2), at(num(3))))
	case "expire":
		for _, e := range h.Expired(at(num(1)), nil) {
			fmt.Fprintf(&b, "expired %s/%d at %s\n", e.Pool, e.ID, e.Expiry.Sub(t0))
			h.Deregister(e.Pool, e.ID)
		}
	case "unreachable":
		n, ok := h.ReportUnreachable(wire.PoolHandle(f[1]), num(2))
		fmt.Fprintf(&b, "count=%d ok=%v\n", n, ok)
	case "checksum":
		fmt.Fprintf(&b, "0x%04x (%d PEs)\n", h.Checksum(num(1)), h.OwnedCount(num(1)))
	case "dump":
		for _, p := range h.Snapshot() {
			fmt.Fprintf(&b, "pool %q %s\n", p.Handle, p.Policy)
			for _, e := range p.Elements {
				fmt.Fprintf(&b, "  pe %d home=0x%x %s %v:%d load=%d deg=%d sel=%d unreach=%d\n", e.ID, e.Home,
					e.Transport, e.Addrs, e.Port, e.Policy.Load, e.Degradation, e.Selections, e.Unreachable)
			}
		}
	default:
		fmt.Fprintf(&b, "unknown command %q\n", f[0])
	}
	return b.String()
}
