// Package admin is the admin HTTP server of the daemons (registrar,
// pe-agent, proxy): /metrics, /healthz and each daemon's own endpoints,
// on one hardened http.Server.
//
// # Usage
//
//	mux := admin.Mux(reg, func() error { return nil }) // /metrics, /healthz
//	mux.HandleFunc("GET /status", ...)
//	srv, err := admin.Listen("127.0.0.1:9464", mux, log)
//	addr := srv.Addr()                                  // the bound address
//	err = srv.Shutdown(ctx)                             // or srv.Close()
//
// # Concurrency
//
// Listen starts one goroutine (Serve); Shutdown and Close wait for it.
// Both are safe to call more than once and from any goroutine.
//
// # Limitations
//
// The admin endpoints have no authentication: listen on a loopback or
// management address. Requests are bounded (header 5 s and 16 KiB, body
// read 10 s, idle connections 60 s), responses are not (a CPU profile
// takes its 30 s).
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Limits of every admin server.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 16 << 10
)

// Server is a running admin HTTP server.
type Server struct {
	srv  *http.Server
	addr string
	log  *slog.Logger
	done chan struct{} // closed when Serve returned
}

// Listen binds addr ("host:port"; port 0 picks one) and serves h on it.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: ReadHeaderTimeout,
			ReadTimeout:       ReadTimeout,
			IdleTimeout:       IdleTimeout,
			MaxHeaderBytes:    MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		addr: ln.Addr().String(),
		log:  log,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server failed", "err", err)
		}
	}()
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() string { return s.addr }

// Shutdown stops accepting and waits for requests in flight until ctx
// ends, then closes what is left; it waits for Serve to return.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return err
}

// Close closes the listener and every connection and waits for Serve.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// Mux returns a ServeMux with /metrics (from g; nil means none) and
// /healthz (200 "ok" when ready returns nil, else 503 with its error).
func Mux(g prometheus.Gatherer, ready func() error) *http.ServeMux {
	mux := http.NewServeMux()
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Gatherer returns r as a Gatherer when it is one (a *prometheus.Registry),
// else the default gatherer.
func Gatherer(r prometheus.Registerer) prometheus.Gatherer {
	if g, ok := r.(prometheus.Gatherer); ok {
		return g
	}
	return prometheus.DefaultGatherer
}
