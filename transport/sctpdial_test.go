package transport

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDialStreamSCTP: on a kernel with SCTP, DialStream reaches a
// one-to-one SCTP listener (ListenStream), bytes go both ways, read
// deadlines work and a closed port fails the dial; without kernel SCTP it
// fails with an error naming the address (a relay then tries another PE).
// The interoperability suite (interop/run) runs it on kernel SCTP.
func TestDialStreamSCTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if ok, _ := SCTPAvailable(); !ok {
		_, err := DialStream(ctx, MustParseAddr("sctp://127.0.0.1:9"))
		if err == nil || !strings.Contains(err.Error(), "sctp://127.0.0.1:9") || !errors.Is(err, ErrNoSCTP) {
			t.Fatalf("without kernel SCTP: err = %v, want ErrNoSCTP naming the address", err)
		}
		if _, err := ListenStream(MustParseAddr("sctp://127.0.0.1:0"), nil); !errors.Is(err, ErrNoSCTP) {
			t.Fatalf("ListenStream without kernel SCTP: %v", err)
		}
		return
	}
	ln, err := ListenStream(MustParseAddr("sctp://127.0.0.1:0"), nil)
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
	a := mustAddrFromNet(t, SchemeSCTP, ln.Addr())
	c, err := DialStream(ctx, a)
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
	if _, err := DialStream(ctx, a); err == nil {
		t.Fatal("dial to a closed SCTP port succeeded")
	}
}

// TestDialStreamTCP: tcp:// gives a plain TCP stream; tls:// is refused.
func TestDialStreamTCP(t *testing.T) {
	ln, err := ListenStream(MustParseAddr("127.0.0.1:0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			io.WriteString(c, "hi")
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	c, err := DialStream(ctx, mustAddrFromNet(t, SchemeTCP, ln.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if b, err := io.ReadAll(c); err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v", b, err)
	}
	if _, err := DialStream(ctx, MustParseAddr("tls://127.0.0.1:1")); err == nil {
		t.Fatal("DialStream accepted tls://")
	}
	if _, err := ListenStream(MustParseAddr("tls://127.0.0.1:0"), nil); err == nil {
		t.Fatal("ListenStream accepted tls://")
	}
}

// TestSCTPDialHonoursContext: connect(2) to an address that never answers
// (10.9.9.2 behind a veth end without an address, in a namespace of the
// test's own) returns at the context's deadline or cancellation, for both
// the message Dial and DialStream, instead of after SCTP's INIT
// retransmissions (a minute and more).
func TestSCTPDialHonoursContext(t *testing.T) {
	if ok, reason := SCTPAvailable(); !ok {
		t.Skipf("no kernel SCTP here: %v", reason)
	}
	if !inNetns(t) {
		return
	}
	black := MustParseAddr("sctp://10.9.9.2:3863")
	dials := map[string]func(context.Context) error{
		"Dial": func(ctx context.Context) error {
			c, err := Dial(ctx, black, nil)
			if err == nil {
				c.Close()
			}
			return err
		},
		"DialStream": func(ctx context.Context) error {
			c, err := DialStream(ctx, black)
			if err == nil {
				c.Close()
			}
			return err
		},
	}
	for name, dial := range dials {
		t.Run(name+"/deadline", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			t0 := time.Now()
			err := dial(ctx)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want context.DeadlineExceeded", err)
			}
			if d := time.Since(t0); d > 300*time.Millisecond+2*time.Second {
				t.Fatalf("returned after %v, want about the 300ms deadline", d)
			}
		})
		t.Run(name+"/cancel", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- dial(ctx) }()
			time.Sleep(100 * time.Millisecond) // let connect(2) start; the dial must not finish by itself
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("cancellation did not end the dial")
			}
		})
	}
	// Multi-homed: every address black-holed, the deadline still ends it.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := DialStream(ctx, MustParseAddr("sctp://10.9.9.2/10.9.9.3:3863")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("multi-homed dial: err = %v, want context.DeadlineExceeded", err)
	}
}

// TestSCTPDialFromListeningPort: an association dialed with LocalAddr comes
// from the endpoint a ReusePort listener holds (the peer sees that port, as
// an RSPLIB registrar wants of ENRP peers); while it exists, a dial the
// other way between the same endpoints fails with EADDRNOTAVAIL (there is
// one association per pair); a second listener cannot take a held port.
// Runs on kernel SCTP (interop/run).
func TestSCTPDialFromListeningPort(t *testing.T) {
	if ok, _ := SCTPAvailable(); !ok {
		t.Skip("no kernel SCTP")
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	listen := func() (Listener, Addr) {
		ln, err := Listen(MustParseAddr("sctp://127.0.0.1:0"), &Config{ReusePort: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln, mustAddrFromNet(t, SchemeSCTP, ln.Addr())
	}
	_, a := listen()
	lnB, b := listen()
	if _, err := Listen(a, &Config{ReusePort: true}); err == nil {
		t.Fatalf("a second ReusePort listener took %s", a)
	}
	accepted := make(chan Conn, 1)
	go func() {
		c, err := lnB.Accept()
		if err != nil {
			t.Error(err)
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := Dial(ctx, b, &Config{LocalAddr: a})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", b, a, err)
	}
	defer c.Close()
	sc := <-accepted
	if sc == nil {
		t.FailNow()
	}
	defer sc.Close()
	if got := mustAddrFromNet(t, SchemeSCTP, sc.RemoteAddr()); got.Port() != a.Port() {
		t.Fatalf("the association comes from port %d, want %d (the listening one)", got.Port(), a.Port())
	}
	if err := c.WriteMessage(Message{PPID: 12, Data: []byte("presence")}); err != nil {
		t.Fatal(err)
	}
	if m, err := sc.ReadMessage(); err != nil || string(m.Data) != "presence" || m.PPID != 12 {
		t.Fatalf("read %+v, %v", m, err)
	}
	if c2, err := Dial(ctx, a, &Config{LocalAddr: b}); !errors.Is(err, syscall.EADDRNOTAVAIL) {
		if c2 != nil {
			c2.Close()
		}
		t.Fatalf("dial back between the same endpoints: %v, want EADDRNOTAVAIL", err)
	}
}
