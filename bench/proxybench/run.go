package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// benchConfig is one harness run.
type benchConfig struct {
	Runs     int
	Duration time.Duration
	Paths    []string
	Meas     []string // measurements to run, from allMeas
	Write    string   // markdown file whose marked section is regenerated; empty = print only
	Conns    int
	Size     int
	Rate     float64
	Rserpool string   // rserpool binary; empty = build ./cmd/rserpool
	HAProxy  string   // haproxy binary name or path
	ProxyArg []string // extra arguments of "rserpool proxy", e.g. -cpuprofile FILE
	Keep     bool     // keep the work directory with the daemons' logs
	Syscalls bool     // count system calls per operation with strace
	Faults   bool     // run the black-hole and hung-PE scenarios
}

func runBench(args []string) int {
	fs := flag.NewFlagSet("proxybench", flag.ContinueOnError)
	var cfg benchConfig
	only := fs.String("only", strings.Join(defaultPaths, ","), "comma-separated `paths` to measure: direct, proxy, haproxy, goroutine (the proxy on its goroutine relay), relay (a plain Go io.Copy relay)")
	meas := fs.String("meas", strings.Join(allMeas, ","), "comma-separated `measurements`: bulk, rr, crr, lat")
	fs.IntVar(&cfg.Runs, "runs", 5, "runs of every measurement; the table shows medians")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "duration of each measurement")
	fs.StringVar(&cfg.Write, "write", "", "regenerate the proxybench section of this markdown `file` (e.g. BENCHMARKS.md)")
	fs.IntVar(&cfg.Conns, "conns", 16, "connections (b, d) and concurrent clients (c)")
	fs.IntVar(&cfg.Size, "size", 64, "request/response size in bytes (b, c, d)")
	fs.Float64Var(&cfg.Rate, "rate", 5000, "total request rate for the latency measurement (d), req/s")
	fs.StringVar(&cfg.Rserpool, "rserpool", "", "rserpool `binary` (default: build ./cmd/rserpool)")
	fs.StringVar(&cfg.HAProxy, "haproxy", "haproxy", "haproxy `binary`")
	proxyArgs := fs.String("proxy-args", "", "extra `args` for rserpool proxy, split at spaces (e.g. \"-cpuprofile /tmp/proxy.prof\")")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the work directory with the daemons' logs")
	_, straceErr := exec.LookPath("strace")
	fs.BoolVar(&cfg.Syscalls, "syscalls", straceErr == nil, "count system calls per request and per connection with strace (one extra run per path)")
	fs.BoolVar(&cfg.Faults, "faults", os.Geteuid() == 0, "run the black-hole and hung-PE scenarios (root: a network namespace and nftables)")
	mode := fs.String("mode", "throughput", "\"throughput\" (bulk, rr, crr, lat) or \"idle\" (resident memory per relayed connection; paths proxy, goroutine, haproxy, relay)")
	steps := fs.String("steps", "1000,4000,9000", "idle mode: connection `counts`, ascending")
	var ic idleConfig
	fs.Float64Var(&ic.Active, "active", 0.1, "idle mode: share of the connections sending requests in the active sequence")
	fs.Float64Var(&ic.Rate, "active-rate", 10, "idle mode: requests per second per active connection")
	fs.DurationVar(&ic.ActiveFor, "active-for", 5*time.Second, "idle mode: how long each active step runs")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./bench/proxybench [flags]   (from the repository root)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.ProxyArg = strings.Fields(*proxyArgs)
	var err error
	if cfg.Paths, err = parseList("-only", *only, allPaths); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		return 2
	}
	if cfg.Meas, err = parseList("-meas", *meas, allMeas); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		return 2
	}
	if cfg.Runs < 1 || cfg.Duration <= 0 || cfg.Duration > 10*time.Minute || cfg.Conns < 1 || cfg.Size < 1 || cfg.Rate <= 0 {
		fmt.Fprintln(os.Stderr, "proxybench: need -runs ≥ 1, 0 < -duration ≤ 10m, -conns ≥ 1, -size ≥ 1, -rate > 0")
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	switch *mode {
	case "throughput":
	case "idle":
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["only"] {
			cfg.Paths = []string{pathProxy, pathGoroutine, pathHAProxy}
		}
		ic.Runs, ic.Size = cfg.Runs, cfg.Size
		if !set["runs"] {
			ic.Runs = 1
		}
		if ic.Steps, err = parseSteps(*steps); err != nil || ic.Active <= 0 || ic.Active > 1 || ic.Rate <= 0 || ic.ActiveFor <= 0 {
			fmt.Fprintln(os.Stderr, "proxybench: need ascending -steps, 0 < -active ≤ 1, -active-rate > 0, -active-for > 0")
			return 2
		}
		rep, err := benchIdle(ctx, log, cfg, ic, args)
		if err != nil {
			log.Error("proxybench idle failed", "err", err)
			return 1
		}
		section := rep.markdown()
		fmt.Println(section)
		if cfg.Write != "" {
			if err := writeMarked(cfg.Write, section, idleBeginMarker, idleEndMarker); err != nil {
				log.Error("write", "err", err)
				return 1
			}
			log.Info("wrote results", "file", cfg.Write)
		}
		return 0
	default:
		fmt.Fprintln(os.Stderr, "proxybench: -mode is throughput or idle")
		return 2
	}

	rep, err := bench(ctx, log, cfg, args)
	if err != nil {
		log.Error("proxybench failed", "err", err)
		return 1
	}
	section := rep.markdown()
	fmt.Println(section)
	if cfg.Write != "" {
		if err := writeSection(cfg.Write, section); err != nil {
			log.Error("write", "err", err)
			return 1
		}
		log.Info("wrote results", "file", cfg.Write)
	}
	return 0
}

// bench starts the backend and the paths, runs every measurement, and stops
// every process it started before returning.
func bench(ctx context.Context, log *slog.Logger, cfg benchConfig, args []string) (*report, error) {
	dir, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		return nil, err
	}
	failed := true
	defer func() {
		if cfg.Keep || failed {
			log.Info("logs kept", "dir", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}

	g := &procGroup{dir: dir}
	defer g.stopAll() // proxies before the backend
	start := g.start

	first := make(chan string, 1)
	bp, err := start("backend", first, self, "backend", "-listen", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	backendAddr, err := waitListening(ctx, bp, first)
	if err != nil {
		return nil, err
	}
	log.Info("backend ready", "addr", backendAddr)

	rep := newReport()
	rep.When = time.Now()
	rep.Runs, rep.Duration, rep.Conns, rep.Size, rep.Rate = cfg.Runs, cfg.Duration, cfg.Conns, cfg.Size, cfg.Rate
	rep.Command = strings.TrimSpace("go run ./bench/proxybench " + strings.Join(args, " "))
	rep.Machine = machine()
	loadBefore := loadAvg()
	versions := []string{runtime.Version()}

	targets := map[string]string{}
	pids := map[string]int{} // the process serving each path (none for direct)
	var rs *rserpoolStack
	for _, path := range allPaths {
		if !slices.Contains(cfg.Paths, path) {
			continue
		}
		var addr, version string
		var p *proc
		switch path {
		case pathDirect:
			addr = backendAddr
		case pathHAProxy:
			addr, version, p, err = startHAProxy(ctx, log, cfg, dir, start, backendAddr)
		case pathRelay:
			addr, p, err = startRelay(ctx, self, start, backendAddr)
		case pathProxy, pathGoroutine:
			if rs == nil {
				if rs, err = startRserpool(ctx, log, cfg, dir, start, backendAddr); err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
				version = rs.version
			}
			engine := "loop"
			if path == pathGoroutine {
				engine = "goroutine"
			}
			addr, p, err = rs.startProxy(ctx, cfg, dir, start, engine)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if version != "" {
			versions = append(versions, version)
		}
		if p != nil {
			pids[path] = p.cmd.Process.Pid
		}
		targets[path] = addr
		rep.Paths = append(rep.Paths, path)
		log.Info("path ready", "path", path, "addr", addr)
	}
	rep.Versions = strings.Join(versions, "; ")

	// measure runs one load on path; it adds the CPU time of the path's
	// process.
	measure := func(path, meas string) (result, error) {
		pid, ok := pids[path]
		var cpu0 float64
		if ok {
			cpu0, _ = procCPU(pid)
		}
		res, err := loadOnce(ctx, self, cfg, meas, targets[path])
		if ok && err == nil {
			if cpu1, err := procCPU(pid); err == nil {
				res.CPU = cpu1 - cpu0
			}
		}
		return res, err
	}
	for run := 1; run <= cfg.Runs; run++ {
		for _, meas := range cfg.Meas {
			for _, path := range rep.Paths {
				res, err := measure(path, meas)
				if err != nil {
					return nil, fmt.Errorf("run %d, %s via %s: %w", run, meas, path, err)
				}
				rep.add(path, res)
				log.Info("measured", "run", run, "meas", meas, "path", path, "ops", res.Ops, "errors", res.Errors, "seconds", fmt.Sprintf("%.2f", res.Seconds))
			}
		}
	}
	if cfg.Syscalls {
		sc := cfg
		sc.Duration = min(cfg.Duration, 2*time.Second)
		for _, meas := range []string{measRR, measCRR} {
			for _, path := range rep.Paths {
				pid, ok := pids[path]
				if !ok {
					continue
				}
				n, res, err := straceCount(ctx, dir, pid, func() (result, error) { return loadOnce(ctx, self, sc, meas, targets[path]) })
				if err != nil {
					return nil, fmt.Errorf("strace %s via %s: %w", meas, path, err)
				}
				rep.addSyscalls(path, meas, float64(n)/float64(res.Ops))
				log.Info("system calls", "meas", meas, "path", path, "per_op", float64(n)/float64(res.Ops))
			}
		}
	}
	rep.Load = fmt.Sprintf("%s before, %s after", loadBefore, loadAvg())
	if cfg.Faults && rs != nil && slices.Contains(rep.Paths, pathHAProxy) {
		hbin, err := findHAProxy(ctx, log, cfg.HAProxy)
		if err != nil {
			return nil, err
		}
		log.Info("fault scenarios (black hole, hung PE) in a network namespace")
		fr, err := runFaultsNetns(ctx, self, faultsConfig{Rserpool: rs.bin, HAProxy: hbin, Duration: cfg.Duration, Rate: 200, Conns: 8})
		if err != nil {
			return nil, err
		}
		rep.Faults = fr
	}
	failed = false
	return rep, nil
}

// loadOnce runs one load-generator process and decodes its result.
func loadOnce(ctx context.Context, self string, cfg benchConfig, meas, target string) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+2*slack)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "load",
		"-target", target, "-mode", meas,
		"-conns", fmt.Sprint(cfg.Conns), "-size", fmt.Sprint(cfg.Size),
		"-rate", fmt.Sprint(cfg.Rate), "-duration", cfg.Duration.String())
	cmd.SysProcAttr = childAttr()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var res result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return result{}, fmt.Errorf("load output %q: %w", stdout.String(), err)
	}
	if res.Seconds <= 0 || res.Ops == 0 {
		return result{}, fmt.Errorf("no successful operations (%d errors)", res.Errors)
	}
	return res, nil
}

// parseList splits a comma-separated flag value and checks each item
// against valid.
func parseList(flagName, v string, valid []string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(valid, p) {
			return nil, fmt.Errorf("unknown %q in %s (want %s)", p, flagName, strings.Join(valid, ", "))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

type starter func(name string, first chan<- string, argv ...string) (*proc, error)

func startRelay(ctx context.Context, self string, start starter, backend string) (string, *proc, error) {
	first := make(chan string, 1)
	p, err := start("relay", first, self, "relay", "-listen", "127.0.0.1:0", "-backend", backend)
	if err != nil {
		return "", nil, err
	}
	addr, err := waitListening(ctx, p, first)
	if err != nil {
		return "", nil, err
	}
	return addr, p, waitReady(ctx, p, addr, 10*time.Second, probeEcho)
}

func startHAProxy(ctx context.Context, log *slog.Logger, cfg benchConfig, dir string, start starter, backend string) (addr, version string, p *proc, err error) {
	return startHAProxyWith(ctx, log, cfg, dir, start, "haproxy", haproxyParams{Threads: runtime.NumCPU(), Backend: backend})
}

// startHAProxyWith starts HAProxy as process name with hp (its Listen
// filled in here) and waits until an echo through it reaches the backend.
func startHAProxyWith(ctx context.Context, log *slog.Logger, cfg benchConfig, dir string, start starter, name string, hp haproxyParams) (addr, version string, p *proc, err error) {
	bin, err := findHAProxy(ctx, log, cfg.HAProxy)
	if err != nil {
		return "", "", nil, err
	}
	if out, err := exec.CommandContext(ctx, bin, "-v").Output(); err == nil {
		version = firstLine(string(out))
	}
	if addr, err = freePort(); err != nil {
		return "", "", nil, err
	}
	hp.Listen = addr
	conf, err := renderHAProxy(hp)
	if err != nil {
		return "", "", nil, err
	}
	confPath := filepath.Join(dir, name+".cfg")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		return "", "", nil, err
	}
	if p, err = start(name, nil, bin, "-db", "-f", confPath); err != nil {
		return "", "", nil, err
	}
	return addr, version, p, waitReady(ctx, p, addr, 10*time.Second, probeEcho)
}

// rserpoolStack is the rserpool side of the benchmark: the binary, a
// registrar and a pe-agent registering the backend in BenchPool.
type rserpoolStack struct {
	bin, version, reg string
}

// startRserpool builds rserpool (unless given), starts a registrar and a
// pe-agent for the backend.
func startRserpool(ctx context.Context, log *slog.Logger, cfg benchConfig, dir string, start starter, backend string) (*rserpoolStack, error) {
	rs := &rserpoolStack{bin: cfg.Rserpool}
	if rs.bin == "" {
		rs.bin = filepath.Join(dir, "rserpool")
		log.Info("building rserpool", "out", rs.bin)
		ver := "dev"
		if out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output(); err == nil {
			ver = strings.TrimSpace(string(out))
		}
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-X main.version="+ver, "-o", rs.bin, "./cmd/rserpool")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/rserpool (run from the repository root): %v\n%s", err, out)
		}
	}
	if out, err := exec.CommandContext(ctx, rs.bin, "version").Output(); err == nil {
		rs.version = firstLine(string(out))
	}
	regAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	rs.reg = "tcp://" + regAddr
	rp, err := start("registrar", nil, rs.bin, "registrar", "-asap", rs.reg)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, rp, regAddr, 10*time.Second, probeListen); err != nil {
		return nil, err
	}
	if _, err := start("pe-agent", nil, rs.bin, "pe-agent", "-registrar", rs.reg, "-pool", "BenchPool", "-backend", backend); err != nil {
		return nil, err
	}
	return rs, nil
}

// startProxy runs a proxy for BenchPool on the given relay engine and
// waits until an echo through it reaches the backend.
func (rs *rserpoolStack) startProxy(ctx context.Context, cfg benchConfig, dir string, start starter, engine string) (string, *proc, error) {
	return rs.startProxyWith(ctx, cfg, dir, start, "proxy-"+engine, "", fmt.Sprintf("engine = %q\n", engine))
}

// startProxyWith runs a proxy for BenchPool as process name, with top and
// listener added to the top level and to the listener table of its
// configuration, and waits until an echo through it reaches the backend.
func (rs *rserpoolStack) startProxyWith(ctx context.Context, cfg benchConfig, dir string, start starter, name, top, listener string) (string, *proc, error) {
	addr, err := freePort()
	if err != nil {
		return "", nil, err
	}
	conf := fmt.Sprintf("registrars = [%q]\n%s[[listener]]\nlisten = %q\npool = \"BenchPool\"\n%s", rs.reg, top, addr, listener)
	confPath := filepath.Join(dir, name+".toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return "", nil, err
	}
	argv := append([]string{rs.bin, "proxy", "-config", confPath}, cfg.ProxyArg...)
	pp, err := start(name, nil, argv...)
	if err != nil {
		return "", nil, err
	}
	return addr, pp, waitReady(ctx, pp, addr, 30*time.Second, probeEcho)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// machine describes the host: CPU count and model, kernel.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := runtime.GOOS
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("nproc %d, %s, %s %s", runtime.NumCPU(), model, kernel, runtime.GOARCH)
}

// loadAvg returns the 1, 5 and 15 minute load averages, or "unknown".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}
