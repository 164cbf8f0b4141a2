package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/net/netutil"

	"github.com/rserpool/rserpool/internal/ratelog"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

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

// Admin server bounds (the registrar's are the same): at most
// adminMaxConns connections at once, more wait in the kernel's backlog, so
// that a flood of admin connections cannot take the descriptors the
// daemon's own ports need; a keep-alive connection idle for
// adminIdleTimeout is closed, so that idle clients cannot hold the slots.
const (
	adminMaxConns    = 256
	adminIdleTimeout = 30 * time.Second
)

// newAdminServer returns the HTTP server of a daemon's admin endpoint and
// ln limited to adminMaxConns connections, for Serve.
func newAdminServer(h http.Handler, ln net.Listener) (*http.Server, net.Listener) {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: adminIdleTimeout},
		netutil.LimitListener(ln, adminMaxConns)
}
