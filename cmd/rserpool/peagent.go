package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	peagent "github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/wire"
)

func init() {
	register(command{name: "pe-agent", summary: "register legacy servers as pool elements", run: runPEAgent})
}

func runPEAgent(args []string) int {
	fs := flag.NewFlagSet("pe-agent", flag.ContinueOnError)
	var (
		configPath = fs.String("config", "", "TOML config `file`, or a directory whose *.toml files are merged")
		registrars addrList
		pool       wire.PoolHandle
		backend    = fs.String("backend", "", "backend `host:port` to register into -pool")
		policy     = fs.String("policy", "", "policy `name` of that element (default round-robin)")
		weight     = fs.Uint("weight", 0, "policy weight of that element (default 1)")
		admin      = fs.String("admin", "", "admin HTTP `addr` (/metrics, /healthz, /status)")
		drain      = fs.Duration("drain", 0, "wait after deregistering on SIGTERM (default 5s; negative: none)")
		readyFile  = fs.String("ready-file", "", "write {\"admin\", \"pid\"} as JSON to `path` once started")
		logLevel   = fs.String("log-level", "info", "debug, info, warn or error")
	)
	fs.Var(&registrars, "registrar", "registrar `addr` (tcp://, sctp://, tls://); repeatable")
	fs.TextVar(&pool, "pool", wire.PoolHandle(""), "pool `handle` of the element given by -backend (\\xHH for a byte, \\\\ for a backslash)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: rserpool pe-agent [-config F] [-registrar ADDR]... -pool HANDLE -backend ADDR [-policy NAME] [-weight N] [-admin ADDR]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "rserpool pe-agent: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool pe-agent:", err)
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	load := func() (peagent.AgentConfig, error) {
		var cfg peagent.AgentConfig
		if *configPath != "" {
			var err error
			if cfg, err = peagent.LoadConfig(*configPath); err != nil {
				return cfg, err
			}
		}
		if set["registrar"] {
			cfg.Registrars = registrars
		}
		if set["admin"] {
			cfg.Admin = *admin
		}
		if set["drain"] {
			cfg.Drain = *drain
		}
		if set["pool"] || set["backend"] {
			if pool == "" || *backend == "" {
				return cfg, errors.New("-pool and -backend go together")
			}
			cfg.Elements = append(cfg.Elements, peagent.ElementConfig{
				Pool: pool, Backend: *backend, Policy: *policy, Weight: uint32(*weight),
			})
		} else if set["policy"] || set["weight"] {
			return cfg, errors.New("-policy and -weight need -pool and -backend")
		}
		return cfg, cfg.Validate()
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool pe-agent:", err)
		return 2
	}
	a, err := peagent.New(cfg, peagent.Options{Logger: log, Registerer: newRegistry()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool pe-agent:", err)
		return 2
	}
	ctx, stop, hup := signals()
	defer stop()
	if err := a.Start(); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	svc := &service{
		name: "pe-agent", log: log, readyFile: *readyFile,
		readyJSON: func() any { return map[string]any{"admin": a.AdminAddr(), "pid": os.Getpid()} },
		notify:    func() []string { return []string{"ADMIN=" + a.AdminAddr()} },
		reload: func() error {
			if *configPath == "" {
				return errors.New("SIGHUP without -config: nothing to reload")
			}
			ncfg, err := load()
			if err != nil {
				return err
			}
			return a.Reload(ncfg)
		},
		shutdown: func() error {
			log.Info("deregistering")
			return a.Shutdown(context.Background())
		},
	}
	return svc.run(ctx, stop, hup)
}
