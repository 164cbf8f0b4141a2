package registrar

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// benchRegistrar starts an in-process registrar for load tests.
func benchRegistrar(b *testing.B) *Registrar {
	cfg := DefaultConfig()
	cfg.ASAP.Listen = []string{"tcp://127.0.0.1:0"}
	cfg.Timers.KeepAliveInterval = time.Hour // measure registration, not monitoring
	cfg.Limits.MessagesPerSecond = 10_000_000
	cfg.Limits.Burst = 10_000_000
	cfg.Limits.MaxPoolElements = 1_000_000
	cfg.Limits.MaxSourceElements = 1_000_000 // every PE comes from 127.0.0.1
	r, err := New(cfg, Options{Logger: testLogger(b), Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(); err != nil {
		b.Fatal(err)
	}
	return r
}

// pipeline sends msgs over c as fast as the transport takes them while
// counting the answers of type T; it returns when all are answered.
func pipeline[T wire.Message](b *testing.B, c transport.Conn, msgs [][]byte, check func(T) bool) error {
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, m := range msgs {
			if err := c.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: m}); err != nil {
				errc <- err
				return
			}
		}
	}()
	var err error
	for got := 0; got < len(msgs); {
		m, rerr := c.ReadMessage()
		if rerr != nil {
			err = rerr
			break
		}
		msg, perr := wire.ParseASAP(m.Data)
		if perr != nil {
			err = perr
			break
		}
		if v, ok := msg.(T); ok {
			if !check(v) {
				err = fmt.Errorf("bad answer %+v", v)
				break
			}
			got++
		}
	}
	if err != nil {
		c.Close()
	}
	wg.Wait()
	select {
	case werr := <-errc:
		if err == nil {
			err = werr
		}
	default:
	}
	return err
}

func dialN(b *testing.B, addr string, n int) []transport.Conn {
	cs := make([]transport.Conn, n)
	for i := range cs {
		c, err := transport.Dial(context.Background(), addr, &transport.Config{HeartbeatInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		cs[i] = c
	}
	return cs
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkRegister100k registers 100,000 PEs over the TCP mapping,
// pipelined over 8 connections, and reports the wall time and the heap
// bytes per PE above an empty registrar.
// Run: go test -run '^$' -bench Register100k -benchtime 1x ./registrar
func BenchmarkRegister100k(b *testing.B) {
	const total, conns = 100_000, 8
	for b.Loop() {
		b.StopTimer()
		r := benchRegistrar(b)
		cs := dialN(b, r.ASAPAddrs()[0], conns)
		msgs := make([][][]byte, conns)
		for i := 0; i < total; i++ {
			m, err := regMsg("BenchPool", uint32(i+1), 7000, wire.PolicyRoundRobin).AppendBinary(nil)
			if err != nil {
				b.Fatal(err)
			}
			msgs[i%conns] = append(msgs[i%conns], m)
		}
		base := heapInUse()
		b.StartTimer()
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- pipeline(b, c, msgs[i], func(r *wire.RegistrationResponse) bool { return !r.Reject })
			}()
		}
		wg.Wait()
		elapsed := time.Since(t0)
		b.StopTimer()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		var n int
		r.do(func(l *loop) { n = l.hs.NumElements() })
		if n != total {
			b.Fatalf("%d PEs registered", n)
		}
		// The request messages were live when base was read, so they must be
		// live now too: only the registrar's growth is measured.
		perPE := float64(int64(heapInUse())-int64(base)) / total
		runtime.KeepAlive(msgs)
		msgs = nil
		b.ReportMetric(elapsed.Seconds(), "s/100kPEs")
		b.ReportMetric(perPE, "heapB/PE")
		b.ReportMetric(total/elapsed.Seconds(), "regs/s")
		for _, c := range cs {
			c.Close()
		}
		r.Close()
		b.StartTimer()
	}
}

// BenchmarkResolve16Conns measures handle resolutions per second over the
// TCP mapping from 16 pipelining connections (pool of 10 PEs, 3 per answer).
// Run: go test -run '^$' -bench Resolve16 -benchtime 200000x ./registrar
func BenchmarkResolve16Conns(b *testing.B) {
	const conns = 16
	r := benchRegistrar(b)
	defer r.Close()
	setup := dialN(b, r.ASAPAddrs()[0], 1)[0]
	var regs [][]byte
	for i := 1; i <= 10; i++ {
		m, _ := regMsg("ResolvePool", uint32(i), 7000, wire.PolicyRoundRobin).AppendBinary(nil)
		regs = append(regs, m)
	}
	if err := pipeline(b, setup, regs, func(r *wire.RegistrationResponse) bool { return !r.Reject }); err != nil {
		b.Fatal(err)
	}
	defer setup.Close()
	cs := dialN(b, r.ASAPAddrs()[0], conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	req, _ := (&wire.HandleResolution{PoolHandle: "ResolvePool"}).AppendBinary(nil)
	per := b.N/conns + 1
	msgs := make([][]byte, per)
	for i := range msgs {
		msgs[i] = req
	}
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pipeline(b, c, msgs, func(r *wire.HandleResolutionResponse) bool { return len(r.Elements) == 3 })
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(per*conns)/elapsed.Seconds(), "resolutions/s")
}
