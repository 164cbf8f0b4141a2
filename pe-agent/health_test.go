package peagent

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestHealthStateRiseFall(t *testing.T) {
	tests := []struct {
		name       string
		rise, fall int
		results    string // o = ok, x = fail, r = connect refused
		want       string // state after each result: U up, D down
		changes    int
	}{
		{"first result decides up", 2, 3, "o", "U", 1},
		{"first result decides down", 2, 3, "x", "D", 1},
		{"fall needs three", 2, 3, "oxxx", "UUUD", 2},
		{"interrupted fall", 2, 3, "oxxoxxx", "UUUUUUD", 2},
		{"rise needs two", 2, 3, "xoo", "DDU", 2},
		{"interrupted rise", 2, 3, "xoxoo", "DDDDU", 2},
		{"alternating never flaps", 2, 2, "oxoxoxoxox", "UUUUUUUUUU", 1},
		{"rise and fall of one", 1, 1, "oxox", "UDUD", 4},
		{"refused is down at once", 2, 3, "oor", "UUD", 2},
		{"refused after failures", 2, 3, "oxr", "UUD", 2},
		{"refused first is down", 2, 3, "r", "D", 1},
		{"refused while down needs rise", 2, 3, "rorooo", "DDDDUU", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHealthState(tt.rise, tt.fall)
			var got strings.Builder
			changes := 0
			for _, r := range tt.results {
				res := map[rune]checkResult{'o': checkOK, 'x': checkFailed, 'r': checkRefused}[r]
				if h.observe(res) {
					changes++
				}
				if h.up {
					got.WriteByte('U')
				} else {
					got.WriteByte('D')
				}
			}
			if got.String() != tt.want || changes != tt.changes {
				t.Errorf("states %s (%d changes), want %s (%d changes)", got.String(), changes, tt.want, tt.changes)
			}
		})
	}
}

// serveOnce runs a listener whose connections get handle; it is closed at
// the end of the test and its goroutines are awaited.
func serveOnce(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCheckBackend(t *testing.T) {
	plain := serveOnce(t, func(net.Conn) {})
	echo := serveOnce(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err == nil && string(b) == "PING" {
			io.WriteString(c, "+PONG\r\n")
		}
	})
	silent := serveOnce(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, c)
	})
	dead := closedPort(t)
	tests := []struct {
		name string
		addr string
		cfg  HealthConfig
		ok   bool
	}{
		{"connect", plain, HealthConfig{}, true},
		{"connect refused", dead, HealthConfig{}, false},
		{"send expect", echo, HealthConfig{Send: "PING", Expect: "PONG"}, true},
		{"expect mismatch", echo, HealthConfig{Send: "PING", Expect: "OK"}, false},
		{"expect timeout", silent, HealthConfig{Send: "PING", Expect: "PONG", Timeout: 200 * time.Millisecond}, false},
		{"command ok", dead, HealthConfig{Command: "exit 0"}, true},
		{"command fails", plain, HealthConfig{Command: "exit 3"}, false},
		{"command timeout", plain, HealthConfig{Command: "sleep 5", Timeout: 100 * time.Millisecond}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckBackend(context.Background(), tt.addr, tt.cfg)
			if (err == nil) != tt.ok {
				t.Errorf("CheckBackend = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestCheckRefusedIsCertain: a connect to a port nothing listens on is
// classified as refused (down at once); a listening backend passes.
func TestCheckRefusedIsCertain(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	err = CheckBackend(context.Background(), addr, HealthConfig{Timeout: time.Second})
	if got := classify(err); got != checkRefused {
		t.Fatalf("closed port: %v classified %d, want refused", err, got)
	}
	live := serveOnce(t, func(c net.Conn) { c.Close() })
	if err := CheckBackend(context.Background(), live, HealthConfig{Timeout: time.Second}); classify(err) != checkOK {
		t.Fatalf("listening backend: %v", err)
	}
	err = CheckBackend(context.Background(), addr, HealthConfig{Timeout: time.Second, Command: "exit 1"})
	if got := classify(err); got != checkFailed {
		t.Fatalf("failing command: %v classified %d, want failed", err, got)
	}
}
