//go:build linux

package registrar

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// blackHole drops every packet in and out of host i with nftables in its
// own namespace: its processes live on, but nothing they send arrives and
// nothing reaches them (no reset, no refusal): a silent failure.
func (lab *netLab) blackHole(i int) {
	t := lab.t
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nft (nftables) is not installed")
		}
		t.Skip("nft (nftables) is not installed")
	}
	for _, args := range [][]string{
		{"add", "table", "inet", "blackhole"},
		{"add", "chain", "inet", "blackhole", "in", "{ type filter hook input priority 0 ; policy drop ; }"},
		{"add", "chain", "inet", "blackhole", "out", "{ type filter hook output priority 0 ; policy drop ; }"},
	} {
		cmd := exec.Command("ip", append([]string{"netns", "exec", lab.hosts[i], "nft"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft %s in %s: %v: %s", strings.Join(args, " "), lab.hosts[i], err, out)
		}
	}
}

// homeOf returns the home ("0x...") of the PE with user port port in
// registrar i's handlespace, "" when it has none, and whether the dump
// worked.
func (lab *netLab) homeOf(i int, port uint16) (string, bool) {
	d, err := lab.dump(i)
	if err != nil {
		return "", false
	}
	for _, p := range d.Pools {
		for _, e := range p.Elements {
			if e.Port == port {
				return e.Home, true
			}
		}
	}
	return "", true
}

// TestNetnsDefaultsBlackHoles: registrars at their default settings on
// three hosts (static peers), pe-agents on two more. Silent failures are
// found by the timers, as they must be: a registrar whose host drops every
// packet is taken over after max_time_last_heard + max_time_no_response
// (5 s + 5 s, minus the time since it was last heard); a PE whose host
// drops every packet is removed after keepalive_interval +
// keepalive_timeout (5 s + 5 s, minus the time since its last ack). The
// figures go into BENCHMARKS.md.
func TestNetnsDefaultsBlackHoles(t *testing.T) {
	if testing.Short() {
		t.Skip("black-hole figures take half a minute")
	}
	lab := newNetLab(t, 5)
	dir := t.TempDir()
	cfg := dir + "/registrar.toml"
	if err := os.WriteFile(cfg, []byte(defaultsConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	enrp := func(i int) string { return "tcp://" + lab.addr(i) + ":9901" }
	asap := func(i int) string { return "tcp://" + lab.addr(i) + ":3863" }
	for i := range 3 {
		args := []string{"registrar", "-config", cfg, "-asap", asap(i), "-enrp", enrp(i), "-admin", lab.addr(i) + ":9464"}
		for j := range 3 {
			if j != i {
				args = append(args, "-peer", enrp(j))
			}
		}
		lab.start(i, fmt.Sprintf("registrar%d", i+1), args...)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// An agent at default settings on host h, listing registrars regs.
	agent := func(h int, port int, regs ...int) {
		lab.startCmd(h, fmt.Sprintf("backend%d", port), "env",
			fmt.Sprintf("%s=%s:%d", backendEnv, lab.addr(h), port), self)
		args := []string{"pe-agent", "-pool", "BlackHolePool", "-backend", fmt.Sprintf("%s:%d", lab.addr(h), port)}
		for _, r := range regs {
			args = append(args, "-registrar", asap(r))
		}
		lab.start(h, fmt.Sprintf("pe-agent%d", port), args...)
	}
	agent(3, 8001, 0, 1, 2)
	agent(4, 8002, 1, 2, 0)
	lab.waitAgree(2, 20*time.Second, 0, 1, 2)
	// Running agents have seen their home's keep-alives (every 5 s) and
	// know its period; a black hole is noticed by their absence.
	time.Sleep(6 * time.Second)
	home := func(i int, port uint16) string {
		h, _ := lab.homeOf(i, port)
		return h
	}
	r0 := home(1, 8001)
	if r0 == "" || home(1, 8002) == r0 {
		t.Fatalf("agents' homes: %q and %q, want registrar 1 and registrar 2", r0, home(1, 8002))
	}

	// A black-holed registrar: the survivors take over its PE.
	lab.blackHole(0)
	holed := time.Now()
	for {
		h1, h2 := home(1, 8001), home(2, 8001)
		if h1 != "" && h1 != r0 && h1 == h2 {
			break
		}
		if time.Since(holed) > 20*time.Second {
			t.Fatalf("PE of the black-holed registrar %s not taken over after 20 s (homes %q, %q)", r0, h1, h2)
		}
		time.Sleep(50 * time.Millisecond) // polling the registrars' namespaces
	}
	took := time.Since(holed)
	t.Logf("figure: PE of the black-holed registrar owned by a survivor at both survivors %v after the black hole",
		took.Round(10*time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("takeover after a black hole took %v, want at most 15 s", took)
	}
	// The agent sees no keep-alives from its home any more: it re-registers
	// at a survivor (its next registrar) before the winner of the takeover,
	// which cannot reach it, gives the PE up (keepalive_interval + timeout
	// after the takeover). The PE stays resolvable throughout.
	taken := time.Now()
	r1 := ""
	for d, _ := lab.dump(1); r1 == ""; d, _ = lab.dump(1) {
		r1 = d.Registrar
	}
	moved := time.Duration(0)
	for time.Since(taken) < 12*time.Second {
		h1, h2 := home(1, 8001), home(2, 8001)
		if h1 == "" || h2 == "" {
			t.Fatalf("PE of the black-holed registrar gone %v after the takeover (homes %q, %q)", time.Since(taken), h1, h2)
		}
		if moved == 0 && h1 == r1 && h2 == r1 {
			moved = time.Since(holed)
		}
		time.Sleep(100 * time.Millisecond) // polling the registrars' namespaces
	}
	if moved == 0 {
		t.Fatal("the agent of the black-holed registrar did not register at its next registrar")
	}
	t.Logf("figure: the agent of the black-holed registrar re-registered at its next registrar %v after the black hole",
		moved.Round(100*time.Millisecond))

	// A black-holed PE host: its registrar removes the PE.
	lab.blackHole(4)
	holed = time.Now()
	for home(1, 8002) != "" || home(2, 8002) != "" {
		if time.Since(holed) > 20*time.Second {
			t.Fatal("PE of the black-holed host still registered after 20 s")
		}
		time.Sleep(50 * time.Millisecond) // polling the registrars' namespaces
	}
	took = time.Since(holed)
	t.Logf("figure: PE of the black-holed host removed at both registrars %v after the black hole", took.Round(10*time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("removal of a black-holed PE took %v, want at most 15 s", took)
	}
}
