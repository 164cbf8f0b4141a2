package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/proxy"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/registrar"
	"github.com/rserpool/rserpool/transport"
)

func init() {
	register(command{name: "demo", summary: "registrar, 3 backends, pe-agents and the proxy in one process on loopback", run: runDemo})
}

// demoPool is the pool handle the demo's backends register into.
const demoPool = "DemoPool"

type demoOptions struct {
	listen    transport.Addr
	killEvery time.Duration
	policy    string
	verbose   bool
}

func runDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var o demoOptions
	fs.TextVar(&o.listen, "listen", transport.MustParseAddr("127.0.0.1:8080"), "proxy listen `addr`")
	fs.DurationVar(&o.killEvery, "kill-every", 0, "every `interval`, stop one backend or bring the stopped one back (0: never)")
	fs.StringVar(&o.policy, "policy", "round-robin", "pool `policy` the backends register with")
	fs.BoolVar(&o.verbose, "v", false, "log every component's events to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo(ctx, o, os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "rserpool demo:", err)
		return 1
	}
	return 0
}

// demo runs everything until ctx ends; ready (optional) gets the proxy's
// bound address once the pool is resolvable with all three backends.
func demo(ctx context.Context, o demoOptions, out io.Writer, ready func(addr string)) (err error) {
	level := slog.LevelWarn + 4 // quiet: the demo prints its own story
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// 1. Registrar on a free loopback port.
	rcfg := registrar.DefaultConfig()
	rcfg.ASAP.Listen = []string{"tcp://127.0.0.1:0"}
	reg, err := registrar.New(rcfg, registrar.Options{Logger: log.With("component", "registrar")})
	if err != nil {
		return err
	}
	if err := reg.Start(); err != nil {
		return err
	}
	defer reg.Close()
	regAddrs, err := transport.ParseAddrs(reg.ASAPAddrs())
	if err != nil {
		return err
	}

	// 2. Three backends, each registered by its own pe-agent.
	var backends []*demoBackend
	defer func() {
		for _, b := range backends {
			b.stop()
		}
	}()
	var agents []*peagent.Agent
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for _, a := range agents {
			a.Shutdown(sctx)
		}
	}()
	for i := 1; i <= 3; i++ {
		b, err := startDemoBackend(fmt.Sprintf("backend-%d", i), "127.0.0.1:0")
		if err != nil {
			return err
		}
		backends = append(backends, b)
		a, err := peagent.New(peagent.AgentConfig{
			Registrars:             regAddrs,
			ReregistrationInterval: 10 * time.Second,
			Drain:                  -1,
			Elements: []peagent.ElementConfig{{
				Pool: demoPool, Backend: b.addr, Policy: o.policy, Weight: uint32(i),
				Health: peagent.HealthConfig{Interval: 500 * time.Millisecond, Timeout: 300 * time.Millisecond, Rise: 1, Fall: 1},
			}},
		}, peagent.Options{Logger: log.With("component", "pe-agent", "backend", b.name)})
		if err != nil {
			return err
		}
		if err := a.Start(); err != nil {
			return err
		}
		agents = append(agents, a)
	}

	// 3. The proxy.
	cache, err := pucache.New(pucache.Config{Registrars: regAddrs, StaleTimeout: 2 * time.Second},
		pucache.Options{Logger: log.With("component", "pucache")})
	if err != nil {
		return err
	}
	defer cache.Close()
	if err := cache.Start(); err != nil {
		return err
	}
	retries := 3
	lc := proxy.ListenerConfig{Listen: o.listen, Pool: demoPool, Retries: &retries, ConnectTimeout: time.Second, IdleTimeout: time.Minute}
	px, err := proxy.New(&proxy.Config{Listeners: []proxy.ListenerConfig{lc}}, proxy.Options{Cache: cache, Logger: log.With("component", "proxy")})
	if err != nil {
		return err
	}
	if err := px.Start(); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		px.Shutdown(sctx)
	}()
	addr := px.Addr(o.listen).String()

	// Wait until the registrar lists all three backends.
	pool := cache.Pool(demoPool)
	deadline := time.Now().Add(15 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		rerr := pool.Refresh(rctx)
		cancel()
		if rerr == nil && len(pool.Elements()) == 3 {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the three backends did not register within 15s (last: %v, %d PEs)", rerr, len(pool.Elements()))
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}

	fmt.Fprintf(out, `rserpool demo: a registrar, three backends registered by pe-agents into pool %q (%s),
and the proxy on %s. Try:

    curl http://%s/            # each request may land on another backend
    nc %s %s   # type lines; the backend that serves you echoes them

Registrar (ASAP): %s
`, demoPool, o.policy, addr, addr, hostOf(addr), portOf(addr), strings.Join(reg.ASAPAddrs(), ", "))
	for _, b := range backends {
		fmt.Fprintf(out, "    %s on %s\n", b.name, b.addr)
	}
	if o.killEvery > 0 {
		fmt.Fprintf(out, "\nEvery %v one backend is stopped or brought back; clients keep being served by the others.\n", o.killEvery)
	} else {
		fmt.Fprintf(out, "\nTo watch failover, run with -kill-every 10s (one backend at a time is stopped and brought back).\n")
	}
	fmt.Fprintln(out, "Ctrl-C stops everything.")
	if ready != nil {
		ready(addr)
	}

	if o.killEvery <= 0 {
		<-ctx.Done()
	} else {
		tick := time.NewTicker(o.killEvery)
		defer tick.Stop()
		victim, down := 0, false
		for done := false; !done; {
			select {
			case <-ctx.Done():
				done = true
			case <-tick.C:
				b := backends[victim]
				if !down {
					b.stop()
					fmt.Fprintf(out, "%s  stopped %s: the proxy fails over, its pe-agent deregisters it\n", time.Now().Format("15:04:05"), b.name)
				} else {
					if err := b.restart(); err != nil {
						fmt.Fprintf(out, "%s  could not restart %s: %v\n", time.Now().Format("15:04:05"), b.name, err)
					} else {
						fmt.Fprintf(out, "%s  restarted %s: its pe-agent registers it again\n", time.Now().Format("15:04:05"), b.name)
					}
					victim = (victim + 1) % len(backends)
				}
				down = !down
			}
		}
	}
	fmt.Fprintln(out, "rserpool demo: shutting down")
	return nil
}

func hostOf(hp string) string { h, _, _ := net.SplitHostPort(hp); return h }
func portOf(hp string) string { _, p, _ := net.SplitHostPort(hp); return p }

// demoBackend is a tiny legacy server: it answers an HTTP GET/HEAD with its
// name, and echoes any other line prefixed with its name.
type demoBackend struct {
	name string
	addr string

	mu    sync.Mutex // guards ln, conns
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startDemoBackend(name, addr string) (*demoBackend, error) {
	b := &demoBackend{name: name}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	return b, nil
}

func (b *demoBackend) serve(ln net.Listener) {
	b.mu.Lock()
	b.ln, b.conns = ln, map[net.Conn]struct{}{}
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.handle(c)
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
			}()
		}
	}()
}

func (b *demoBackend) handle(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(io.LimitReader(c, 1<<20), 4096)
	first := true
	for {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		line, err := r.ReadString('\n')
		if len(line) == 0 && err != nil {
			return
		}
		if first && (strings.HasPrefix(line, "GET ") || strings.HasPrefix(line, "HEAD ")) {
			// Skip the request headers, then answer and close.
			for {
				h, err := r.ReadString('\n')
				if err != nil || strings.TrimRight(h, "\r\n") == "" {
					break
				}
			}
			body := "hello from " + b.name + "\n"
			fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(body))
			if strings.HasPrefix(line, "GET ") {
				io.WriteString(c, body)
			}
			return
		}
		first = false
		if _, werr := io.WriteString(c, b.name+": "+line); werr != nil || err != nil {
			return
		}
	}
}

// stop closes the listener and every connection, like a crash would.
func (b *demoBackend) stop() {
	b.mu.Lock()
	if b.ln != nil {
		b.ln.Close()
		b.ln = nil
	}
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// restart listens again on the same address.
func (b *demoBackend) restart() error {
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		return err
	}
	b.serve(ln)
	return nil
}
