package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rserpool/rserpool/internal/ratelog"
	"github.com/rserpool/rserpool/internal/sdnotify"
	"github.com/rserpool/rserpool/transport"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// addrList is a repeatable transport address flag (transport.Addr text).
type addrList []transport.Addr

func (s *addrList) String() string {
	parts := make([]string, len(*s))
	for i, a := range *s {
		parts[i] = a.String()
	}
	return strings.Join(parts, ",")
}

func (s *addrList) Set(v string) error {
	a, err := transport.ParseAddr(v)
	if err != nil {
		return err
	}
	*s = append(*s, a)
	return nil
}

// newLogger returns the daemons' text logger on stderr at the named level
// (debug, info, warn or error). Lines at info and above pass at most once a
// second per message (ratelog), so that a flood of connections or
// messages cannot flood the log; the next line that passes says how many
// were held back.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})
	return slog.New(ratelog.New(h, ratelog.Options{})), nil
}

// newRegistry returns a metrics registry with the Go runtime and process
// collectors, for a daemon's /metrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// writeJSONFile writes v as JSON to path atomically (a temporary file
// renamed over it), so a reader never sees half a file.
func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// service is a started daemon as the signal loop drives it.
type service struct {
	name string
	log  *slog.Logger
	// readyFile, when set, receives readyJSON's value after the start and
	// after every reload.
	readyFile string
	readyJSON func() any
	// notify lists the VAR=value lines sent with READY=1 (sd_notify).
	notify func() []string
	// serving, if set, runs once readiness was first announced.
	serving func()
	// reload re-reads the configuration and applies it (SIGHUP).
	reload func() error
	// shutdown stops the daemon gracefully (SIGINT, SIGTERM).
	shutdown func() error
	// strictShutdown makes a shutdown error exit 1 (else it is logged).
	strictShutdown bool
}

// signals returns the context ended by SIGINT or SIGTERM and the SIGHUP
// channel; call it before starting anything, so that an early SIGHUP
// reloads instead of killing the process.
func signals() (context.Context, context.CancelFunc, chan os.Signal) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return ctx, stop, hup
}

// run announces readiness (ready file, sd_notify READY=1 with the bound
// addresses), reloads on SIGHUP and shuts down on SIGINT/SIGTERM (a
// second signal kills the process). It returns the exit code.
func (s *service) run(ctx context.Context, stop context.CancelFunc, hup chan os.Signal) int {
	defer signal.Stop(hup)
	if err := s.announce(); err != nil {
		s.log.Error("announcing readiness", "err", err)
		s.shutdown()
		return 1
	}
	if s.serving != nil {
		s.serving()
	}
	for {
		select {
		case <-hup:
			_ = sdnotify.Notify(sdnotify.Reloading)
			if err := s.reload(); err != nil {
				s.log.Error("reload failed; keeping the running configuration", "err", err)
			} else {
				s.log.Info("configuration reloaded")
			}
			if err := s.announce(); err != nil {
				s.log.Error("announcing readiness", "err", err)
			}
		case <-ctx.Done():
			stop() // a second signal kills the process
			_ = sdnotify.Notify(sdnotify.Stopping)
			if err := s.shutdown(); err != nil {
				if s.strictShutdown {
					s.log.Error("shutdown", "err", err)
					return 1
				}
				s.log.Warn("shutdown", "err", err)
			}
			s.log.Info("stopped")
			return 0
		}
	}
}

// announce writes the ready file and sends READY=1.
func (s *service) announce() error {
	if s.readyFile != "" {
		if err := writeJSONFile(s.readyFile, s.readyJSON()); err != nil {
			return err
		}
	}
	return sdnotify.Notify(append([]string{sdnotify.Ready, "STATUS=" + s.name + " serving"}, s.notify()...)...)
}
