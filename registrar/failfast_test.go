package registrar

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"
)

// The tests of this file run real registrar and pe-agent processes at
// their default settings (only addresses, and where said a shorter
// rebalance_after, are configured), as a new user would: failures are
// handled by the defaults, not by test timers. Figures are logged; the
// bounds asserted are generous for a loaded 2-core machine (BENCHMARKS.md
// has the measured figures).

// defaultsConfig is an empty registrar configuration: every default.
const defaultsConfig = "# defaults\n"

// defaultsRegs starts n registrars at their default settings on fixed
// loopback ports, each with every other as a static peer, all at once (so
// that each finds a mentor at once), and waits until they serve.
func defaultsRegs(t *testing.T, n int) []*chaosReg {
	t.Helper()
	regs := make([]*chaosReg, n)
	for i := range regs {
		regs[i] = &chaosReg{
			asap: fmt.Sprintf("tcp://127.0.0.1:%d", freeLoopbackPort(t)),
			enrp: fmt.Sprintf("tcp://127.0.0.1:%d", freeLoopbackPort(t)),
			cfg:  defaultsConfig,
		}
	}
	for i, r := range regs {
		for j, o := range regs {
			if j != i {
				r.peers = append(r.peers, o.enrp)
			}
		}
	}
	for _, r := range regs {
		launchReg(t, r)
	}
	for _, r := range regs {
		waitServing(t, r)
	}
	return regs
}

// rotated returns the ASAP addresses of regs starting with regs[first]:
// an agent that lists its own registrar first.
func rotated(regs []*chaosReg, first int) []string {
	var out []string
	for i := range regs {
		out = append(out, regs[(first+i)%len(regs)].asap)
	}
	return out
}

// homes resolves the test pool at pu and returns the home registrar of each
// PE by user port, and the ports listed twice.
func homes(pu *client) (map[uint16]uint32, []uint16) {
	hr := pu.resolve(chaosAgentsPool, 128)
	m := map[uint16]uint32{}
	var dup []uint16
	for _, e := range hr.Elements {
		if _, ok := m[e.User.Port]; ok {
			dup = append(dup, e.User.Port)
		}
		m[e.User.Port] = e.HomeServer
	}
	return m, dup
}

// waitHomes polls resolutions at every pu until each lists exactly the
// backends' ports with a home accepted by ok; it returns the time taken.
// With always set, every resolution on the way must list every port once
// (no moment where a PE is unresolvable or doubled).
func waitHomes(t *testing.T, pus []*client, ports []uint16, ok func(port uint16, home uint32) bool, d time.Duration, always bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		done := true
		for i, pu := range pus {
			hs, dup := homes(pu)
			complete := len(hs) == len(ports) && len(dup) == 0
			for _, p := range ports {
				h, listed := hs[p]
				complete = complete && listed
				done = done && listed && ok(p, h)
			}
			if always && !complete {
				t.Fatalf("PU %d at %v: resolution %v (twice: %v), want every one of %v exactly once",
					i, time.Since(start), hs, dup, ports)
			}
			done = done && complete
		}
		if done {
			return time.Since(start)
		}
		if time.Since(start) > d {
			for i, pu := range pus {
				hs, _ := homes(pu)
				t.Logf("PU %d: %v", i, hs)
			}
			t.Fatalf("PEs not where wanted within %v", d)
		}
		time.Sleep(2 * time.Millisecond) // polling other processes
	}
}

// spread counts the PEs of the test pool by home registrar (ctl
// handlespace at r).
func spread(t *testing.T, r *chaosReg, regs []*chaosReg) []int {
	t.Helper()
	d := ctlHandlespace(t, r.enrp)
	n := make([]int, len(regs))
	for _, p := range d.Pools {
		for _, e := range p.Elements {
			for i, x := range regs {
				if x.p != nil && e.Home == ServerID(x.p.id).String() {
					n[i]++
				}
			}
		}
	}
	return n
}

// TestE2EDefaultsTakeoverAfterSIGKILL: three registrars with static peers
// and two pe-agents at their default settings; the agents' home registrar
// gets SIGKILL. Its PEs are owned by a survivor and resolvable at both
// survivors within 1 s (measured: milliseconds; BENCHMARKS.md), and they
// never stop being resolvable on the way.
func TestE2EDefaultsTakeoverAfterSIGKILL(t *testing.T) {
	regs := defaultsRegs(t, 3)
	b1, b2 := newChaosBackend(t), newChaosBackend(t)
	startAgent(t, b1, rotated(regs, 0), "", "")
	startAgent(t, b2, []string{regs[0].asap, regs[2].asap, regs[1].asap}, "", "")
	ports := []uint16{b1.port, b2.port}
	pus := []*client{dial(t, regs[0].asap), dial(t, regs[1].asap), dial(t, regs[2].asap)}
	dead := regs[0].p.id
	waitHomes(t, pus, ports, func(_ uint16, h uint32) bool { return h == dead }, 15*time.Second, false)

	killed := time.Now()
	if err := regs[0].p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	survivor := func(_ uint16, h uint32) bool { return h == regs[1].p.id || h == regs[2].p.id }
	took := waitHomes(t, pus[1:], ports, survivor, 5*time.Second, true)
	t.Logf("figure: PEs of the SIGKILLed registrar owned by a survivor and resolvable at both survivors %v after the kill",
		time.Since(killed).Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("took %v, want at most 1 s", took)
	}
	regs[0].p.cmd.Wait()
	waitSame(t, 2, 5*time.Second, regs[1].p, regs[2].p)
	for _, r := range regs[1:] {
		if d := ctlHandlespace(t, r.enrp); dupPE(d) {
			t.Errorf("registrar %s lists a PE twice: %s", r.enrp, d.content())
		}
	}
}

// TestE2EDefaultsPERemoval: at the default settings, a PE leaves the pool
// within a second when its pe-agent is SIGKILLed (the registrar sees the
// connection end and waits its 500 ms grace) and when its backend dies (the
// agent's next check, at most 1 s later, is refused and deregisters it).
func TestE2EDefaultsPERemoval(t *testing.T) {
	r := &chaosReg{asap: fmt.Sprintf("tcp://127.0.0.1:%d", freeLoopbackPort(t)),
		enrp: fmt.Sprintf("tcp://127.0.0.1:%d", freeLoopbackPort(t)), cfg: defaultsConfig}
	startChaosReg(t, r)
	b1, b2 := newChaosBackend(t), newChaosBackend(t)
	a1 := startAgent(t, b1, []string{r.asap}, "", "")
	startAgent(t, b2, []string{r.asap}, "", "")
	pu := dial(t, r.asap)
	all := []uint16{b1.port, b2.port}
	waitHomes(t, []*client{pu}, all, func(uint16, uint32) bool { return true }, 15*time.Second, false)

	gone := func(port uint16) time.Duration {
		start := time.Now()
		for {
			hs, _ := homes(pu)
			if _, ok := hs[port]; !ok {
				return time.Since(start)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("PE at port %d still registered after 5 s", port)
			}
			time.Sleep(2 * time.Millisecond) // polling the registrar process
		}
	}
	a1.cmd.Process.Signal(syscall.SIGKILL)
	d := gone(b1.port)
	t.Logf("figure: PE removed %v after its pe-agent got SIGKILL", d.Round(time.Millisecond))
	if d > 2*time.Second {
		t.Errorf("removal after agent SIGKILL took %v, want at most 2 s", d)
	}
	b2.close()
	d = gone(b2.port)
	t.Logf("figure: PE removed %v after its backend died", d.Round(time.Millisecond))
	if d > 3*time.Second {
		t.Errorf("removal after backend death took %v, want at most 3 s", d)
	}
}

// TestE2EGracefulRestartEveryRegistrar: three registrars at their default
// settings and three pe-agents, each listing a different registrar first.
// Each registrar in turn gets SIGTERM and is started again on its
// addresses. At every survivor every PE stays resolvable exactly once
// throughout; afterwards all registrars agree, with no PE twice; and the
// restarts cost at most one takeover and one re-registration per moved PE
// each (no storm).
func TestE2EGracefulRestartEveryRegistrar(t *testing.T) {
	regs := defaultsRegs(t, 3)
	var ports []uint16
	for i := range regs {
		be := newChaosBackend(t)
		ports = append(ports, be.port)
		startAgent(t, be, rotated(regs, i), "", "")
	}
	any := func(uint16, uint32) bool { return true }
	ownHome := func(p uint16, h uint32) bool { return h == regs[slices.Index(ports, p)].p.id }
	for _, r := range regs {
		waitHomes(t, []*client{dial(t, r.asap)}, ports, ownHome, 15*time.Second, false)
	}
	count := func(r *chaosReg, series string) float64 { return max(metricValue(t, r.p.admin, series), 0) }
	for i, r := range regs {
		var survivors []*chaosReg
		var pus []*client
		for j, o := range regs {
			if j != i {
				survivors = append(survivors, o)
				pus = append(pus, dial(t, o.asap))
			}
		}
		before := map[*chaosReg][2]float64{}
		for _, o := range survivors {
			before[o] = [2]float64{count(o, "rserpool_registrar_enrp_takeovers_total"),
				count(o, `rserpool_registrar_registrations_total{result="ok"}`)}
		}
		if code := r.p.stop(); code != 0 {
			t.Errorf("registrar %s exit code %d", r.asap, code)
		}
		stopped := time.Now()
		// The restarted registrar's own PEs move to the survivors; they stay
		// resolvable there throughout.
		waitHomes(t, pus, ports, func(_ uint16, h uint32) bool { return h != r.p.id }, 10*time.Second, true)
		moved := time.Since(stopped)
		launchReg(t, r)
		for time.Since(stopped) < 2*time.Second { // the survivors keep serving while it starts
			waitHomes(t, pus, ports, any, time.Second, true)
		}
		waitServing(t, r)
		var ps []*proc
		for _, o := range regs {
			ps = append(ps, o.p)
		}
		waitSame(t, len(ports), 10*time.Second, ps...)
		waitHomes(t, pus, ports, any, time.Second, true)
		var takeovers, regsOK float64
		for _, o := range survivors {
			takeovers += count(o, "rserpool_registrar_enrp_takeovers_total") - before[o][0]
			regsOK += count(o, `rserpool_registrar_registrations_total{result="ok"}`) - before[o][1]
		}
		t.Logf("restart of registrar %d: its PEs owned elsewhere after %v; %v takeover(s), %v registration(s) at the survivors",
			i+1, moved.Round(time.Millisecond), takeovers, regsOK)
		if takeovers > 1 {
			t.Errorf("restart of registrar %d caused %v takeovers, want at most 1", i+1, takeovers)
		}
		// Each agent re-registers every 30 s on its own; a PE that moves
		// registers once more.
		if limit := float64(2 * len(ports)); regsOK > limit {
			t.Errorf("restart of registrar %d caused %v registrations at the survivors, want at most %v", i+1, regsOK, limit)
		}
		for _, pu := range pus {
			pu.close()
		}
	}
	for _, r := range regs {
		if d := ctlHandlespace(t, r.enrp); dupPE(d) || d.Elements != len(ports) {
			t.Errorf("registrar %s: %s", r.enrp, d.content())
		}
	}
}

// TestE2ERebalanceAfterReturn: three registrars at their default settings
// and six pe-agents (rebalance_after 2 s), two listing each registrar
// first. One registrar gets SIGKILL: its PEs move to the survivors. It is
// started again: once it has been up for the rebalance period its agents
// move back, and the spread of home registrars is within one PE of even,
// while every PE stays resolvable at the survivors throughout.
func TestE2ERebalanceAfterReturn(t *testing.T) {
	const rebalance = 2 * time.Second
	regs := defaultsRegs(t, 3)
	var ports []uint16
	for i := range 6 {
		be := newChaosBackend(t)
		ports = append(ports, be.port)
		startAgent(t, be, rotated(regs, i%3), fmt.Sprintf("rebalance_after = %q\n", rebalance), "")
	}
	even := func(n []int) bool { // every registrar within one PE of an even share
		for _, c := range n {
			if c < len(ports)/len(regs)-1 || c > (len(ports)+len(regs)-1)/len(regs)+1 {
				return false
			}
		}
		return true
	}
	pus := []*client{dial(t, regs[1].asap), dial(t, regs[2].asap)}
	waitHomes(t, pus, ports, func(uint16, uint32) bool { return true }, 15*time.Second, false)
	wait := func(what string, cond func([]int) bool, d time.Duration) []int {
		t.Helper()
		start := time.Now()
		for {
			waitHomes(t, pus, ports, func(uint16, uint32) bool { return true }, time.Second, true)
			n := spread(t, regs[1], regs)
			if cond(n) {
				return n
			}
			if time.Since(start) > d {
				t.Fatalf("%s: spread %v after %v", what, n, d)
			}
			time.Sleep(50 * time.Millisecond) // polling other processes
		}
	}
	before := wait("start", func(n []int) bool { return slices.Equal(n, []int{2, 2, 2}) }, 10*time.Second)

	regs[0].p.cmd.Process.Signal(syscall.SIGKILL)
	regs[0].p.cmd.Wait()
	dead := regs[0].p.id
	waitHomes(t, pus, ports, func(_ uint16, h uint32) bool { return h != dead }, 5*time.Second, true)
	during := spread(t, regs[1], regs)

	launchReg(t, regs[0])
	waitServing(t, regs[0])
	back := time.Now()
	first := wait("after the return", func(n []int) bool { return n[0] > 0 }, 10*rebalance+10*time.Second)
	firstAt := time.Since(back)
	if firstAt < rebalance {
		t.Errorf("an agent moved back %v after the return, before rebalance_after (%v)", firstAt, rebalance)
	}
	// Up for its rebalance period: rebalance_after, up to half of it more
	// (jitter), and one check period; plus slack for a loaded machine.
	period := rebalance + rebalance/2 + rebalance/4 + 2*time.Second
	for time.Since(back) < period {
		waitHomes(t, pus, ports, func(uint16, uint32) bool { return true }, time.Second, true)
		time.Sleep(20 * time.Millisecond) // the agents move on their own timers
	}
	after := spread(t, regs[1], regs)
	t.Logf("figure: spread of home registrars before %v, with registrar 1 down %v, %v after its return %v, %v after it %v (rebalance_after %v)",
		before, during, firstAt.Round(100*time.Millisecond), first, period, after, rebalance)
	if !even(after) {
		t.Errorf("spread %v %v after the return, want every registrar within one PE of %d", after, period, len(ports)/len(regs))
	}
	final := wait("settled", func(n []int) bool { return slices.Equal(n, []int{2, 2, 2}) }, 3*rebalance+5*time.Second)
	t.Logf("settled spread %v", final)
	for _, r := range regs {
		if d := ctlHandlespace(t, r.enrp); dupPE(d) || d.Elements != len(ports) {
			t.Errorf("registrar %s: %s", r.enrp, d.content())
		}
	}
}
