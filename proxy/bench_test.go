package proxy_test

import (
	"io"
	"net"
	"testing"

	"github.com/rserpool/rserpool/proxy"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// echoBackend echoes every byte until EOF.
func echoBackend(b *testing.B) *backend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	be := &backend{ln: ln, cs: map[net.Conn]struct{}{}}
	be.wg.Add(1)
	go func() {
		defer be.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			be.mu.Lock()
			be.cs[c] = struct{}{}
			be.mu.Unlock()
			be.wg.Add(1)
			go func() {
				defer be.wg.Done()
				io.Copy(c, c)
				c.Close()
				be.mu.Lock()
				delete(be.cs, c)
				be.mu.Unlock()
			}()
		}
	}()
	b.Cleanup(be.stop)
	return be
}

// benchTargets returns the addresses of "direct" (the backend), "proxy"
// (the event loops) and "goroutine" (the goroutine relay). Client,
// backend and proxy share one process and one scheduler here, which
// favours the goroutine relay (a goroutine readied by another one's write
// often runs on the same thread); bench/proxybench, with a process each,
// is the comparison that counts.
func benchTargets(b *testing.B) map[string]string {
	be := echoBackend(b)
	return map[string]string{
		"direct":    be.ln.Addr().String(),
		"proxy":     setupB(b, be, proxy.EngineLoop),
		"goroutine": setupB(b, be, proxy.EngineGoroutine),
	}
}

func setupB(b *testing.B, be *backend, engine string) string {
	r := startRegistrarB(b)
	r.SetPool("P", wire.PolicyRoundRobin, peB(be))
	c := startCache(b, r.Addr())
	p, err := proxy.New(&proxy.Config{Listeners: []proxy.ListenerConfig{{Listen: transport.MustParseAddr("127.0.0.1:0"), Pool: "P", Engine: engine}}}, proxy.Options{Cache: c})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p.Addr(transport.MustParseAddr("127.0.0.1:0")).String()
}

// BenchmarkRequestResponse: one persistent connection, 64-byte request and
// echo per op (measurement (b) of the bench harness, single connection).
func BenchmarkRequestResponse(b *testing.B) {
	for name, addr := range benchTargets(b) {
		b.Run(name, func(b *testing.B) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg := make([]byte, 64)
			buf := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConnectRequestClose: connect, 64-byte request, echo, close per
// op (measurement (c), one client).
func BenchmarkConnectRequestClose(b *testing.B) {
	for name, addr := range benchTargets(b) {
		b.Run(name, func(b *testing.B) {
			msg := make([]byte, 64)
			buf := make([]byte, 64)
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
