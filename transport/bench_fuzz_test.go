package transport

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// BenchmarkTCPMappingThroughput sends 64-byte messages both ways at once over
// one loopback TCP-mapping connection; msgs/s counts one direction.
func BenchmarkTCPMappingThroughput(b *testing.B) {
	cfg := &Config{HeartbeatInterval: -1}
	c, s := pair(b, SchemeTCP, cfg, cfg)
	msg := Message{PPID: 11, Data: make([]byte, 64)}
	b.ReportAllocs()
	b.SetBytes(int64(2 * len(msg.Data)))
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, conn := range []Conn{c, s} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range b.N {
				if err := conn.WriteMessage(msg); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range b.N {
				if _, err := conn.ReadMessage(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// FuzzChunkReader feeds arbitrary bytes as the peer's stream into a
// TCP-mapping connection: it never panics, never returns a message above
// MaxMessageSize, and always ends with an error.
func FuzzChunkReader(f *testing.F) {
	for _, s := range []string{
		hexInit + hexDataEcho,
		"01 03 00 04" + hexDataEcho03,
		"01 07 00 04" + hexDataOdd07,
		hexInit + hexAck0 + hexHB + hexHBAck,
		hexInit + "42 00 00 05 01 00 00 00" + hexDataEcho,
		hexInit + "00 00 00 03",
		hexInit + "00 00 ff ff",
		hexInit + hexInit,
	} {
		f.Add(unhex(f, s))
	}
	const maxMsg = 1024
	cfg := resolve(&Config{HeartbeatInterval: -1, MaxMessageSize: maxMsg, CloseTimeout: time.Second}).mapping()
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		c := newMapConn(a, a, cfg, false)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); io.Copy(io.Discard, b) }()
		go func() { defer wg.Done(); b.Write(data); b.Close() }()
		for {
			m, err := c.ReadMessage()
			if err != nil {
				break
			}
			if len(m.Data) > maxMsg {
				t.Fatalf("message of %d bytes > MaxMessageSize %d", len(m.Data), maxMsg)
			}
		}
		c.Close()
		b.Close()
		wg.Wait()
	})
}
