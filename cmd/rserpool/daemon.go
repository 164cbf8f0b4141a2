package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rserpool/rserpool/internal/ratelog"
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
