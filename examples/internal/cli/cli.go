// Package cli holds what the example programs share: flags for registrars,
// the pool user's cache, the pool element's server and signal handling.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	peagent "github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/session"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Common are the flags of every example program.
type Common struct {
	Registrars []transport.Addr
	Pool       string
	Verbose    bool
}

// Register adds -registrar (repeatable), -pool and -v to fs.
func (c *Common) Register(fs *flag.FlagSet, pool string) {
	fs.Func("registrar", "registrar ASAP `address` (tcp://h:p or sctp://h:p; repeat for more; default tcp://127.0.0.1:3863)",
		func(s string) error {
			a, err := transport.ParseAddr(s)
			c.Registrars = append(c.Registrars, a)
			return err
		})
	fs.StringVar(&c.Pool, "pool", pool, "pool `handle` (escaped form: \\xHH for any byte)")
	fs.BoolVar(&c.Verbose, "v", false, "log the session layer's events to stderr")
}

// MustParse parses the command line into fs and returns the pool handle;
// bad flags end the program with exit status 2.
func (c *Common) MustParse(fs *flag.FlagSet) wire.PoolHandle {
	err := fs.Parse(os.Args[1:])
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(c.Registrars) == 0 {
		c.Registrars = []transport.Addr{transport.MustParseAddr("tcp://127.0.0.1:3863")}
	}
	var pool wire.PoolHandle
	if err == nil {
		pool, err = wire.ParsePoolHandle(c.Pool)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", fs.Name(), err)
		os.Exit(2)
	}
	return pool
}

// Exit ends the program: status 0 for a nil error, else 1 after printing it.
func Exit(name string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Dial opens a session with the pool through cache, giving up after 10 s.
func (c *Common) Dial(ctx context.Context, cache *pucache.Cache, pool wire.PoolHandle, ppid uint32, log *slog.Logger) (*session.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return session.Dial(ctx, pool, session.Config{Cache: cache, PPID: ppid, Logger: log.With("component", "session")})
}

// Logger logs to stderr: informational events with -v, else warnings only.
func (c *Common) Logger() *slog.Logger {
	level := slog.LevelWarn
	if c.Verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Cache returns a pool user's cache over the registrars.
func (c *Common) Cache(log *slog.Logger) (*pucache.Cache, error) {
	cache, err := pucache.New(pucache.Config{Registrars: c.Registrars, StaleTimeout: 2 * time.Second},
		pucache.Options{Logger: log.With("component", "pucache")})
	if err != nil {
		return nil, err
	}
	if err := cache.Start(); err != nil {
		cache.Close()
		return nil, err
	}
	return cache, nil
}

// SignalContext is cancelled by SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// PE are the flags of a pool element program.
type PE struct {
	Common
	Listen string
	ID     uint
	Policy string
}

// Register adds the common flags, -listen, -id and -policy to fs.
func (p *PE) Register(fs *flag.FlagSet, pool string) {
	p.Common.Register(fs, pool)
	fs.StringVar(&p.Listen, "listen", "tcp://127.0.0.1:0", "user transport `address` to serve on and register (tcp://h:p, the TCP mapping, or sctp://h:p; a specific host, port 0 picks one)")
	fs.UintVar(&p.ID, "id", 0, "PE `identifier` (0: random)")
	fs.StringVar(&p.Policy, "policy", "round-robin", "pool `policy`")
}

// Serve registers the PE and serves sessions with handler until SIGINT or
// SIGTERM, then deregisters. started (optional) is called once the
// registrar has accepted the PE.
func (p *PE) Serve(pool wire.PoolHandle, ppid uint32, handler func(context.Context, *session.Peer), started func(*session.Server)) error {
	policy, err := wire.ParsePolicyName(p.Policy)
	if err != nil {
		return err
	}
	if p.ID > 0xffffffff {
		return fmt.Errorf("-id %d: more than 32 bits", p.ID)
	}
	log := p.Logger()
	srv, err := session.NewServer(session.ServerConfig{
		Element: peagent.PEConfig{Registrars: p.Registrars, PoolHandle: pool, ID: uint32(p.ID),
			Policy: wire.Policy{Type: policy, Weight: 1}, ReregistrationInterval: 10 * time.Second},
		PPID: ppid, Handler: handler, Logger: log.With("component", "session"),
	})
	if err != nil {
		return err
	}
	la, err := transport.ParseAddr(p.Listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	ln, err := transport.Listen(la, nil)
	if err != nil {
		return err
	}
	ctx, stop := SignalContext()
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = srv.WaitRegistered(rctx)
	cancel()
	if err != nil {
		srv.Close()
		<-done
		return err
	}
	if started != nil {
		started(srv)
	}
	select {
	case <-ctx.Done():
	case err := <-done:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, session.ErrClosed) {
		return serr
	}
	return err
}

// Describe names a served PE for people: its ID and where it listens.
func Describe(srv *session.Server) string {
	self := srv.Self()
	addrs := make([]string, len(self.User.Addrs))
	for i, a := range self.User.Addrs {
		addrs[i] = a.String()
	}
	return fmt.Sprintf("PE $%08x on %s %s port %d", self.ID, self.User.Type, strings.Join(addrs, "/"), self.User.Port)
}
