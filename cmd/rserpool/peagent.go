package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	peagent "github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/wire"
)

func init() {
	register(command{name: "pe-agent", summary: "register legacy servers as pool elements", run: runPEAgent})
}

// addrList is a repeatable string flag.
type addrList []string

func (s *addrList) String() string     { return strings.Join(*s, ",") }
func (s *addrList) Set(v string) error { *s = append(*s, v); return nil }

func runPEAgent(args []string) int {
	fs := flag.NewFlagSet("pe-agent", flag.ContinueOnError)
	var (
		configPath = fs.String("config", "", "TOML config `file`")
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
			if cfg, err = peagent.LoadConfigFile(*configPath); err != nil {
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
	cfg = cfg.Normalize()

	reg := newRegistry()
	a, err := peagent.NewAgent(cfg, peagent.Options{Logger: log, Registerer: reg})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool pe-agent:", err)
		return 2
	}

	var adminSrv *http.Server
	adminAddr := ""
	adminDone := make(chan struct{})
	if cfg.Admin != "" {
		ln, err := net.Listen("tcp", cfg.Admin)
		if err != nil {
			log.Error("admin listen", "err", err)
			a.Close()
			return 1
		}
		adminAddr = ln.Addr().String()
		adminSrv, ln = newAdminServer(peAgentAdmin(a, reg), ln)
		go func() {
			defer close(adminDone)
			if err := adminSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin server", "err", err)
			}
		}()
	} else {
		close(adminDone)
	}
	if err := a.Start(); err != nil {
		log.Error("start", "err", err)
		return 1
	}
	log.Info("pe-agent started", "registrars", cfg.Registrars, "elements", len(cfg.Elements), "admin", adminAddr)
	if *readyFile != "" {
		if err := writeJSONFile(*readyFile, map[string]any{"admin": adminAddr, "pid": os.Getpid()}); err != nil {
			log.Error("writing ready file", "err", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if *configPath == "" {
				log.Warn("SIGHUP without -config: nothing to reload")
				continue
			}
			ncfg, err := load()
			if err != nil {
				log.Error("reload failed; keeping the running configuration", "err", err)
				continue
			}
			if err := a.Reload(ncfg); err != nil {
				log.Error("reload", "err", err)
			} else {
				log.Info("configuration reloaded", "elements", len(ncfg.Elements))
			}
		case <-ctx.Done():
			stop() // a second signal kills the process
			log.Info("deregistering")
			sctx, cancel := context.WithTimeout(context.Background(), cfg.ResponseTimeout+5*time.Second)
			err := a.Shutdown(sctx)
			cancel()
			if err != nil {
				log.Warn("deregistration", "err", err)
			}
			if cfg.Drain > 0 {
				log.Info("draining", "for", cfg.Drain)
				time.Sleep(cfg.Drain) // lets connections already sent to the backends finish
			}
			if adminSrv != nil {
				actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = adminSrv.Shutdown(actx)
				cancel()
			}
			<-adminDone
			log.Info("stopped")
			return 0
		}
	}
}

// peAgentAdmin serves /metrics, /healthz (200 when every healthy backend is
// registered) and /status (JSON, one entry per element).
func peAgentAdmin(a *peagent.Agent, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.Ready() {
			http.Error(w, "not registered", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		type status struct {
			Pool       wire.PoolHandle `json:"pool"`
			Backend    string          `json:"backend"`
			ID         string          `json:"id"`
			Healthy    bool            `json:"healthy"`
			Registered bool            `json:"registered"`
			Load       uint32          `json:"load"`
			Home       string          `json:"home,omitempty"`
			HomeAddr   string          `json:"home_addr,omitempty"`
			LastError  string          `json:"last_error,omitempty"`
		}
		out := []status{}
		for _, s := range a.Status() {
			st := status{Pool: s.Pool, Backend: s.Backend, ID: fmt.Sprintf("0x%08x", s.ID), Healthy: s.Healthy,
				Registered: s.Registered, Load: s.Load, HomeAddr: s.HomeAddr}
			if s.Home != 0 {
				st.Home = fmt.Sprintf("0x%08x", s.Home)
			}
			if s.LastErr != nil {
				st.LastError = s.LastErr.Error()
			}
			out = append(out, st)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	})
	return mux
}
