package proxy_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rserpool/rserpool/proxy"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// TestLoopIdleAfterBulkHoldsNoPipe: a connection that moved bulk through
// splice pipes in both directions holds none once it is idle.
func TestLoopIdleAfterBulkHoldsNoPipe(t *testing.T) {
	bs := []*backend{startBackend(t, "a", func(c net.Conn) { io.Copy(c, c) })}
	e := setup(t, wire.PolicyRoundRobin, bs, proxy.ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0"), Engine: proxy.EngineLoop})
	c, err := net.Dial("tcp", e.addr(t, transport.MustParseAddr("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := bytes.Repeat([]byte("b"), 1<<20) // far more than one read of a loop: splice
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo differs")
	}
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
