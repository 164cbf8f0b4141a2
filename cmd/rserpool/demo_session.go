package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rserpool/rserpool/examples/counter"
	peagent "github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/registrar"
	"github.com/rserpool/rserpool/session"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

func init() {
	register(command{name: "demo-sessions", summary: "a counting session survives its pool elements being killed one by one (session layer)", run: runDemoSessions})
}

// demoSessionPool is the pool handle of the counter PEs.
const demoSessionPool = "CounterPool"

type demoSessionOptions struct {
	pes       int
	interval  time.Duration
	killEvery uint64 // steps between kills; 0: never
	steps     uint64 // 0: until ctx ends
	verbose   bool
}

func runDemoSessions(args []string) int {
	fs := flag.NewFlagSet("demo-sessions", flag.ContinueOnError)
	var o demoSessionOptions
	fs.IntVar(&o.pes, "pes", 3, "pool elements serving the counter")
	fs.DurationVar(&o.interval, "interval", 200*time.Millisecond, "time between steps")
	fs.Uint64Var(&o.killEvery, "kill-every", 25, "kill the serving PE every `n` steps (and start a new one); 0: never")
	fs.Uint64Var(&o.steps, "steps", 0, "stop after `n` steps (0: at Ctrl-C)")
	fs.BoolVar(&o.verbose, "v", false, "log every component's events to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.pes < 2 {
		fmt.Fprintln(os.Stderr, "rserpool demo-sessions: -pes must be at least 2 (someone has to take over)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demoSessions(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rserpool demo-sessions:", err)
		return 1
	}
	return 0
}

// counterPE is one PE of the demo.
type counterPE struct {
	id   uint32
	srv  *session.Server
	done chan error // Serve's result
}

// demoSessions runs a registrar, o.pes counter PEs and one pool user whose
// session counts a step every o.interval; every o.killEvery steps the PE
// serving it is killed (closed like a crash, no deregistration) and a new
// one started. It returns an error if a step is lost or counted twice.
func demoSessions(ctx context.Context, o demoSessionOptions, out io.Writer) error {
	level := slog.LevelWarn + 4
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

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
	regs, err := transport.ParseAddrs(reg.ASAPAddrs())
	if err != nil {
		return err
	}

	key := make([]byte, 32) // the pool's cookie key, shared by its PEs
	rand.Read(key)
	signer, err := session.NewSigner(key)
	if err != nil {
		return err
	}
	events := make(chan counter.Event, 16)
	pes := map[uint32]*counterPE{}
	defer func() {
		for _, p := range pes {
			p.srv.Close()
			<-p.done
		}
	}()
	nextID := uint32(1)
	startPE := func() (*counterPE, error) {
		id := nextID
		nextID++
		srv, err := session.NewServer(session.ServerConfig{
			Element: peagent.PEConfig{Registrars: regs, PoolHandle: demoSessionPool, ID: id,
				Policy: wire.Policy{Type: wire.PolicyRoundRobin}},
			Handler: counter.Handler(id, signer, func(e counter.Event) {
				select {
				case events <- e:
				default: // the demo prints events as they come; never block a PE
				}
			}),
			Logger: log.With("component", "pe", "pe", id),
		})
		if err != nil {
			return nil, err
		}
		ln, err := transport.Listen(transport.MustParseAddr("tcp://127.0.0.1:0"), nil)
		if err != nil {
			return nil, err
		}
		p := &counterPE{id: id, srv: srv, done: make(chan error, 1)}
		go func() { p.done <- srv.Serve(context.Background(), ln) }()
		pes[id] = p
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return p, srv.WaitRegistered(wctx)
	}
	for range o.pes {
		if _, err := startPE(); err != nil {
			return err
		}
	}

	cache, err := pucache.New(pucache.Config{Registrars: regs, StaleTimeout: 2 * time.Second},
		pucache.Options{Logger: log.With("component", "pucache")})
	if err != nil {
		return err
	}
	if err := cache.Start(); err != nil {
		cache.Close()
		return err
	}
	defer cache.Close()
	s, err := session.Dial(ctx, demoSessionPool, session.Config{Cache: cache, Logger: log.With("component", "session")})
	if err != nil {
		return err
	}
	defer s.Close()

	fmt.Fprintf(out, `rserpool demo-sessions: a registrar (%s), %d PEs of pool %q serving a counter whose state
lives in signed cookies, and one pool user whose session counts a step every %v. Every %d steps
the PE serving the session is killed (like a crash) and a new PE joins. Watch the count go on.
Ctrl-C stops.

`, regs[0], o.pes, demoSessionPool, o.interval, o.killEvery)

	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	failovers := 0
	n := uint64(0)
	for o.steps == 0 || n < o.steps {
		select {
		case <-ctx.Done():
			fmt.Fprintf(out, "\n%d steps, %d failovers, no step lost or counted twice\n", n, failovers)
			return nil
		case <-tick.C:
		}
		n++
		a, fos, err := counter.Step(ctx, s, n)
		for _, fo := range fos {
			failovers++
			fmt.Fprintf(out, "%s  failover: PE %d -> PE %d, cookie echoed: %v\n", stampNow(), fo.From.ID, fo.To.ID, fo.CookieEchoed)
		}
	drain:
		for {
			select {
			case e := <-events:
				if e.Err != nil {
					fmt.Fprintf(out, "%s  PE %d refused a Cookie Echo: %v\n", stampNow(), e.PE, e.Err)
				} else {
					fmt.Fprintf(out, "%s  PE %d restored count %d from the Cookie Echo\n", stampNow(), e.PE, e.Count)
				}
			default:
				break drain
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		fmt.Fprintf(out, "%s  step %4d: count %4d from PE %d\n", stampNow(), n, a.Count, a.PE)
		if o.killEvery > 0 && n%o.killEvery == 0 {
			victim := pes[a.PE]
			victim.srv.Close()
			<-victim.done
			delete(pes, a.PE)
			p, err := startPE()
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s  killed PE %d (no deregistration); PE %d joined the pool\n", stampNow(), a.PE, p.id)
		}
	}
	fmt.Fprintf(out, "\n%d steps, %d failovers, no step lost or counted twice\n", n, failovers)
	return nil
}

func stampNow() string { return time.Now().Format("15:04:05.000") }
