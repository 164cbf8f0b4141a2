package proxy_test

import (
	"bytes"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/proxy"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// TestLoopIdleAfterBulkHoldsNoPipe: a connection that moved bulk through
// splice pipes in both directions holds none once it is idle.
func TestLoopIdleAfterBulkHoldsNoPipe(t *testing.T) {
	bs := []*backend{startBackend(t, "a", echoBuffered)}
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0"), Engine: proxy.EngineLoop})
	c := echoBulk(t, e)
	// The loop answers after the event that relayed the last bytes, which
	// read the sockets until they were drained.
	if n := e.p.PipesHeld(); n != 0 {
		t.Fatalf("%d splice pipes held by an idle connection", n)
	}
	// The connection still relays (read/write or splice again).
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'x' {
		t.Fatalf("after idle: %q, %v", b[:], err)
	}
}

// TestGoroutineIdleAfterBulkHoldsNoPipe: on the goroutine relay too, the
// connections that moved bulk hold no splice pipe once idle (only the
// relay's pool keeps empty ones: at most one per direction in flight at a
// time here).
func TestGoroutineIdleAfterBulkHoldsNoPipe(t *testing.T) {
	bs := []*backend{startBackend(t, "a", echoBuffered)}
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0"), Engine: proxy.EngineGoroutine})
	before := pipeFDs(t)
	const conns = 5
	for range conns {
		echoBulk(t, e)
	}
	// A direction gives its pipe back when it finds its source drained,
	// just after the last bytes went out: no event tells the test.
	waitFor(t, func() bool { return pipeFDs(t)-before <= 2*2 })
}

// echoBulk opens a client connection through the proxy, has 1 MiB echoed
// (far more than one read of a loop: splice) and returns the connection,
// open until the test ends.
func echoBulk(t *testing.T, e *env) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.addr(t, transport.MustParseAddr("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := bytes.Repeat([]byte("b"), 1<<20)
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo differs")
	}
	return c
}

// echoBuffered echoes through a buffer (io.Copy between TCP connections
// would splice through pipes of the test process).
func echoBuffered(c net.Conn) {
	b := make([]byte, 32<<10)
	for {
		n, err := c.Read(b)
		if n > 0 {
			if _, err := c.Write(b[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pipeFDs counts the pipes among the process's descriptors (two per pipe).
func pipeFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}
