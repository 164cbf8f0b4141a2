// Package admin is the admin HTTP server of the daemons (registrar,
// pe-agent, proxy): /metrics, /healthz, the HTML status page at / and each
// daemon's own endpoints, on one hardened http.Server.
//
// # Usage
//
//	mux := admin.Mux(reg, func() error { return nil }) // /metrics, /healthz
//	mux.HandleFunc("GET /status", ...)
//	page, err := admin.NewPage(admin.PageConfig{Daemon: "proxy", Content: tmpl, Data: data}) // data(ctx, now, rates)
//	page.Handle(mux)                                    // GET / and GET /assets/
//	srv, err := admin.Listen("127.0.0.1:9464", mux, log)
//	addr := srv.Addr()                                  // the bound address
//	err = srv.Shutdown(ctx)                             // or srv.Close()
//
// A status page is rendered on the server with html/template from the
// daemon's own template (defining "title" and "content") inside one shared
// layout; its stylesheet and a small script that refreshes the content in
// place every RefreshSeconds are embedded and served under /assets/, so
// the page loads nothing from elsewhere (its Content-Security-Policy
// allows nothing else). Rates turns counters into per-second rates from
// the samples the page takes, without a goroutine. docs/status-page.md
// shows the three pages.
//
// # Concurrency
//
// Listen starts one goroutine (Serve); Shutdown and Close wait for it.
// Both are safe to call more than once and from any goroutine. Page and
// Rates are safe for concurrent use.
//
// # Limitations
//
// The admin endpoints have no authentication: listen on a loopback or
// management address. Clients are bounded so that slow or idle ones
// (slowloris) cannot pile up: 5 s for the request header (16 KiB at
// most), 10 s for the whole request, 2 minutes to write a response (a
// CPU profile takes 30 s, /handlespace of a million PEs is large), idle
// keep-alive connections closed after 30 s, and at most 256 connections
// served at once (further ones wait in the listen backlog), so that a
// flood of admin connections cannot take the descriptors the daemon's
// own ports need.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Limits of every admin server.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 2 * time.Minute
	IdleTimeout       = 30 * time.Second
	MaxHeaderBytes    = 16 << 10
	MaxConns          = 256
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
			WriteTimeout:      WriteTimeout,
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
		if err := s.srv.Serve(limitListener(ln, MaxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
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

// limitListener accepts at most n connections that are open at once: Accept
// waits for one to close.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
