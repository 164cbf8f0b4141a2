package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	rpprof "runtime/pprof"
	"slices"
	"strings"

	"github.com/rserpool/rserpool/proxy"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

func init() {
	register(command{name: "proxy", summary: "run the failover TCP proxy for legacy clients", run: runProxy})
}

func runProxy(args []string) int {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	var (
		configPath = fs.String("config", "", "TOML config `file`, or a directory whose *.toml files are merged (see configs/proxy.toml, configs/proxy.d)")
		registrars addrList
		listen     transport.Addr
		pool       wire.PoolHandle
		admin      = fs.String("admin", "", "admin HTTP `addr` (/metrics, /healthz, /debug/pprof/)")
		drain      = fs.Duration("drain-timeout", 0, "how long SIGTERM waits for connections (0: file or 30s)")
		readyFile  = fs.String("ready-file", "", "write the bound addresses as JSON to `path` once serving (and on $NOTIFY_SOCKET: READY=1, LISTENERS=, ADMIN=)")
		cpuProfile = fs.String("cpuprofile", "", "write a CPU profile to `file` until exit")
		logLevel   = fs.String("log-level", "info", "debug, info, warn or error")
	)
	fs.Var(&registrars, "registrar", "registrar ASAP `addr` (tcp://, sctp://, tls://); repeatable")
	fs.TextVar(&listen, "listen", transport.Addr{}, "listen `addr` of a single listener (replaces the file's listeners)")
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
	load := func() (*proxy.Config, error) {
		cfg := &proxy.Config{}
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
			if listen.IsZero() || pool == "" {
				return nil, errors.New("-listen and -pool go together")
			}
			cfg.Listeners = []proxy.ListenerConfig{{Listen: listen, Pool: pool}}
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
	p, err := proxy.New(cfg, proxy.Options{Logger: log, Registerer: newRegistry()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool proxy:", err)
		return 2
	}
	ctx, stop, hup := signals()
	defer stop()
	if err := p.Start(); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	svc := &service{
		name: "proxy", log: log, readyFile: *readyFile,
		readyJSON: func() any {
			return struct {
				Listeners map[string]string `json:"listeners"`
				Admin     string            `json:"admin,omitempty"`
			}{p.Bound(), p.AdminAddr()}
		},
		notify: func() []string {
			var pairs []string
			for listen, bound := range p.Bound() {
				pairs = append(pairs, listen+"="+bound)
			}
			slices.Sort(pairs)
			return []string{"LISTENERS=" + strings.Join(pairs, " "), "ADMIN=" + p.AdminAddr()}
		},
		reload: func() error {
			ncfg, err := load()
			if err != nil {
				return err
			}
			return p.Reload(ncfg)
		},
		shutdown: func() error { return p.Shutdown(context.Background()) },
	}
	return svc.run(ctx, stop, hup)
}
