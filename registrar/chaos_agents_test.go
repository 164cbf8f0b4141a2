package registrar

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/transport"
)

// chaosAgentsRegConfig: short ENRP timers as in the other ENRP e2e tests,
// and keep-alives (30 s) longer than the test, so that a PE without a live
// agent can leave the handlespace only through ENRP, connection loss or
// deregistration, never by a keep-alive timeout that would hide a stale
// entry.
const chaosAgentsRegConfig = `
[timers]
keepalive_interval = "30s"
keepalive_timeout = "30s"
[enrp]
peer_heartbeat = "200ms"
max_time_last_heard = "600ms"
max_time_no_response = "400ms"
takeover_expiry = "1s"
mentor_discovery = "1s"
table_chunk_pes = 1024
table_chunk_bytes = 60000
`

const chaosAgentsPool = "ChaosAgents"

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment
// ago; registrars of this test keep their addresses across restarts, as
// the agents and the PU know them by address. The port is taken below the
// kernel's ephemeral range: a port from that range may become the source
// port of some outgoing connection while its registrar is down, and the
// restarted registrar then cannot listen on it.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 12000 {
				low = n
			}
		}
	}
	for range 1000 {
		port := 10000 + rand.IntN(low-10000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// chaosReg is one registrar slot: fixed ASAP and ENRP addresses, the
// running process (nil while down) and when it comes back. cfg is the TOML
// its processes run with; empty means chaosAgentsRegConfig.
type chaosReg struct {
	asap, enrp string
	peers      []string
	cfg        string
	p          *proc
	upAt       time.Time
	serving    chan bool // launchReg: true once the process serves ASAP
	ready      string    // launchReg: the process's ready file
}

// startChaosReg runs "rserpool registrar" on the slot's fixed addresses
// (startProc binds port 0, which a restart cannot reuse) and waits until it
// serves ASAP.
func startChaosReg(t *testing.T, r *chaosReg) {
	t.Helper()
	launchReg(t, r)
	waitServing(t, r)
}

// launchReg starts the slot's registrar process without waiting for it
// (registrars with static peers start together so that each finds a
// mentor at once); waitServing waits.
func launchReg(t *testing.T, r *chaosReg) {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "registrar.toml")
	cfg := r.cfg
	if cfg == "" {
		cfg = chaosAgentsRegConfig
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready.json")
	args := []string{"registrar", "-config", cfgPath, "-asap", r.asap, "-enrp", r.enrp,
		"-admin", "127.0.0.1:0", "-ready-file", ready}
	for _, p := range r.peers {
		args = append(args, "-peer", p)
	}
	cmd := exec.Command(rserpoolBin(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, lines: make(chan string, 1024), cfg: cfgPath, asap: r.asap, enrp: r.enrp}
	serving := make(chan bool, 1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			if testing.Verbose() {
				t.Log("registrar", r.asap, line)
			}
			if !signalled && strings.Contains(line, "serving ASAP") {
				signalled = true
				serving <- true
			}
			select {
			case p.lines <- line:
			default:
			}
		}
		if !signalled {
			serving <- false
		}
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
		p.wg.Wait()
	})
	r.p, r.serving, r.ready = p, serving, ready
}

func waitServing(t *testing.T, r *chaosReg) {
	t.Helper()
	select {
	case ok := <-r.serving:
		if !ok {
			t.Fatalf("registrar %s exited before serving", r.asap)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("registrar %s did not start", r.asap)
	}
	var ri readyInfo
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) { // written once Start returned
		b, err := os.ReadFile(r.ready)
		if err == nil {
			err = json.Unmarshal(b, &ri)
		}
		if err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("registrar %s ready file: %v", r.asap, err)
		}
	}
	if id, err := strconv.ParseUint(strings.TrimPrefix(ri.ID, "0x"), 16, 32); err == nil {
		r.p.id = uint32(id)
	}
	r.p.admin, r.p.pid = ri.Admin, ri.PID
}

// chaosBackend is a TCP listener standing for a real server: it accepts
// and closes, which is all the agent's health check needs.
type chaosBackend struct {
	ln   net.Listener
	port uint16
	wg   sync.WaitGroup
}

func newChaosBackend(t *testing.T) *chaosBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &chaosBackend{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(b.close)
	return b
}

// close stops the backend: connections to its port are refused from now on.
func (b *chaosBackend) close() {
	b.ln.Close()
	b.wg.Wait()
}

// chaosAgent is a running "rserpool pe-agent" process registering one
// backend, with the last lines of its log for a failure report.
type chaosAgent struct {
	be   *chaosBackend
	cmd  *exec.Cmd
	wg   sync.WaitGroup
	mu   sync.Mutex
	logs []string
	done bool
}

func (a *chaosAgent) tail(n int) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.logs[max(0, len(a.logs)-n):])
}

func startChaosAgent(t *testing.T, be *chaosBackend, regs []string) *chaosAgent {
	t.Helper()
	return startAgent(t, be, regs, `reregistration_interval = "2s"
response_timeout = "1s"
connect_timeout = "500ms"
retry_interval = "200ms"
drain = "-1s"
`, `[element.health]
interval = "200ms"
timeout = "200ms"
rise = 1
fall = 2
`)
}

// startAgent runs "rserpool pe-agent" registering be in chaosAgentsPool at
// regs (in that order), with the given top-level and [[element]] TOML
// lines (empty: the defaults).
func startAgent(t *testing.T, be *chaosBackend, regs []string, top, element string) *chaosAgent {
	t.Helper()
	quoted := make([]string, len(regs))
	for i, r := range regs {
		quoted[i] = fmt.Sprintf("%q", r)
	}
	cfg := fmt.Sprintf(`registrars = [%s]
%s
[[element]]
pool = %q
backend = "127.0.0.1:%d"
%s`, strings.Join(quoted, ", "), top, chaosAgentsPool, be.port, element)
	path := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(rserpoolBin(t), "pe-agent", "-config", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &chaosAgent{be: be, cmd: cmd}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			a.mu.Lock()
			a.logs = append(a.logs, sc.Text())
			if len(a.logs) > 400 {
				a.logs = slices.Delete(a.logs, 0, 200)
			}
			a.mu.Unlock()
		}
	}()
	t.Cleanup(func() { a.stop(syscall.SIGKILL) })
	return a
}

// stop signals the agent and waits (bounded) for it to exit; it reports
// whether it exited within 10 s.
func (a *chaosAgent) stop(sig syscall.Signal) bool {
	if a.done {
		return true
	}
	a.done = true
	a.cmd.Process.Signal(sig)
	exited := make(chan struct{})
	go func() { a.cmd.Wait(); close(exited) }()
	ok := true
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		ok = false
		a.cmd.Process.Kill()
		<-exited
	}
	a.wg.Wait()
	return ok
}

// dumpPorts lists the user ports of a dump's PEs.
func dumpPorts(d dumpJSON) []uint16 {
	var ps []uint16
	for _, p := range d.Pools {
		for _, e := range p.Elements {
			ps = append(ps, e.Port)
		}
	}
	return ps
}

// waitAgentsHandlespace polls ctl handlespace at every registrar until each
// holds exactly one PE per live backend (pool + port; all backends are on
// 127.0.0.1), no other, and all dumps are equal including the owner
// checksums. It returns how long that took.
func waitAgentsHandlespace(t *testing.T, regs []*chaosReg, backends []uint16, d time.Duration) time.Duration {
	t.Helper()
	want := make([]string, len(backends))
	for i, p := range backends {
		want[i] = fmt.Sprintf("%s:%d", chaosAgentsPool, p)
	}
	slices.Sort(want)
	start := time.Now()
	for {
		var dumps []dumpJSON
		ok := true
		for _, r := range regs {
			dumps = append(dumps, ctlHandlespace(t, r.enrp))
		}
		for _, x := range dumps {
			var got []string
			for _, p := range x.Pools {
				for _, e := range p.Elements {
					got = append(got, fmt.Sprintf("%s:%d", p.Handle, e.Port))
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) || x.content() != dumps[0].content() || len(x.Checksums) == 0 {
				ok = false
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Logf("want backends %v", want)
			for i, x := range dumps {
				t.Logf("registrar %s: %s", regs[i].enrp, x.content())
			}
			t.Fatalf("registrars did not converge on the live agents within %v", d)
		}
		time.Sleep(100 * time.Millisecond) // polling other processes
	}
}

// TestE2EENRPChaosAgents: three registrars (static peers), real pe-agent
// processes configured with all three, and a PU (pucache, all three
// registrars) resolving continuously. A bounded loop (40 operations or
// 75 s) picks at random: SIGKILL a registrar (keeping one alive) and
// restart it on the same addresses after 0.2-1.5 s; SIGKILL an agent (its
// PE must leave a live registrar's handlespace within 5 s), half of the
// time restarting it on the same backend (new PE ID); SIGTERM an agent (deregisters); start an
// agent. At the end every registrar holds exactly one PE per live backend,
// the dumps and owner checksums agree, and the PU was never without a
// successful resolution for more than 5 s.
func TestE2EENRPChaosAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run skipped with -short")
	}
	const (
		maxOps    = 40
		maxChaos  = 75 * time.Second
		puGapMax  = 5 * time.Second
		convergeD = 20 * time.Second
		peGoneMax = 5 * time.Second
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 6))

	regs := make([]*chaosReg, 3)
	for i := range regs {
		regs[i] = &chaosReg{
			asap: fmt.Sprintf("tcp://127.0.0.1:%d", freeLoopbackPort(t)),
			enrp: fmt.Sprintf("tcp://127.0.0.1:%d", freeLoopbackPort(t)),
		}
	}
	var asapAddrs []string
	for i, r := range regs {
		asapAddrs = append(asapAddrs, r.asap)
		for j, o := range regs {
			if j != i {
				r.peers = append(r.peers, o.enrp)
			}
		}
	}
	for _, r := range regs {
		startChaosReg(t, r)
	}

	var agents []*chaosAgent
	var log []string
	failWithLogs := func(format string, a ...any) {
		t.Helper()
		for _, l := range log {
			t.Log("op:", l)
		}
		for _, a := range agents {
			for _, l := range a.tail(15) {
				t.Logf("agent %d: %s", a.be.port, l)
			}
		}
		t.Fatalf(format, a...)
	}
	startAgent := func(be *chaosBackend) {
		// Each agent lists the registrars in its own order so that homes spread.
		order := slices.Clone(asapAddrs)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		agents = append(agents, startChaosAgent(t, be, order))
	}
	livePorts := func() []uint16 {
		var ps []uint16
		for _, a := range agents {
			ps = append(ps, a.be.port)
		}
		return ps
	}
	for range 6 {
		startAgent(newChaosBackend(t))
	}
	waitAgentsHandlespace(t, regs, livePorts(), convergeD)

	// The PU resolves through pucache; Refresh asks a registrar every time
	// (no cached answer counts) and the cache hunts across all three.
	cache, err := pucache.New(pucache.Config{Registrars: mustAddrs(t, asapAddrs), RequestTimeout: time.Second,
		ConnectTimeout: 500 * time.Millisecond}, pucache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	if err := cache.Start(); err != nil {
		t.Fatal(err)
	}
	pool := cache.Pool(chaosAgentsPool)
	type puResult struct {
		ok, failed int
		longest    time.Duration
	}
	stopPU := make(chan struct{})
	stop := sync.OnceFunc(func() { close(stopPU) })
	defer stop() // a failing test stops the PU too
	puDone := make(chan puResult, 1)
	go func() {
		var r puResult
		last := time.Now()
		for {
			select {
			case <-stopPU:
				r.longest = max(r.longest, time.Since(last))
				puDone <- r
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := pool.Refresh(ctx)
			cancel()
			now := time.Now()
			if err == nil {
				r.ok++
				r.longest = max(r.longest, now.Sub(last))
				last = now
			} else {
				r.failed++
			}
			time.Sleep(20 * time.Millisecond) // a PU's request pace
		}
	}()

	var peGone time.Duration // longest removal of a SIGKILLed agent's PE
	var ops, regKills, agentKills, agentRestarts, agentTerms, agentStarts int
	alive := func() int {
		n := 0
		for _, r := range regs {
			if r.p != nil {
				n++
			}
		}
		return n
	}
	restartDue := func(all bool) {
		for _, r := range regs {
			if r.p == nil && (all || !time.Now().Before(r.upAt)) {
				startChaosReg(t, r)
				log = append(log, "restart registrar "+r.asap)
			}
		}
	}
	begin := time.Now()
	for ops < maxOps && time.Since(begin) < maxChaos {
		restartDue(false)
		ops++
		switch rng.IntN(5) {
		case 0, 1: // SIGKILL a registrar, come back later on the same addresses
			if alive() < 2 {
				ops--
				break
			}
			var up []*chaosReg
			for _, r := range regs {
				if r.p != nil {
					up = append(up, r)
				}
			}
			r := up[rng.IntN(len(up))]
			r.p.cmd.Process.Signal(syscall.SIGKILL)
			r.p.cmd.Wait()
			r.p = nil
			r.upAt = time.Now().Add(200*time.Millisecond + time.Duration(rng.Int64N(int64(1300*time.Millisecond))))
			regKills++
			log = append(log, "SIGKILL registrar "+r.asap)
		case 2: // SIGKILL an agent: its PE goes with its connection
			if len(agents) <= 2 {
				ops--
				break
			}
			k := rng.IntN(len(agents))
			a := agents[k]
			a.stop(syscall.SIGKILL)
			agents = slices.Delete(agents, k, k+1)
			agentKills++
			log = append(log, fmt.Sprintf("SIGKILL agent %d", a.be.port))
			// Its PE leaves the handlespace: connection loss at its home, or
			// keep-alive failure at whoever took it over.
			var up *chaosReg
			for _, r := range regs {
				if r.p != nil {
					up = r
				}
			}
			killedAt := time.Now()
			for slices.Contains(dumpPorts(ctlHandlespace(t, up.enrp)), a.be.port) {
				if time.Since(killedAt) > peGoneMax {
					failWithLogs("PE of SIGKILLed agent %d still at %s after %v", a.be.port, up.enrp, peGoneMax)
				}
				time.Sleep(50 * time.Millisecond) // polling another process
			}
			peGone = max(peGone, time.Since(killedAt))
			if rng.IntN(2) == 0 {
				startAgent(a.be)
				agentRestarts++
				log = append(log, fmt.Sprintf("restart agent %d", a.be.port))
			}
		case 3: // SIGTERM an agent: it deregisters
			if len(agents) <= 2 {
				ops--
				break
			}
			k := rng.IntN(len(agents))
			a := agents[k]
			if !a.stop(syscall.SIGTERM) {
				failWithLogs("agent %d did not exit within 10 s of SIGTERM", a.be.port)
			}
			if code := a.cmd.ProcessState.ExitCode(); code != 0 {
				failWithLogs("agent %d exit code %d after SIGTERM", a.be.port, code)
			}
			agents = slices.Delete(agents, k, k+1)
			agentTerms++
			log = append(log, fmt.Sprintf("SIGTERM agent %d", a.be.port))
		default: // a new agent with a new backend
			if len(agents) >= 10 {
				ops--
				break
			}
			startAgent(newChaosBackend(t))
			agentStarts++
			log = append(log, fmt.Sprintf("start agent %d", agents[len(agents)-1].be.port))
		}
		time.Sleep(200*time.Millisecond + time.Duration(rng.Int64N(int64(600*time.Millisecond)))) // time between faults
	}
	restartDue(true)
	lastOp := time.Now()
	func() {
		defer func() {
			if t.Failed() {
				for _, l := range log {
					t.Log("op:", l)
				}
			}
		}()
		waitAgentsHandlespace(t, regs, livePorts(), convergeD)
	}()
	converge := time.Since(lastOp)
	stop()
	pu := <-puDone

	if pu.longest > puGapMax {
		failWithLogs("the PU went %v without a successful resolution (bound %v)", pu.longest, puGapMax)
	}
	d0 := ctlHandlespace(t, regs[0].enrp)
	var owners []string
	for _, c := range d0.Checksums {
		owners = append(owners, fmt.Sprintf("%s=%s/%d", c.Owner, c.Checksum, c.Elements))
	}
	b, _ := json.Marshal(owners)
	t.Logf("chaos with agents: %d operations in %v, %d registrar kills, %d agent kills (%d restarted), %d agent terms, %d agent starts; "+
		"%d live agents; PU %d resolutions, %d failed, longest gap %v (bound %v); SIGKILLed agent's PE gone within %v (bound %v); converged %v after the last operation; owners %s",
		ops, lastOp.Sub(begin).Round(time.Millisecond), regKills, agentKills, agentRestarts, agentTerms, agentStarts,
		len(agents), pu.ok, pu.failed, pu.longest.Round(time.Millisecond), puGapMax, peGone.Round(time.Millisecond), peGoneMax, converge.Round(time.Millisecond), b)
}

func mustAddrs(t *testing.T, list []string) []transport.Addr {
	t.Helper()
	addrs, err := transport.ParseAddrs(list)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}
