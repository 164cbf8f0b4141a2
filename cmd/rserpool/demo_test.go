package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/transport"
	"go.uber.org/goleak"
)

func TestDemoServesAllThreeBackendsAndStopsCleanly(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	var out strings.Builder
	done := make(chan error, 1)
	go func() {
		done <- demo(ctx, demoOptions{listen: transport.MustParseAddr("127.0.0.1:0"), policy: "round-robin"}, &out, func(a string) { ready <- a })
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("demo ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("demo not ready within 30s")
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]int{}
	for range 9 {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		seen[strings.TrimSpace(string(b))]++
	}
	for _, n := range []string{"backend-1", "backend-2", "backend-3"} {
		if seen["hello from "+n] != 3 {
			t.Fatalf("answers = %v, want each backend 3 times (round robin)", seen)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop within 15s of cancel")
	}
	if !strings.Contains(out.String(), "curl http://"+addr+"/") {
		t.Fatalf("instructions missing:\n%s", out.String())
	}
}
