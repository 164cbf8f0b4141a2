package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rserpool/rserpool/registrar"
)

func init() {
	register(command{name: "registrar", summary: "run a pool registrar (ASAP server)", run: runRegistrar})
}

func runRegistrar(args []string) int {
	fs := flag.NewFlagSet("registrar", flag.ContinueOnError)
	var (
		configPath = fs.String("config", "", "TOML config `file`, or a directory whose *.toml files are merged")
		id         = fs.String("id", "", "server identifier (hex); random when absent")
		asap       stringList
		enrp       stringList
		peers      stringList
		admin      = fs.String("admin", "", "admin HTTP `addr` (/metrics, /healthz, /handlespace)")
		announce   = fs.Bool("announce", false, "send ASAP Server Announces by multicast")
		readyFile  = fs.String("ready-file", "", "write the bound addresses as JSON to `path` when serving")
		logLevel   = fs.String("log-level", "info", "debug, info, warn or error")
	)
	fs.Var(&asap, "asap", "ASAP listen `addr` (tcp://, sctp://, tls://); repeatable")
	fs.Var(&enrp, "enrp", "ENRP listen `addr` (tcp:// TCP mapping, sctp://, tls://); repeatable")
	fs.Var(&peers, "peer", "static ENRP peer `addr`; repeatable")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool registrar:", err)
		return 2
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	load := func() (registrar.Config, error) {
		cfg := registrar.DefaultConfig()
		if *configPath != "" {
			var err error
			if cfg, err = registrar.LoadConfig(*configPath); err != nil {
				return cfg, err
			}
		}
		if set["id"] {
			if err := cfg.ID.UnmarshalText([]byte(*id)); err != nil {
				return cfg, fmt.Errorf("-id: %w", err)
			}
		}
		if set["asap"] {
			cfg.ASAP.Listen = asap
		}
		if set["enrp"] {
			cfg.ENRP.Listen = enrp
		}
		if set["peer"] {
			cfg.ENRP.Peers = peers
		}
		if set["admin"] {
			cfg.Admin.Listen = *admin
		}
		if set["announce"] {
			cfg.Announce.Enabled = *announce
		}
		return cfg, cfg.Validate()
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool registrar:", err)
		return 2
	}
	r, err := registrar.New(cfg, registrar.Options{Logger: log, Registerer: newRegistry()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool registrar:", err)
		return 2
	}
	ctx, stop, hup := signals()
	defer stop()
	if err := r.Start(); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	svc := &service{
		name: "registrar", log: log, readyFile: *readyFile,
		readyJSON: func() any {
			return struct {
				ID    string   `json:"id"`
				ASAP  []string `json:"asap"`
				Admin string   `json:"admin,omitempty"`
				PID   int      `json:"pid"`
				ENRP  []string `json:"enrp,omitempty"`
			}{r.ID().String(), r.ASAPAddrs(), r.AdminAddr(), os.Getpid(), r.ENRPAddrs()}
		},
		notify: func() []string {
			return []string{"ID=" + r.ID().String(), "ASAP=" + strings.Join(r.ASAPAddrs(), " "),
				"ENRP=" + strings.Join(r.ENRPAddrs(), " "), "ADMIN=" + r.AdminAddr()}
		},
		serving: func() {
			log.Info("registrar serving", "id", r.ID().String(), "asap", r.ASAPAddrs(), "admin", r.AdminAddr())
		},
		reload: func() error {
			cfg, err := load()
			if err != nil {
				return err
			}
			return r.Reload(cfg)
		},
		strictShutdown: true,
		shutdown: func() error {
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return r.Shutdown(sctx)
		},
	}
	return svc.run(ctx, stop, hup)
}
