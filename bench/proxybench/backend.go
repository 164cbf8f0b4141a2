package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// The backend protocol: the client's first byte selects the mode.
const (
	modeEcho byte = 'E' // echo every byte back until EOF
	modeSink byte = 'S' // read and discard until EOF, then send the byte count (8 bytes, big endian) and close
)

// bulkBufSize is the read/write size of the bulk stream on both ends.
const bulkBufSize = 256 << 10

// server accepts connections and runs handle for each in its own goroutine.
type server struct {
	handle func(net.Conn) // must return once the conn is closed

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup // one per connection goroutine
}

func newServer(handle func(net.Conn)) *server {
	return &server{handle: handle, conns: make(map[net.Conn]struct{})}
}

// newBackend returns a server of the benchmark protocol.
func newBackend(log *slog.Logger) *server {
	return newServer(func(c net.Conn) { serveBackend(log, c) })
}

// Serve accepts connections until ln is closed or ctx is done, then closes
// every open connection and waits for their goroutines.
func (s *server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer s.closeAll()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

func (s *server) closeAll() {
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	s.handle(c)
}

func serveBackend(log *slog.Logger, c net.Conn) {
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return // health checks and probes connect and close without a mode byte
	}
	switch mode[0] {
	case modeEcho:
		echo(c)
	case modeSink:
		sink(c)
	default:
		log.Debug("unknown mode byte", "byte", mode[0], "remote", c.RemoteAddr())
	}
}

// echo writes back whatever it reads until EOF or an error.
func echo(c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// sink counts bytes until EOF and answers with the count.
func sink(c net.Conn) {
	buf := make([]byte, bulkBufSize)
	var total uint64
	for {
		n, err := c.Read(buf)
		total += uint64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return
		}
	}
	var out [8]byte
	binary.BigEndian.PutUint64(out[:], total)
	c.Write(out[:])
}

// runBackend is "proxybench backend": it listens, prints "listening ADDR" on
// stdout once ready, and serves until SIGINT or SIGTERM.
func runBackend(args []string) int {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen `address`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("proc", "backend")
	return serveUntilSignal(log, *listen, newBackend(log))
}

// serveUntilSignal listens on addr, prints "listening ADDR" on stdout once
// ready, and runs srv until SIGINT or SIGTERM.
func serveUntilSignal(log *slog.Logger, addr string, srv *server) int {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "listening %s\n", ln.Addr())
	w.Flush()
	if err := srv.Serve(ctx, ln); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}
