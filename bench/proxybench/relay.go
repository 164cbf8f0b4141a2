package main

import (
	"flag"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
)

// newRelay returns a server that relays each connection to backend with two
// plain io.Copy calls and half-close: the naive Go relay, as a reference
// point between direct and a full proxy.
func newRelay(log *slog.Logger, backend string) *server {
	return newServer(func(c net.Conn) {
		b, err := dialer.Dial("tcp", backend)
		if err != nil {
			log.Warn("relay dial", "err", err)
			return
		}
		defer b.Close()
		var wg sync.WaitGroup
		wg.Go(func() { relayCopy(b, c) })
		relayCopy(c, b)
		wg.Wait()
	})
}

// relayCopy copies src to dst and then half-closes dst, so that EOF passes
// through; on an error it closes both so that the other direction ends too.
func relayCopy(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	dst.(*net.TCPConn).CloseWrite()
}

// runRelay is "proxybench relay -backend ADDR": like the backend, it prints
// "listening ADDR" once ready and serves until SIGINT or SIGTERM.
func runRelay(args []string) int {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen `address`")
	backend := fs.String("backend", "", "backend `host:port`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("proc", "relay")
	if *backend == "" {
		log.Error("-backend is required")
		return 2
	}
	return serveUntilSignal(log, *listen, newRelay(log, *backend))
}
