package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startBackend serves the benchmark protocol on 127.0.0.1:0 for the test.
func startBackend(t *testing.T) string {
	t.Helper()
	return startServer(t, newBackend(slog.New(slog.DiscardHandler)))
}

// startServer runs srv on 127.0.0.1:0 until the test ends.
func startServer(t *testing.T, srv *server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ctx, ln); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ln.Addr().String()
}

// TestLoadModes runs every measurement briefly against an in-process backend:
// the operations succeed and the numbers are consistent with what was sent.
func TestLoadModes(t *testing.T) {
	t.Run("direct", func(t *testing.T) { testLoadModes(t, startBackend(t)) })
	t.Run("relay", func(t *testing.T) {
		relay := newRelay(slog.New(slog.DiscardHandler), startBackend(t))
		testLoadModes(t, startServer(t, relay))
	})
}

func testLoadModes(t *testing.T, addr string) {
	base := loadConfig{Target: addr, Conns: 4, Size: 64, Rate: 2000, Duration: 200 * time.Millisecond, MaxOps: 2000}
	for _, mode := range []string{measBulk, measRR, measCRR, measLat} {
		t.Run(mode, func(t *testing.T) {
			cfg := base
			cfg.Mode = mode
			res, err := runLoad(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 || res.Ops == 0 || res.Seconds <= 0 {
				t.Fatalf("result %+v: want operations and no errors", res)
			}
			switch mode {
			case measBulk:
				if res.Bytes < bulkBufSize {
					t.Errorf("backend counted %d bytes, want at least one buffer (%d)", res.Bytes, bulkBufSize)
				}
			case measRR, measCRR:
				if res.Ops > cfg.MaxOps+int64(cfg.Conns) {
					t.Errorf("ops %d beyond the bound %d", res.Ops, cfg.MaxOps)
				}
			case measLat:
				// 2000 req/s for 200 ms is 400 requests, all sent on schedule.
				if res.Ops != 400 {
					t.Errorf("ops = %d, want 400", res.Ops)
				}
				if !(0 < res.P50 && res.P50 <= res.P99 && res.P99 <= res.P999) {
					t.Errorf("percentiles not ordered: %+v", res)
				}
			}
		})
	}
}

func TestLoadRejectsBadConfig(t *testing.T) {
	for _, cfg := range []loadConfig{
		{Mode: measRR, Target: "127.0.0.1:1", Conns: 1, Size: 1},
		{Mode: measRR, Target: "127.0.0.1:1", Conns: 0, Size: 1, Duration: time.Second},
		{Mode: measLat, Target: "127.0.0.1:1", Conns: 1, Size: 1, Duration: time.Second},
		{Mode: "nope", Target: "127.0.0.1:1", Conns: 1, Size: 1, Duration: time.Second},
	} {
		if _, err := runLoad(context.Background(), cfg); err == nil {
			t.Errorf("runLoad(%+v): want error", cfg)
		}
	}
}

// TestBackendIgnoresUnknownMode: a peer that sends garbage is disconnected.
func TestBackendIgnoresUnknownMode(t *testing.T) {
	addr := startBackend(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// The backend closes with our bytes unread, so the close may arrive as a
	// reset; either way no data comes back and the read does not time out.
	n, err := io.ReadAll(c)
	if len(n) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("read %q, %v; want EOF or reset without data", n, err)
	}
}
