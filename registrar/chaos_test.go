package registrar

import (
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// chaosConfig is enrpE2EConfig with 1 s keep-alives: a PE that a survivor
// took over while the PE was already re-registering elsewhere has no
// connection at its new home, which then drops it after one keep-alive
// interval plus timeout; with 30 s that outlasts the convergence window.
var chaosConfig = strings.Replace(strings.Replace(enrpE2EConfig,
	`keepalive_interval = "30s"`, `keepalive_interval = "1s"`, 1),
	`keepalive_timeout = "30s"`, `keepalive_timeout = "1s"`, 1)

// startChaosProc is startENRPProc with chaosConfig.
func startChaosProc(t *testing.T, peers ...string) *proc {
	t.Helper()
	args := []string{"-enrp", "tcp://127.0.0.1:0"}
	for _, p := range peers {
		args = append(args, "-peer", p)
	}
	p := startProc(t, chaosConfig, args...)
	p.waitLog("serving ASAP", 20*time.Second)
	return p
}

// TestE2EENRPChaos kills (SIGKILL) and restarts registrars and PEs at
// random while a PU resolves continuously; a PE whose registrar died
// re-registers at the stable registrar, as pe-agent does. At the end every
// live PE is in every registrar's handlespace, nothing else is, and the
// owner checksums agree. Bounded: 20 operations or 60 s.
func TestE2EENRPChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run skipped with -short")
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	stable := startChaosProc(t)
	regs := []*proc{stable, startChaosProc(t, stable.enrp), startChaosProc(t, stable.enrp)}
	type pe struct {
		cl  *client
		reg *proc
		id  uint32
	}
	var pes []*pe
	nextID := uint32(0x1000)
	addPE := func(r *proc) {
		nextID++
		cl := dial(t, r.asap)
		cl.autoAck.Store(true)
		if resp := cl.register(regMsg("Chaos", nextID, uint16(nextID), wire.PolicyRoundRobin)); resp.Reject {
			t.Fatalf("register: %+v", resp.Error)
		}
		pes = append(pes, &pe{cl: cl, reg: r, id: nextID})
	}
	for i := range 6 {
		addPE(regs[i%3])
	}

	// The PU resolves at the stable registrar throughout.
	pu := dial(t, stable.asap)
	stopPU := make(chan struct{})
	puDone := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stopPU:
				puDone <- n
				return
			default:
			}
			pu.send(&wire.HandleResolution{PoolHandle: "Chaos"})
			if _, ok := pu.recv(5 * time.Second).(*wire.HandleResolutionResponse); !ok {
				puDone <- -1
				return
			}
			n++
			time.Sleep(5 * time.Millisecond) // a PU's request pace
		}
	}()

	ops, kills := 0, 0
	deadline := time.Now().Add(60 * time.Second)
	for ops < 20 && time.Now().Before(deadline) {
		ops++
		switch rng.IntN(4) {
		case 0: // SIGKILL a non-stable registrar, restart it; its PEs move to the stable one
			i := 1 + rng.IntN(2)
			victim := regs[i]
			victim.cmd.Process.Signal(syscall.SIGKILL)
			victim.cmd.Wait()
			kills++
			for _, p := range pes {
				if p.reg == victim {
					p.cl.close()
					p.cl = dial(t, stable.asap)
					p.cl.autoAck.Store(true)
					p.reg = stable
					if resp := p.cl.register(regMsg("Chaos", p.id, uint16(p.id), wire.PolicyRoundRobin)); resp.Reject {
						t.Fatalf("re-register: %+v", resp.Error)
					}
				}
			}
			regs[i] = startChaosProc(t, stable.enrp)
		case 1: // a PE dies (its connection ends: removed at its home)
			if len(pes) > 1 {
				k := rng.IntN(len(pes))
				pes[k].cl.close()
				pes = slices.Delete(pes, k, k+1)
			}
		default: // a PE starts at a random registrar
			addPE(regs[rng.IntN(3)])
		}
	}
	close(stopPU)
	resolutions := <-puDone
	if resolutions < 0 {
		t.Fatal("the PU got no answer within 5 s during the chaos run")
	}
	want := len(pes)
	t.Logf("chaos: waiting for %d live PEs at every registrar", want)
	took := waitSame(t, want, 10*time.Second, regs...)
	d := ctlHandlespace(t, stable.enrp)
	var ids []string
	for _, p := range d.Pools {
		for _, e := range p.Elements {
			ids = append(ids, e.ID)
		}
	}
	for _, p := range pes {
		if !slices.Contains(ids, ServerID(p.id).String()) {
			t.Errorf("live PE 0x%x missing", p.id)
		}
	}
	t.Logf("chaos: %d operations, %d registrar kills, %d PU resolutions, %d live PEs; all registrars agreed %v after the last operation",
		ops, kills, resolutions, want, took)
}
