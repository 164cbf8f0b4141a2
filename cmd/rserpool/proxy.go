package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	rpprof "runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rserpool/rserpool/proxy"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/wire"
)

func init() {
	register(command{name: "proxy", summary: "run the failover TCP proxy for legacy clients", run: runProxy})
}

// proxyFlagList is a repeatable string flag.
type proxyFlagList []string

func (s *proxyFlagList) String() string     { return strings.Join(*s, ",") }
func (s *proxyFlagList) Set(v string) error { *s = append(*s, v); return nil }

func runProxy(args []string) int {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	var (
		configPath = fs.String("config", "", "TOML config `file` (see configs/proxy.toml)")
		registrars proxyFlagList
		listen     = fs.String("listen", "", "listen `addr` of a single listener (replaces the file's listeners)")
		pool       wire.PoolHandle
		admin      = fs.String("admin", "", "admin HTTP `addr` (/metrics, /healthz, /debug/pprof/)")
		drain      = fs.Duration("drain-timeout", 0, "how long SIGTERM waits for connections (0: file or 30s)")
		readyFile  = fs.String("ready-file", "", "write the bound addresses as JSON to `path` once serving")
		cpuProfile = fs.String("cpuprofile", "", "write a CPU profile to `file` until exit")
		logLevel   = fs.String("log-level", "info", "debug, info, warn or error")
	)
	fs.Var(&registrars, "registrar", "registrar ASAP `addr` (tcp://, sctp://, tls://); repeatable")
	fs.TextVar(&pool, "pool", wire.PoolHandle(""), "pool `handle` of the -listen listener (\\xHH for a byte, \\\\ for a backslash)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool proxy:", err)
		return 2
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	load := func() (*proxy.FileConfig, error) {
		cfg := &proxy.FileConfig{}
		if *configPath != "" {
			var err error
			if cfg, err = proxy.LoadConfig(*configPath); err != nil {
				return nil, err
			}
		}
		if set["registrar"] {
			cfg.Registrars = registrars
		}
		if set["listen"] || set["pool"] {
			if *listen == "" || pool == "" {
				return nil, errors.New("-listen and -pool go together")
			}
			cfg.Listeners = []proxy.ListenerConfig{{Listen: *listen, Pool: pool}}
		}
		if set["admin"] {
			cfg.Admin = *admin
		}
		if set["drain-timeout"] {
			cfg.DrainTimeout = *drain
		}
		return cfg, cfg.Validate()
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool proxy:", err)
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rserpool proxy: -cpuprofile:", err)
			return 2
		}
		if err := rpprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "rserpool proxy: -cpuprofile:", err)
			return 2
		}
		defer func() { rpprof.StopCPUProfile(); f.Close() }()
	}

	// Signals are caught before anything is announced as ready, so that an
	// early SIGHUP reloads instead of killing the process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reg := newRegistry()
	srv, err := startProxyServer(cfg, log, reg)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if *readyFile != "" {
		if err := srv.writeReady(*readyFile); err != nil {
			log.Error("writing ready file", "err", err)
			srv.close()
			return 1
		}
	}

	for {
		select {
		case <-hup:
			ncfg, err := load()
			if err != nil {
				log.Error("reload failed; keeping the running configuration", "err", err)
				continue
			}
			if err := srv.reload(ncfg); err != nil {
				log.Error("reload failed", "err", err)
				continue
			}
			if *readyFile != "" {
				if err := srv.writeReady(*readyFile); err != nil {
					log.Error("writing ready file", "err", err)
				}
			}
			log.Info("configuration reloaded", "listeners", len(ncfg.Listeners))
		case <-ctx.Done():
			stop()
			if err := srv.shutdown(); err != nil {
				log.Warn("drain timeout reached; remaining connections closed", "err", err)
			}
			return 0
		}
	}
}

// proxyServer is a running proxy with its cache and admin endpoint.
type proxyServer struct {
	log      *slog.Logger
	cfg      *proxy.FileConfig
	cache    *pucache.Cache
	p        *proxy.Proxy
	admin    *http.Server
	adminLn  net.Listener
	draining atomic.Bool
	adminErr chan error
}

func startProxyServer(cfg *proxy.FileConfig, log *slog.Logger, reg prometheus.Registerer) (*proxyServer, error) {
	cache, err := pucache.New(pucache.Config{
		Registrars:     cfg.Registrars,
		StaleTimeout:   cfg.Cache.StaleTimeout,
		RequestTimeout: cfg.Cache.RequestTimeout,
		Items:          cfg.Cache.Items,
	}, pucache.Options{Logger: log.With("component", "pucache"), Registerer: reg})
	if err != nil {
		return nil, err
	}
	if g := cfg.Announces(); g != "" {
		if err := cache.ListenAnnounces(g, cfg.AnnounceInterface); err != nil {
			cache.Close()
			return nil, err
		}
		log.Info("listening for registrar announces", "group", g)
	}
	p, err := proxy.New(cfg.Listeners, proxy.Options{Cache: cache, Logger: log, Registerer: reg})
	if err != nil {
		cache.Close()
		return nil, err
	}
	s := &proxyServer{log: log, cfg: cfg, cache: cache, p: p}
	s.warm(cfg)
	if err := p.Start(); err != nil {
		cache.Close()
		return nil, err
	}
	if cfg.Admin != "" {
		if err := s.startAdmin(cfg.Admin, reg); err != nil {
			p.Close()
			cache.Close()
			return nil, err
		}
	}
	return s, nil
}

// warm resolves every configured pool once, so that the first client does
// not wait for a registrar; a failure is logged, not fatal (the pool is
// resolved again on the first connection).
func (s *proxyServer) warm(cfg *proxy.FileConfig) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range cfg.Listeners {
		if err := s.cache.Pool(l.Pool).Refresh(ctx); err != nil {
			s.log.Warn("pool not resolvable yet", "pool", l.Pool, "err", err)
		}
	}
}

func (s *proxyServer) startAdmin(addr string, reg prometheus.Registerer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	mux := http.NewServeMux()
	var gatherer prometheus.Gatherer = prometheus.DefaultGatherer
	if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	}
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if s.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.adminLn = ln
	s.admin, ln = newAdminServer(mux, ln)
	s.adminErr = make(chan error, 1)
	go func() { s.adminErr <- s.admin.Serve(ln) }()
	return nil
}

func (s *proxyServer) reload(cfg *proxy.FileConfig) error {
	if err := s.p.Reload(cfg.Listeners); err != nil {
		return err
	}
	s.cache.SetRegistrars(cfg.Registrars)
	s.cfg = cfg
	return nil
}

// shutdown drains (up to drain_timeout) and stops everything.
func (s *proxyServer) shutdown() error {
	s.draining.Store(true)
	d := s.cfg.DrainTimeout
	if d <= 0 {
		d = 30 * time.Second
	}
	s.log.Info("draining", "drain_timeout", d, "active", s.p.Active())
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := s.p.Shutdown(ctx)
	s.closeRest()
	return err
}

func (s *proxyServer) close() {
	s.p.Close()
	s.closeRest()
}

func (s *proxyServer) closeRest() {
	if s.admin != nil {
		s.admin.Close()
		<-s.adminErr
	}
	s.cache.Close()
}

// writeReady writes {"listeners": {listen: bound addr}, "admin": addr} atomically.
func (s *proxyServer) writeReady(path string) error {
	out := struct {
		Listeners map[string]string `json:"listeners"`
		Admin     string            `json:"admin,omitempty"`
	}{Listeners: map[string]string{}}
	for _, l := range s.cfg.Listeners {
		if a := s.p.Addr(l.Listen); a != nil {
			out.Listeners[l.Listen] = a.String()
		}
	}
	if s.adminLn != nil {
		out.Admin = s.adminLn.Addr().String()
	}
	return writeJSONFile(path, out)
}
