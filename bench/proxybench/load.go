package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Measurements, by the name the load generator takes.
const (
	measBulk = "bulk" // (a) one stream, Gbit/s
	measRR   = "rr"   // (b) request/response on persistent connections, req/s
	measCRR  = "crr"  // (c) connect, request, response, close, conn/s
	measLat  = "lat"  // (d) latency percentiles at a fixed rate
	// measCRRLat: new connections (connect, request, response, close) at
	// a fixed rate; latency percentiles and failed connections (faults).
	measCRRLat = "crrlat"
)

// loadConfig is one load-generator run.
type loadConfig struct {
	Target   string        // host:port
	Mode     string        // measBulk, measRR, measCRR or measLat
	Conns    int           // connections (rr, lat) or concurrent clients (crr)
	Size     int           // request and response size in bytes (rr, crr, lat)
	Rate     float64       // total requests per second (lat)
	Duration time.Duration // how long to send
	MaxOps   int64         // stop after this many operations in all, whichever comes first
}

// result is what one load-generator run prints as JSON.
type result struct {
	Mode    string  `json:"mode"`
	Ops     int64   `json:"ops"`     // requests, connections or (bulk) 1
	Errors  int64   `json:"errors"`  // failed operations (dial, I/O or short answers)
	Bytes   int64   `json:"bytes"`   // bulk: bytes the backend counted
	Seconds float64 `json:"seconds"` // measured wall time
	P50     int64   `json:"p50_ns,omitempty"`
	P99     int64   `json:"p99_ns,omitempty"`
	P999    int64   `json:"p999_ns,omitempty"`
	Max     int64   `json:"max_ns,omitempty"`
	// CPU is the CPU time (s) the serving process used during the run;
	// filled in by the orchestrator.
	CPU float64 `json:"cpu_s,omitempty"`
	// Syscalls is the number of system calls the serving process made
	// during the run (under strace); filled in by the orchestrator.
	Syscalls int64 `json:"syscalls,omitempty"`
}

// slack bounds every socket operation beyond the run's duration, so that a
// stuck peer ends the run with an error instead of hanging it.
const slack = 10 * time.Second

var dialer = net.Dialer{Timeout: 5 * time.Second}

func runLoad(ctx context.Context, cfg loadConfig) (result, error) {
	if cfg.Duration <= 0 {
		return result{}, errors.New("duration must be positive")
	}
	if cfg.MaxOps <= 0 {
		cfg.MaxOps = 1 << 40
	}
	if cfg.Mode != measBulk && (cfg.Conns <= 0 || cfg.Size <= 0) {
		return result{}, errors.New("conns and size must be positive")
	}
	switch cfg.Mode {
	case measBulk:
		return loadBulk(ctx, cfg)
	case measRR:
		return loadRR(ctx, cfg)
	case measCRR:
		return loadCRR(ctx, cfg)
	case measLat, measCRRLat:
		if cfg.Rate <= 0 {
			return result{}, errors.New("rate must be positive")
		}
		if cfg.Mode == measCRRLat {
			return loadCRRLat(ctx, cfg)
		}
		return loadLat(ctx, cfg)
	}
	return result{}, fmt.Errorf("unknown mode %q", cfg.Mode)
}

func dialMode(ctx context.Context, target string, mode byte, deadline time.Time) (net.Conn, error) {
	c, err := dialer.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(deadline)
	if _, err := c.Write([]byte{mode}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// loadBulk writes one stream for the duration, half-closes, and reads the
// backend's byte count; throughput is that count over the time until the
// count arrived.
func loadBulk(ctx context.Context, cfg loadConfig) (result, error) {
	res := result{Mode: cfg.Mode}
	c, err := dialMode(ctx, cfg.Target, modeSink, time.Now().Add(cfg.Duration+slack))
	if err != nil {
		return res, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	buf := make([]byte, bulkBufSize)
	start := time.Now()
	end := start.Add(cfg.Duration)
	for time.Now().Before(end) {
		if _, err := c.Write(buf); err != nil {
			return res, fmt.Errorf("bulk write: %w", err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return res, err
	}
	var cnt [8]byte
	if _, err := io.ReadFull(c, cnt[:]); err != nil {
		return res, fmt.Errorf("bulk count: %w", err)
	}
	res.Seconds = time.Since(start).Seconds()
	res.Bytes = int64(binary.BigEndian.Uint64(cnt[:]))
	res.Ops = 1
	return res, nil
}

// dialEchoConns opens cfg.Conns echo connections with a deadline of the run
// plus slack. closeAll closes them; ctx being done closes them too, which
// ends any blocked read or write.
func dialEchoConns(ctx context.Context, cfg loadConfig) (conns []net.Conn, closeAll func(), err error) {
	deadline := time.Now().Add(cfg.Duration + slack)
	closeConns := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for range cfg.Conns {
		c, err := dialMode(ctx, cfg.Target, modeEcho, deadline)
		if err != nil {
			closeConns()
			return nil, nil, err
		}
		conns = append(conns, c)
	}
	stop := context.AfterFunc(ctx, closeConns)
	return conns, func() { stop(); closeConns() }, nil
}

// loadRR runs Conns persistent connections, each sending one request and
// waiting for its answer in a loop.
func loadRR(ctx context.Context, cfg loadConfig) (result, error) {
	res := result{Mode: cfg.Mode}
	conns, closeAll, err := dialEchoConns(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer closeAll()
	var ops, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(cfg.Duration)
	for _, c := range conns {
		wg.Go(func() {
			req := make([]byte, cfg.Size)
			resp := make([]byte, cfg.Size)
			for time.Now().Before(end) && ops.Load() < cfg.MaxOps {
				if _, err := c.Write(req); err != nil {
					errs.Add(1)
					return
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					errs.Add(1)
					return
				}
				ops.Add(1)
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Ops, res.Errors = ops.Load(), errs.Load()
	return res, nil
}

// loadCRR runs Conns clients, each connecting, sending one request, reading
// the answer and closing, in a loop.
func loadCRR(ctx context.Context, cfg loadConfig) (result, error) {
	res := result{Mode: cfg.Mode}
	var ops, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(cfg.Duration)
	for range cfg.Conns {
		wg.Go(func() {
			req := make([]byte, 1+cfg.Size)
			req[0] = modeEcho
			resp := make([]byte, cfg.Size)
			for time.Now().Before(end) && ops.Load() < cfg.MaxOps && ctx.Err() == nil {
				if err := oneCRR(ctx, cfg.Target, req, resp, end.Add(slack)); err != nil {
					errs.Add(1)
					continue
				}
				ops.Add(1)
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Ops, res.Errors = ops.Load(), errs.Load()
	return res, nil
}

func oneCRR(ctx context.Context, target string, req, resp []byte, deadline time.Time) error {
	c, err := dialer.DialContext(ctx, "tcp", target)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := c.Write(req); err != nil {
		return err
	}
	_, err = io.ReadFull(c, resp)
	return err
}

// loadLat sends requests at a fixed total rate over Conns connections and
// records each response time from the moment the request was due, so that a
// slow answer also counts against the requests queued behind it.
func loadLat(ctx context.Context, cfg loadConfig) (result, error) {
	res := result{Mode: cfg.Mode}
	conns, closeAll, err := dialEchoConns(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer closeAll()
	interval := time.Duration(float64(time.Second) * float64(cfg.Conns) / cfg.Rate)
	step := interval / time.Duration(cfg.Conns) // stagger the connections evenly
	perConn := int(cfg.Duration/interval) + 1
	lats := make([][]time.Duration, len(conns))
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(cfg.Duration)
	for i, c := range conns {
		lats[i] = make([]time.Duration, 0, perConn)
		wg.Go(func() {
			req := make([]byte, cfg.Size)
			resp := make([]byte, cfg.Size)
			t := time.NewTimer(0)
			defer t.Stop()
			<-t.C
			for k := range perConn {
				due := start.Add(time.Duration(i)*step + time.Duration(k)*interval)
				if !due.Before(end) {
					return
				}
				if d := time.Until(due); d > 0 {
					t.Reset(d)
					select {
					case <-t.C:
					case <-ctx.Done():
						return
					}
				}
				if _, err := c.Write(req); err != nil {
					errs.Add(1)
					return
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					errs.Add(1)
					return
				}
				lats[i] = append(lats[i], time.Since(due))
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	all := slices.Concat(lats...)
	slices.Sort(all)
	res.Ops, res.Errors = int64(len(all)), errs.Load()
	res.P50 = int64(percentile(all, 0.50))
	res.P99 = int64(percentile(all, 0.99))
	res.P999 = int64(percentile(all, 0.999))
	return res, nil
}

// loadCRRLat opens new connections at a fixed total rate, open loop: each
// connection starts when it is due, whether or not earlier ones have
// finished (at most maxInflight at once), connects, sends one request,
// reads the answer and closes; its latency counts from the moment it was
// due. A failed connection (refused, reset, no answer within 5 s) is an
// error.
func loadCRRLat(ctx context.Context, cfg loadConfig) (result, error) {
	const maxInflight = 1024
	res := result{Mode: cfg.Mode}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	n := int(cfg.Duration / interval)
	lats := make([]time.Duration, n)
	ok := make([]bool, n)
	sem := make(chan struct{}, maxInflight)
	var wg sync.WaitGroup
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for k := range n {
		due := start.Add(time.Duration(k) * interval)
		if d := time.Until(due); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				wg.Wait()
				return res, ctx.Err()
			}
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			req := make([]byte, 1+cfg.Size)
			req[0] = modeEcho
			resp := make([]byte, cfg.Size)
			if err := oneCRR(ctx, cfg.Target, req, resp, time.Now().Add(5*time.Second)); err == nil {
				lats[k], ok[k] = time.Since(due), true
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	var all []time.Duration
	for k, l := range lats {
		if ok[k] {
			all = append(all, l)
		}
	}
	slices.Sort(all)
	res.Ops, res.Errors = int64(len(all)), int64(n-len(all))
	res.P50 = int64(percentile(all, 0.50))
	res.P99 = int64(percentile(all, 0.99))
	res.P999 = int64(percentile(all, 0.999))
	if len(all) > 0 {
		res.Max = int64(all[len(all)-1])
	}
	return res, nil
}

// runLoadCmd is "proxybench load": one measurement against one target; it
// prints the result as one JSON line on stdout.
func runLoadCmd(args []string) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var cfg loadConfig
	fs.StringVar(&cfg.Target, "target", "", "`host:port` to load")
	fs.StringVar(&cfg.Mode, "mode", measRR, "measurement: bulk, rr, crr, lat or crrlat")
	fs.IntVar(&cfg.Conns, "conns", 16, "connections or concurrent clients")
	fs.IntVar(&cfg.Size, "size", 64, "request and response size in bytes")
	fs.Float64Var(&cfg.Rate, "rate", 5000, "total requests per second (lat)")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "how long to send")
	fs.Int64Var(&cfg.MaxOps, "max-ops", 50_000_000, "stop after this many operations")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cfg.Target == "" {
		fmt.Fprintln(os.Stderr, "load: -target is required")
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	res, err := runLoad(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "load %s %s: %v\n", cfg.Mode, cfg.Target, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}
