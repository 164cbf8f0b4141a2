package failover

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ishidawataru/sctp"
	"github.com/rserpool/rserpool/transport"
)

// TestDialSCTP: on a kernel with SCTP, dialSCTP reaches a one-to-one SCTP
// listener, bytes go both ways, read deadlines work and a closed port fails
// the dial; without kernel SCTP it fails with an error naming the address
// (the relay then tries another PE). The RSPLIB interoperability suite
// (interop/run) covers the same path against RSPLIB PEs.
func TestDialSCTP(t *testing.T) {
	ctx := context.Background()
	if ok, _ := transport.SCTPAvailable(); !ok {
		_, err := dialSCTP(ctx, "127.0.0.1:9", time.Second)
		if err == nil || !strings.Contains(err.Error(), "127.0.0.1:9") {
			t.Fatalf("without kernel SCTP: err = %v, want an error naming the address", err)
		}
		return
	}
	ln, err := sctp.ListenSCTP("sctp", &sctp.SCTPAddr{IPAddrs: []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		b := make([]byte, 64)
		n, err := c.Read(b)
		if err == nil {
			_, err = c.Write(b[:n])
		}
		served <- err
	}()
	addr := ln.Addr().(*sctp.SCTPAddr)
	c, err := dialSCTP(ctx, net.JoinHostPort("127.0.0.1", itoa(addr.Port)), 2*time.Second)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("read %q, %v; want ping", b, err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(b); err == nil {
		t.Fatal("read after the peer closed returned no error")
	}
	c.Close()
	ln.Close()
	if _, err := dialSCTP(ctx, net.JoinHostPort("127.0.0.1", itoa(addr.Port)), 2*time.Second); err == nil {
		t.Fatal("dial to a closed SCTP port succeeded")
	}
}

func itoa(p int) string { return strconv.Itoa(p) }
