package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The idle mode ("-mode idle"): what a relayed connection that carries no
// traffic costs each path in resident memory. For every path it starts a
// fresh process, reads its VmRSS once the listener answers (the baseline),
// opens echo connections through it up to each step (each sends one byte
// and gets it back, so the relay to the backend is established), and reads
// VmRSS again once it has settled. The active sequence does the same in
// another fresh process, with a share of the connections sending requests
// at a fixed rate while VmRSS is sampled.

// Idle-mode sequences.
const (
	seqIdle   = "idle"
	seqActive = "active"
)

// idleConfig is one idle-mode run.
type idleConfig struct {
	Steps     []int         // connection counts, ascending
	Active    float64       // share of the connections active in the active sequence
	Rate      float64       // requests per second per active connection
	Size      int           // request and response size, bytes
	ActiveFor time.Duration // how long each active step runs
	Runs      int
}

// idleSample is one path's figures at one step.
type idleSample struct {
	Conns     int
	RSS       int64 // VmRSS growth over the baseline, bytes
	Heap      int64 // Go heap in use, growth over the baseline (rserpool only; -1 unknown)
	Stack     int64 // Go stacks in use, growth over the baseline (rserpool only; -1 unknown)
	Routines  int   // goroutines (rserpool only; -1 unknown)
	Ops       int64 // requests answered during the active step
	Errors    int64 // failed dials or requests
	Seconds   float64
	ActiveN   int   // connections active
	BaseRSS   int64 // VmRSS once the listener answered, bytes
	BaseRoute int   // goroutines at the baseline
}

// idleReport holds the samples of every path, sequence and run.
type idleReport struct {
	When     time.Time
	Command  string
	Machine  string
	Versions string
	Load     string
	Paths    []string
	Cfg      idleConfig
	Samples  map[string]map[string][][]idleSample // path → sequence → run → steps
	Profiles []string                             // heap profiles kept
}

var idlePaths = []string{pathProxy, pathGoroutine, pathHAProxy, pathRelay}

func parseSteps(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("-steps: want ascending positive counts, got %q", v)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchIdle runs the idle mode: the backend and the rserpool stack once,
// then a fresh process per path, sequence and run (paths in a rotated order
// per run).
func benchIdle(ctx context.Context, log *slog.Logger, cfg benchConfig, ic idleConfig, args []string) (*idleReport, error) {
	dir, err := os.MkdirTemp("", "proxybench-idle-")
	if err != nil {
		return nil, err
	}
	log.Info("logs and heap profiles", "dir", dir)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	g := &procGroup{dir: dir}
	defer g.stopAll()
	first := make(chan string, 1)
	bp, err := g.start("backend", first, self, "backend", "-listen", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	backendAddr, err := waitListening(ctx, bp, first)
	if err != nil {
		return nil, err
	}
	rep := &idleReport{
		When: time.Now(), Machine: machine(), Cfg: ic,
		Command: strings.TrimSpace("go run ./bench/proxybench " + strings.Join(args, " ")),
		Samples: map[string]map[string][][]idleSample{},
	}
	for _, p := range idlePaths {
		if slices.Contains(cfg.Paths, p) {
			rep.Paths = append(rep.Paths, p)
		}
	}
	loadBefore := loadAvg()
	versions := []string{runtime.Version()}
	var rs *rserpoolStack
	if slices.Contains(rep.Paths, pathProxy) || slices.Contains(rep.Paths, pathGoroutine) {
		if rs, err = startRserpool(ctx, log, cfg, dir, g.start, backendAddr); err != nil {
			return nil, err
		}
		versions = append(versions, rs.version)
	}
	maxConns := ic.Steps[len(ic.Steps)-1]
	seen := map[string]bool{}
	for run := 0; run < ic.Runs; run++ {
		for _, seq := range []string{seqIdle, seqActive} {
			order := slices.Clone(rep.Paths)
			k := run % len(order)
			order = append(order[k:], order[:k]...)
			for _, path := range order {
				name := fmt.Sprintf("%s-%s-%d", path, seq, run+1)
				var addr, admin, version string
				var p *proc
				switch path {
				case pathProxy, pathGoroutine:
					engine := "loop"
					if path == pathGoroutine {
						engine = "goroutine"
					}
					if admin, err = freePort(); err != nil {
						return nil, err
					}
					addr, p, err = rs.startProxyWith(ctx, cfg, dir, g.start, name,
						fmt.Sprintf("admin = %q\n", admin),
						fmt.Sprintf("engine = %q\nmax_connections = %d\n", engine, maxConns+1000))
				case pathHAProxy:
					addr, version, p, err = startHAProxyWith(ctx, log, cfg, dir, g.start, name, haproxyParams{
						Threads: runtime.NumCPU(), Backend: backendAddr, MaxConn: maxConns + 100, Timeout: "30m"})
				case pathRelay:
					addr, p, err = startRelay(ctx, self, g.start, backendAddr)
				}
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				if version != "" && !seen[version] {
					seen[version] = true
					versions = append(versions, version)
				}
				log.Info("path ready", "path", path, "seq", seq, "run", run+1, "addr", addr)
				m := &idleMeter{log: log, pid: p.cmd.Process.Pid, admin: admin, dir: dir, name: name}
				samples, err := m.sequence(ctx, addr, seq, ic)
				p.stop()
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				if m.profile != "" {
					rep.Profiles = append(rep.Profiles, m.profile)
				}
				if rep.Samples[path] == nil {
					rep.Samples[path] = map[string][][]idleSample{}
				}
				rep.Samples[path][seq] = append(rep.Samples[path][seq], samples)
			}
		}
	}
	rep.Versions = strings.Join(versions, "; ")
	rep.Load = fmt.Sprintf("%s before, %s after", loadBefore, loadAvg())
	return rep, nil
}

// idleMeter measures one path process.
type idleMeter struct {
	log     *slog.Logger
	pid     int
	admin   string // the proxy's admin address, or ""
	dir     string
	name    string
	profile string // heap profile written at the last step, if any
}

// goStats are a Go process's runtime figures from its /metrics.
type goStats struct{ heap, stack, routines int64 }

func (m *idleMeter) goStats(ctx context.Context) (goStats, bool) {
	if m.admin == "" {
		return goStats{}, false
	}
	b, err := httpGet(ctx, "http://"+m.admin+"/metrics")
	if err != nil {
		return goStats{}, false
	}
	var s goStats
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			s.heap = int64(f)
		case "go_memstats_stack_inuse_bytes":
			s.stack = int64(f)
		case "go_goroutines":
			s.routines = int64(f)
		}
	}
	return s, true
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// settledRSS waits until VmRSS stops growing (two reads 300 ms apart
// within 1 %, at most 5 s) and returns it.
func (m *idleMeter) settledRSS(ctx context.Context) (int64, error) {
	prev, err := vmRSS(m.pid)
	if err != nil {
		return 0, err
	}
	for range 16 {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		cur, err := vmRSS(m.pid)
		if err != nil {
			return 0, err
		}
		if cur-prev <= prev/100 {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

// sequence measures one fresh process: the baseline, then every step of
// seq. Connections are closed before it returns.
func (m *idleMeter) sequence(ctx context.Context, addr, seq string, ic idleConfig) ([]idleSample, error) {
	base, err := m.settledRSS(ctx)
	if err != nil {
		return nil, err
	}
	gs0, haveGo := m.goStats(ctx)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var out []idleSample
	for i, n := range ic.Steps {
		var errs int64
		conns, errs = openIdle(ctx, addr, conns, n)
		if len(conns) < n {
			return nil, fmt.Errorf("%d of %d connections opened (%d failed)", len(conns), n, errs)
		}
		s := idleSample{Conns: n, Errors: errs, BaseRSS: base, Heap: -1, Stack: -1, Routines: -1, BaseRoute: int(gs0.routines)}
		var rss int64
		if seq == seqActive {
			k := max(1, int(float64(n)*ic.Active))
			s.ActiveN = k
			var ops, aerrs int64
			rss, ops, aerrs, s.Seconds, err = m.activeStep(ctx, conns[:k], ic)
			s.Ops, s.Errors = ops, s.Errors+aerrs
		} else {
			rss, err = m.settledRSS(ctx)
		}
		if err != nil {
			return nil, err
		}
		s.RSS = rss - base
		if gs, ok := m.goStats(ctx); ok && haveGo {
			s.Heap, s.Stack, s.Routines = gs.heap-gs0.heap, gs.stack-gs0.stack, int(gs.routines)
		}
		if i == len(ic.Steps)-1 && m.admin != "" {
			if b, err := httpGet(ctx, "http://"+m.admin+"/debug/pprof/heap"); err == nil {
				p := filepath.Join(m.dir, m.name+"-heap.pb.gz")
				if os.WriteFile(p, b, 0o644) == nil {
					m.profile = p
				}
			}
			if b, err := httpGet(ctx, "http://"+m.admin+"/debug/pprof/goroutine?debug=1"); err == nil {
				os.WriteFile(filepath.Join(m.dir, m.name+"-goroutines.txt"), b, 0o644)
			}
		}
		m.log.Info("idle step", "proc", m.name, "conns", n, "rss_kib", s.RSS>>10,
			"per_conn_kib", fmt.Sprintf("%.2f", float64(s.RSS)/1024/float64(n)), "goroutines", s.Routines, "errors", s.Errors, "ops", s.Ops)
		out = append(out, s)
	}
	return out, nil
}

// openIdle opens echo connections to addr until there are n (64 dialling
// at once); each sends one byte and reads it back. It returns the
// connections and the number of failed attempts (it gives up after n/10+10
// failures).
func openIdle(ctx context.Context, addr string, conns []net.Conn, n int) ([]net.Conn, int64) {
	var (
		mu     sync.Mutex // guards conns
		failed atomic.Int64
		next   atomic.Int64
		wg     sync.WaitGroup
	)
	need := int64(n - len(conns))
	limit := int64(n/10 + 10)
	for range 64 {
		wg.Go(func() {
			for next.Add(1) <= need && failed.Load() < limit && ctx.Err() == nil {
				c, err := dialEcho1(ctx, addr)
				if err != nil {
					failed.Add(1)
					next.Add(-1)
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return conns, failed.Load()
}

// dialEcho1 opens an echo connection and passes one byte through it.
func dialEcho1(ctx context.Context, addr string) (net.Conn, error) {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := c.Write([]byte{modeEcho, 'x'}); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// activeStep runs request/response on conns, each at ic.Rate requests per
// second (from a random phase), for ic.ActiveFor, sampling VmRSS every
// 250 ms; it returns the highest sample, the requests answered, the
// failures and the seconds it ran.
func (m *idleMeter) activeStep(ctx context.Context, conns []net.Conn, ic idleConfig) (peak, ops, errs int64, secs float64, err error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var nops, nerrs atomic.Int64
	interval := time.Duration(float64(time.Second) / ic.Rate)
	start := time.Now()
	for _, c := range conns {
		wg.Go(func() {
			req := bytes.Repeat([]byte{'r'}, ic.Size)
			resp := make([]byte, ic.Size)
			next := start.Add(time.Duration(rand.Int64N(int64(interval))))
			t := time.NewTimer(time.Until(next))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(req); err != nil {
					nerrs.Add(1)
					return
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					nerrs.Add(1)
					return
				}
				nops.Add(1)
				next = next.Add(interval)
				t.Reset(time.Until(next))
			}
		})
	}
	tick := time.NewTicker(250 * time.Millisecond)
	end := time.NewTimer(ic.ActiveFor)
	for done := false; !done; {
		select {
		case <-tick.C:
			if v, rerr := vmRSS(m.pid); rerr == nil {
				peak = max(peak, v)
			} else {
				err = rerr
			}
		case <-end.C:
			done = true
		case <-ctx.Done():
			done, err = true, ctx.Err()
		}
	}
	tick.Stop()
	secs = time.Since(start).Seconds()
	cancel()
	wg.Wait()
	for _, c := range conns {
		c.SetDeadline(time.Time{})
	}
	return peak, nops.Load(), nerrs.Load(), secs, err
}

// vmRSS returns the resident set of process pid (VmRSS), bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status")
}

// Markers around the generated idle-mode section of BENCHMARKS.md.
const (
	idleBeginMarker = "<!-- proxybench-idle:begin (generated by go run ./bench/proxybench -mode idle -write BENCHMARKS.md; edits inside are lost) -->"
	idleEndMarker   = "<!-- proxybench-idle:end -->"
)

// markdown renders the per-connection table: KiB of VmRSS growth per
// connection at every step, the median over the runs (and the range when
// runs differ by more than 0.1 KiB).
func (r *idleReport) markdown() string {
	var b strings.Builder
	ic := r.Cfg
	fmt.Fprintf(&b, "- When: %s\n", r.When.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- Machine: %s; load average %s\n", r.Machine, r.Load)
	fmt.Fprintf(&b, "- Versions: %s\n", r.Versions)
	fmt.Fprintf(&b, "- Command: `%s`\n", r.Command)
	fmt.Fprintf(&b, "- %d run(s); a fresh process per path, sequence and run; active: %.0f %% of the connections, %d-byte requests at %s req/s each for %s (the peak VmRSS while they run)\n\n",
		ic.Runs, ic.Active*100, ic.Size, strconv.FormatFloat(ic.Rate, 'f', -1, 64), ic.ActiveFor)
	b.WriteString("KiB of VmRSS per relayed connection (growth over the process's VmRSS once its listener answered, divided by the connections):\n\n")
	b.WriteString("| connections |")
	for _, p := range r.Paths {
		b.WriteString(" " + pathTitle[p] + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(r.Paths)) + "\n")
	for _, seq := range []string{seqIdle, seqActive} {
		for i, n := range ic.Steps {
			label := fmt.Sprintf("%s idle", fmtCount(float64(n)))
			if seq == seqActive {
				k := max(1, int(float64(n)*ic.Active))
				label = fmt.Sprintf("%s, %s active (%s req/s offered)", fmtCount(float64(n)), fmtCount(float64(k)), fmtCount(float64(k)*ic.Rate))
			}
			b.WriteString("| " + label + " |")
			for _, p := range r.Paths {
				b.WriteString(" " + r.cell(p, seq, i, func(s idleSample) float64 { return float64(s.RSS) / 1024 / float64(s.Conns) }) + " |")
			}
			b.WriteString("\n")
		}
	}
	last := len(ic.Steps) - 1
	fmt.Fprintf(&b, "| requests answered at %s active (req/s) |", fmtCount(float64(max(1, int(float64(ic.Steps[last])*ic.Active)))))
	for _, p := range r.Paths {
		b.WriteString(" " + r.cellf(p, seqActive, last, func(s idleSample) float64 { return float64(s.Ops) / s.Seconds }, fmtCount) + " |")
	}
	b.WriteString("\n")
	b.WriteString("| baseline VmRSS (MiB) |")
	for _, p := range r.Paths {
		b.WriteString(" " + r.cellf(p, seqIdle, 0, func(s idleSample) float64 { return float64(s.BaseRSS) / (1 << 20) }, fmtFixed(1)) + " |")
	}
	b.WriteString("\n")
	// The marginal cost between the first and the last step leaves out
	// what the process allocates once (tables, pools).
	if len(ic.Steps) > 1 {
		lo, hi := 0, len(ic.Steps)-1
		fmt.Fprintf(&b, "| marginal, %s → %s idle |", fmtCount(float64(ic.Steps[lo])), fmtCount(float64(ic.Steps[hi])))
		for _, p := range r.Paths {
			b.WriteString(" " + r.marginal(p, seqIdle, lo, hi, func(s idleSample) float64 { return float64(s.RSS) }) + " |")
		}
		b.WriteString("\n")
	}
	if slices.Contains(r.Paths, pathProxy) || slices.Contains(r.Paths, pathGoroutine) {
		b.WriteString("\nThe rserpool proxy's Go runtime at the last step (its /metrics: heap and stacks in use, growth per connection in KiB; goroutines in all):\n\n")
		b.WriteString("| sequence | path | heap KiB/conn | stacks KiB/conn | goroutines |\n|---|---|---:|---:|---:|\n")
		for _, seq := range []string{seqIdle, seqActive} {
			for _, p := range []string{pathProxy, pathGoroutine} {
				if !slices.Contains(r.Paths, p) {
					continue
				}
				fmt.Fprintf(&b, "| %s %s | %s | %s | %s | %s |\n", fmtCount(float64(ic.Steps[last])), seq, pathTitle[p],
					r.cell(p, seq, last, func(s idleSample) float64 { return float64(s.Heap) / 1024 / float64(s.Conns) }),
					r.cell(p, seq, last, func(s idleSample) float64 { return float64(s.Stack) / 1024 / float64(s.Conns) }),
					r.cellf(p, seq, last, func(s idleSample) float64 { return float64(s.Routines) }, fmtCount))
			}
		}
	}
	var errs int64
	for _, bySeq := range r.Samples {
		for _, runs := range bySeq {
			for _, steps := range runs {
				for _, s := range steps {
					errs += s.Errors
				}
			}
		}
	}
	fmt.Fprintf(&b, "\nFailed dials or requests over the whole run: %d.\n", errs)
	return b.String()
}

// cell is the median of v over the runs of path, seq and step i, with the
// range when the runs differ.
func (r *idleReport) cell(path, seq string, i int, v func(idleSample) float64) string {
	return r.cellf(path, seq, i, v, fmtFixed(2))
}

func (r *idleReport) cellf(path, seq string, i int, v func(idleSample) float64, f func(float64) string) string {
	var xs []float64
	for _, steps := range r.Samples[path][seq] {
		if i < len(steps) {
			xs = append(xs, v(steps[i]))
		}
	}
	return fmtRange(xs, f)
}

func (r *idleReport) marginal(path, seq string, lo, hi int, v func(idleSample) float64) string {
	var xs []float64
	for _, steps := range r.Samples[path][seq] {
		if hi < len(steps) {
			xs = append(xs, (v(steps[hi])-v(steps[lo]))/1024/float64(steps[hi].Conns-steps[lo].Conns))
		}
	}
	return fmtRange(xs, fmtFixed(2))
}

// fmtRange formats the median of xs, with the range when the values differ
// by more than 0.1.
func fmtRange(xs []float64, f func(float64) string) string {
	if len(xs) == 0 {
		return "–"
	}
	slices.Sort(xs)
	s := f(median(xs))
	if xs[len(xs)-1]-xs[0] > 0.1 {
		s += " (" + f(xs[0]) + "–" + f(xs[len(xs)-1]) + ")"
	}
	return s
}
