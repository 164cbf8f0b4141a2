package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The fault scenarios, each measured on the rserpool proxy and on HAProxy
// at the same time with the same load (new connections at a fixed rate):
//
//   - black hole: a pool of two PEs, one of which drops every SYN (an
//     nftables rule, added when the measurement starts). rserpool: pe-agent
//     registrations (the black hole's without health check), default
//     connect_timeout (1 s), retries and hedging. HAProxy: round robin,
//     "timeout connect 1s", "retries 3", "option redispatch", health checks
//     (check, inter 2s, fall 3).
//   - hung PE: a pool of three PEs, one SIGSTOPped when the measurement
//     starts (its kernel still accepts connections and requests).
//     rserpool: replay_buffer and first_byte_timeout 200 ms. HAProxy: the
//     same three servers with health checks and "timeout server 1s".
//
// They need root and a network namespace of their own (for the nftables
// rule and 127.0.0.2/.3); the orchestrator runs "proxybench faults" in a
// new one.

// faultsResult is what "proxybench faults" prints as JSON: per scenario,
// per path ("proxy", "haproxy").
type faultsResult struct {
	Base      map[string]result `json:"base"`      // before the black hole
	BlackHole map[string]result `json:"blackhole"` // during it
	Hung      map[string]result `json:"hung"`      // one of three PEs stopped
}

type faultsConfig struct {
	Rserpool, HAProxy string
	Duration          time.Duration
	Rate              float64
	Conns             int
}

// runFaultsCmd is "proxybench faults": it must run as root in a network
// namespace of its own.
func runFaultsCmd(args []string) int {
	fs := flag.NewFlagSet("faults", flag.ContinueOnError)
	var cfg faultsConfig
	fs.StringVar(&cfg.Rserpool, "rserpool", "", "rserpool `binary`")
	fs.StringVar(&cfg.HAProxy, "haproxy", "haproxy", "haproxy `binary`")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "duration of each fault measurement")
	fs.Float64Var(&cfg.Rate, "rate", 200, "new connections per second, per path")
	fs.IntVar(&cfg.Conns, "conns", 8, "concurrent clients per path")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("proc", "faults")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := faults(ctx, log, cfg)
	if err != nil {
		log.Error("faults", "err", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

func faults(ctx context.Context, log *slog.Logger, cfg faultsConfig) (*faultsResult, error) {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip link set lo up: %v: %s", err, out)
	}
	dir, err := os.MkdirTemp("", "proxybench-faults-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	g := &procGroup{dir: dir}
	defer g.stopAll()
	start := g.start
	backend := func(name, listen string) (*proc, string, error) {
		first := make(chan string, 1)
		p, err := start(name, first, self, "backend", "-listen", listen)
		if err != nil {
			return nil, "", err
		}
		addr, err := waitListening(ctx, p, first)
		return p, addr, err
	}
	_, live, err := backend("live", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	_, holeH, err := backend("hole-haproxy", "127.0.0.2:0")
	if err != nil {
		return nil, err
	}
	_, holeP, err := backend("hole-proxy", "127.0.0.3:0")
	if err != nil {
		return nil, err
	}
	var hung []string
	var victim *proc
	for i := range 3 {
		p, a, err := backend(fmt.Sprintf("hung%d", i), "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		hung = append(hung, a)
		if i == 1 {
			victim = p
		}
	}

	// rserpool: registrar, pe-agents, proxy.
	regAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	reg := "tcp://" + regAddr
	// The black holes are on 127.0.0.2/.3, registered from 127.0.0.1.
	regConf := filepath.Join(dir, "registrar.toml")
	if err := os.WriteFile(regConf, []byte("[announce]\nenabled = false\n[registration]\nrequire_address_subset = false\n"), 0o644); err != nil {
		return nil, err
	}
	rp, err := start("registrar", nil, cfg.Rserpool, "registrar", "-config", regConf, "-asap", reg)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, rp, regAddr, 10*time.Second, probeListen); err != nil {
		return nil, err
	}
	agent := func(name, pool, backend string, health bool) error {
		conf := fmt.Sprintf("registrars = [%q]\n[[element]]\npool = %q\nbackend = %q\n[element.health]\ndisable = %v\n", reg, pool, backend, !health)
		path := filepath.Join(dir, name+".toml")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return err
		}
		_, err := start(name, nil, cfg.Rserpool, "pe-agent", "-config", path)
		return err
	}
	if err := agent("agent-live", "BH", live, true); err != nil {
		return nil, err
	}
	if err := agent("agent-hole", "BH", holeP, false); err != nil {
		return nil, err
	}
	for i, a := range hung {
		if err := agent(fmt.Sprintf("agent-hung%d", i), "HUNG", a, true); err != nil {
			return nil, err
		}
	}
	for pool, n := range map[string]int{"BH": 2, "HUNG": 3} {
		if err := waitPEs(ctx, cfg.Rserpool, reg, pool, n); err != nil {
			return nil, err
		}
	}
	proxyBH, err := freePort()
	if err != nil {
		return nil, err
	}
	proxyHung, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`registrars = [%q]
[[listener]]
listen = %q
pool = "BH"
[[listener]]
listen = %q
pool = "HUNG"
replay_buffer = 4096
first_byte_timeout = "200ms"
`, reg, proxyBH, proxyHung)
	confPath := filepath.Join(dir, "proxy.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	pp, err := start("proxy", nil, cfg.Rserpool, "proxy", "-config", confPath)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, pp, proxyHung, 30*time.Second, probeEcho); err != nil {
		return nil, err
	}

	// HAProxy.
	haBH, err := freePort()
	if err != nil {
		return nil, err
	}
	haHung, err := freePort()
	if err != nil {
		return nil, err
	}
	var hc strings.Builder
	fmt.Fprintf(&hc, `global
    maxconn 4096
defaults
    mode tcp
    timeout connect 1s
    timeout client 60s
    timeout server 1s
    retries 3
    option redispatch
frontend bh
    bind %s
    default_backend bh
backend bh
    balance roundrobin
    server live %s check
    server hole %s check
frontend hung
    bind %s
    default_backend hung
backend hung
    balance roundrobin
`, haBH, live, holeH, haHung)
	for i, a := range hung {
		fmt.Fprintf(&hc, "    server h%d %s check\n", i, a)
	}
	hcPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(hcPath, []byte(hc.String()), 0o644); err != nil {
		return nil, err
	}
	hp, err := start("haproxy", nil, cfg.HAProxy, "-db", "-f", hcPath)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, hp, haHung, 10*time.Second, probeEcho); err != nil {
		return nil, err
	}

	both := func(targets map[string]string, d time.Duration) (map[string]result, error) {
		out := map[string]result{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		var errs []error
		lc := benchConfig{Duration: d, Conns: cfg.Conns, Size: 64, Rate: cfg.Rate}
		for path, target := range targets {
			wg.Go(func() {
				res, err := loadOnce(ctx, self, lc, measCRRLat, target)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", path, err))
					return
				}
				out[path] = res
			})
		}
		wg.Wait()
		return out, errors.Join(errs...)
	}
	res := &faultsResult{}
	bh := map[string]string{pathProxy: proxyBH, pathHAProxy: haBH}
	if res.Base, err = both(bh, 2*time.Second); err != nil {
		return nil, err
	}
	log.Info("black hole: dropping SYNs to the second PE of each path")
	for _, args := range [][]string{
		{"add", "table", "inet", "bh"},
		{"add chain inet bh out { type filter hook output priority 0 ; }"},
		{"add rule inet bh out ip daddr { 127.0.0.2, 127.0.0.3 } tcp flags & (syn | ack) == syn drop"},
	} {
		if out, err := exec.Command("nft", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if res.BlackHole, err = both(bh, cfg.Duration); err != nil {
		return nil, err
	}
	log.Info("hung PE: SIGSTOP one of three")
	victim.cmd.Process.Signal(syscall.SIGSTOP)
	res.Hung, err = both(map[string]string{pathProxy: proxyHung, pathHAProxy: haHung}, cfg.Duration)
	victim.cmd.Process.Signal(syscall.SIGCONT)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// waitPEs waits until the registrar lists n PEs in pool.
func waitPEs(ctx context.Context, bin, reg, pool string, n int) error {
	want := fmt.Sprintf("%d PE(s)", n)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := exec.CommandContext(ctx, bin, "ctl", "resolve", "-registrar", reg, pool).CombinedOutput()
		if strings.Contains(string(out), want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pool %s: want %d PEs; ctl resolve: %s", pool, n, out)
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// runFaultsNetns runs "proxybench faults" in a new network namespace and
// decodes its result.
func runFaultsNetns(ctx context.Context, self string, cfg faultsConfig) (*faultsResult, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the fault scenarios need root (a network namespace and nftables)")
	}
	cmd := exec.CommandContext(ctx, self, "faults", "-rserpool", cfg.Rserpool, "-haproxy", cfg.HAProxy,
		"-duration", cfg.Duration.String(), "-rate", fmt.Sprint(cfg.Rate), "-conns", fmt.Sprint(cfg.Conns))
	attr := childAttr()
	attr.Cloneflags = syscall.CLONE_NEWNET
	cmd.SysProcAttr = attr
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("faults: %v: %s", err, lastLines(stderr.String(), 15))
	}
	var res faultsResult
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		return nil, fmt.Errorf("faults output %q: %w", stdout.String(), err)
	}
	return &res, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
