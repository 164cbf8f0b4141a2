package transport

import (
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// countChunks reads a chunk stream until it ends and counts chunks by type.
func countChunks(r io.Reader) map[uint8]int {
	n := map[uint8]int{}
	var h [chunkHdrLen]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return n
		}
		_, _, _, total, err := parseChunkHeader(h[:], maxChunkLen)
		if err != nil {
			return n
		}
		if _, err := io.CopyN(io.Discard, r, int64(total-chunkHdrLen)); err != nil {
			return n
		}
		n[h[0]]++
	}
}

// TestHeartbeatNeverAnswered: a peer that reads but never answers fails the
// connection after HeartbeatMaxMissed unanswered HEARTBEATs plus one interval.
func TestHeartbeatNeverAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := newMapConn(a, a, resolve(&Config{HeartbeatInterval: time.Second, HeartbeatMaxMissed: 3}).mapping(), false)
		counts := make(chan map[uint8]int, 1)
		go func() { counts <- countChunks(b) }()
		start := time.Now()
		_, err := c.ReadMessage()
		if !errors.Is(err, ErrHeartbeatTimeout) {
			t.Fatalf("ReadMessage = %v, want ErrHeartbeatTimeout", err)
		}
		if d := time.Since(start); d != 4*time.Second {
			t.Errorf("failed after %v, want 4s (3 heartbeats at 1s intervals, then one more interval)", d)
		}
		if err := c.WriteMessage(Message{}); !errors.Is(err, ErrHeartbeatTimeout) {
			t.Errorf("WriteMessage = %v, want ErrHeartbeatTimeout", err)
		}
		c.Close()
		b.Close()
		if got := (<-counts)[chunkHB]; got != 3 {
			t.Errorf("peer saw %d HEARTBEATs, want 3", got)
		}
	})
}

// TestHeartbeatPeerNotReading: a peer whose socket accepts nothing (our
// writes block) is detected the same way.
func TestHeartbeatPeerNotReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		c := newMapConn(a, a, resolve(&Config{HeartbeatInterval: time.Second, HeartbeatMaxMissed: 2}).mapping(), false)
		defer c.Close()
		start := time.Now()
		if _, err := c.ReadMessage(); !errors.Is(err, ErrHeartbeatTimeout) {
			t.Fatalf("ReadMessage = %v, want ErrHeartbeatTimeout", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("failed after %v, want 3s", d)
		}
	})
}

// TestHeartbeatKeepsIdleConnAlive: two ends answering each other's
// HEARTBEATs stay up however long they are idle. Each end has a ReadMessage
// pending, as applications do: control chunks are read by ReadMessage.
func TestHeartbeatKeepsIdleConnAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		cfg := resolve(&Config{HeartbeatInterval: time.Second, HeartbeatMaxMissed: 2}).mapping()
		c, s := newMapConn(a, a, cfg, false), newMapConn(b, b, cfg, false)
		type result struct {
			m   Message
			err error
		}
		read := func(c Conn) <-chan result {
			ch := make(chan result, 1)
			go func() {
				m, err := c.ReadMessage()
				ch <- result{Message{PPID: m.PPID, Data: append([]byte(nil), m.Data...)}, err}
			}()
			return ch
		}
		cr, sr := read(c), read(s)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if err := c.WriteMessage(Message{PPID: 11, Data: []byte("ping")}); err != nil {
			t.Fatal(err)
		}
		r := <-sr
		if r.err != nil || string(r.m.Data) != "ping" {
			t.Fatalf("after 10 idle minutes: %q, %v", r.m.Data, r.err)
		}
		c.Close()
		s.Close()
		if r := <-cr; r.err == nil {
			t.Fatalf("ReadMessage after Close returned %q", r.m.Data)
		}
	})
}

// TestStalledPartialChunk: a chunk that starts but never completes ends the
// connection after ChunkTimeout.
func TestStalledPartialChunk(t *testing.T) {
	for _, tt := range []struct {
		name    string
		partial []byte
	}{
		{"inside_header", []byte{0, 0}},
		{"inside_body", appendData(nil, 0, 0, 0, 11, []byte("hello world"))[:20]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := net.Pipe()
				c := newMapConn(a, a, resolve(&Config{HeartbeatInterval: -1, ChunkTimeout: 5 * time.Second}).mapping(), false)
				drained := make(chan struct{})
				go func() { io.Copy(io.Discard, b); close(drained) }()
				errc := make(chan error, 1)
				go func() { _, err := c.ReadMessage(); errc <- err }()
				time.Sleep(time.Hour) // idle between chunks: no deadline
				synctest.Wait()
				b.Write(unhex(t, hexInit))
				b.Write(tt.partial)
				start := time.Now()
				if err := <-errc; !errors.Is(err, ErrChunkTimeout) {
					t.Fatalf("ReadMessage = %v, want ErrChunkTimeout", err)
				}
				if d := time.Since(start); d != 5*time.Second {
					t.Errorf("failed after %v, want 5s", d)
				}
				c.Close()
				b.Close()
				<-drained
			})
		})
	}
}
