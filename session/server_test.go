package session_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rserpool/rserpool/session"
	"github.com/rserpool/rserpool/session/sessiontest"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// rawPU is a hostile pool user: it speaks the TCP mapping to a PE directly
// and sends whatever the test wants.
type rawPU struct {
	t *testing.T
	c transport.Conn
}

func dialPE(t *testing.T, p *sessiontest.PE) *rawPU {
	t.Helper()
	c, err := transport.Dial(ctxT(t, 5*time.Second), p.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPU{t, c}
}

func (r *rawPU) asap(m wire.Message) {
	r.t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		r.t.Fatal(err)
	}
	r.raw(wire.PPIDASAP, b)
}

func (r *rawPU) raw(ppid uint32, b []byte) {
	r.t.Helper()
	if err := r.c.WriteMessage(transport.Message{PPID: ppid, Data: b}); err != nil {
		r.t.Fatal(err)
	}
}

// closed waits until the PE ends the association.
func (r *rawPU) closed() {
	r.t.Helper()
	for {
		if _, err := r.c.ReadMessage(); err != nil {
			return
		}
	}
}

// recorder is a handler that reports what it receives, one line per
// message; want checks the lines (a final "*" matches any rest).
type recorder chan string

func (rec recorder) handle(ctx context.Context, p *session.Peer) {
	for {
		m, err := p.Recv(ctx)
		switch {
		case err != nil:
			rec <- "end: " + err.Error()
			return
		case m.CookieEcho:
			rec <- "echo " + string(m.Data)
		default:
			rec <- "data " + string(m.Data)
			p.Send(m.Data)
		}
	}
}

func (rec recorder) want(t *testing.T, lines ...string) {
	t.Helper()
	for _, w := range lines {
		select {
		case got := <-rec:
			if prefix, ok := strings.CutSuffix(w, "*"); got != w && !(ok && strings.HasPrefix(got, prefix)) {
				t.Fatalf("handler saw %q, want %q", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("handler saw nothing, want %q", w)
		}
	}
}

// A PE takes one Cookie Echo, and only as the session's first message; a
// second one or one after data is dropped, junk on the control channel is
// ignored, and an echo over the size limit ends the session.
func TestPEBoundsCookieEchoes(t *testing.T) {
	reg := sessiontest.Registrar(t)
	rec := make(recorder, 16)
	p := sessiontest.StartPE(t, reg, "Hostile", 1, rec.handle, func(c *session.ServerConfig) { c.MaxCookieSize = 32 })

	a := dialPE(t, p)
	a.asap(&wire.CookieEcho{Cookie: []byte("state-1")})
	a.asap(&wire.CookieEcho{Cookie: []byte("state-2")})
	a.raw(wire.PPIDASAP, []byte{0x0c, 0, 0, 200, 1, 2})                // truncated
	a.raw(wire.PPIDASAP, []byte{0x7f, 0, 0, 4})                        // unknown type
	a.asap(&wire.Cookie{Cookie: []byte("a PU does not send cookies")}) // wrong direction
	a.raw(7, []byte("hello"))
	rec.want(t, "echo state-1", "data hello")

	b := dialPE(t, p)
	b.raw(7, []byte("first"))
	b.asap(&wire.CookieEcho{Cookie: []byte("too late")})
	b.raw(7, []byte("second"))
	rec.want(t, "data first", "data second")

	c := dialPE(t, p)
	c.asap(&wire.CookieEcho{Cookie: bytes.Repeat([]byte{1}, 33)})
	rec.want(t, "end: session: cookie larger than the limit*")
	c.closed()

	// The first session is still there.
	a.raw(7, []byte("still here"))
	rec.want(t, "data still here")
}

// The counting service rejects a cookie it did not sign: the session ends
// and nothing is restored.
func TestPERejectsForgedCookie(t *testing.T) {
	reg := sessiontest.Registrar(t)
	p := startCounter(t, reg, "Forge", 1, nil)
	signer, err := session.NewSigner([]byte("not the pool's key, but long enough"))
	if err != nil {
		t.Fatal(err)
	}
	r := dialPE(t, p)
	r.asap(&wire.CookieEcho{Cookie: signer.Sign(binary.BigEndian.AppendUint64(nil, 1000))})
	// The PE may have ended the session already: this write may fail.
	r.c.WriteMessage(transport.Message{PPID: 1, Data: binary.BigEndian.AppendUint64(nil, 1001)})
	for {
		m, err := r.c.ReadMessage()
		if err != nil {
			return // ended, with no answer
		}
		if m.PPID != wire.PPIDASAP {
			t.Fatalf("answer %x to a step after a forged cookie", m.Data)
		}
	}
}

// Beyond MaxSessions a PE closes new associations at once and keeps the
// others.
func TestPEMaxSessions(t *testing.T) {
	reg := sessiontest.Registrar(t)
	rec := make(recorder, 16)
	p := sessiontest.StartPE(t, reg, "Full", 1, rec.handle, func(c *session.ServerConfig) { c.MaxSessions = 2 })
	a, b := dialPE(t, p), dialPE(t, p)
	a.raw(1, []byte("a"))
	b.raw(1, []byte("b"))
	rec.want(t, "data *", "data *") // both sessions run
	// A third one is refused: reset, maybe before the dial returns.
	if c, err := transport.Dial(ctxT(t, 5*time.Second), p.Addr(), nil); !errors.Is(err, syscall.ECONNRESET) {
		if err != nil {
			t.Fatal(err)
		}
		(&rawPU{t, c}).closed()
		c.Close()
	}
	a.raw(1, []byte("a2"))
	rec.want(t, "data a2")

	// Refused associations whose peers never close must not hold up the
	// accept loop (the transport's Close waits up to 2 s for each peer's
	// end of stream): five are refused at once, not one every 2 s, and
	// then a freed slot serves the next pool user at once.
	deadline := time.Now().Add(5 * time.Second)
	var flood []net.Conn
	for range 5 {
		f, err := net.Dial("tcp", p.Addr().HostPort())
		if errors.Is(err, syscall.ECONNRESET) {
			continue // refused before the dial returned
		}
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		flood = append(flood, f)
	}
	for i, f := range flood {
		f.SetReadDeadline(deadline)
		// Refused: reset (or closed); a timeout means the loop stalled.
		if _, err := io.Copy(io.Discard, f); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("flooder %d not refused within 5 s: refusals stall the accept loop", i)
		}
	}
	a.c.Close()
	rec.want(t, "end: *")
	// The slot frees once the ended session's association is closed: a
	// pool user that comes a moment before is refused, then one is served.
	ctx := ctxT(t, 5*time.Second)
	for served := false; !served; {
		if ctx.Err() != nil {
			t.Fatal("no new session served within 5 s of a slot freeing")
		}
		c, err := transport.Dial(ctx, p.Addr(), nil)
		if err != nil {
			continue // refused
		}
		c.WriteMessage(transport.Message{PPID: 1, Data: []byte("d")})
		m, err := c.ReadMessage() // the recorder echoes
		served = err == nil && string(m.Data) == "d"
		c.Close()
	}
	rec.want(t, "data d")
}

// Shutdown deregisters the PE, lets handlers finish (here: say goodbye)
// and makes Serve return ErrClosed.
func TestPEShutdown(t *testing.T) {
	reg := sessiontest.Registrar(t)
	p := sessiontest.StartPE(t, reg, "Bye", 1, func(ctx context.Context, p *session.Peer) {
		if _, err := p.Recv(ctx); err != nil || p.Send([]byte("hi")) != nil {
			return
		}
		<-ctx.Done()
		p.Send([]byte("bye"))
	}, nil)
	cache := sessiontest.Cache(t, reg)
	ctx := ctxT(t, 20*time.Second)
	s, err := session.Dial(ctx, "Bye", session.Config{Cache: cache, FailoverTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(ctx); err != nil || string(m.Data) != "hi" {
		t.Fatalf("Recv: %q, %v", m.Data, err)
	}
	if err := p.Srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := p.Wait(); !errors.Is(err, session.ErrClosed) {
		t.Fatalf("Serve: %v, want ErrClosed", err)
	}
	m, err := s.Recv(ctx)
	if err != nil || string(m.Data) != "bye" {
		t.Fatalf("Recv: %q, %v; want the handler's goodbye", m.Data, err)
	}
	if _, err := s.Recv(ctx); !errors.Is(err, session.ErrNoPE) {
		t.Fatalf("Recv after the only PE left: %v, want ErrNoPE", err)
	}
	if err := cache.Pool("Bye").Refresh(ctx); err == nil && len(cache.Pool("Bye").Elements()) > 0 {
		t.Fatalf("the registrar still lists %v", cache.Pool("Bye").Elements())
	}
}

// The receive queue is bounded, and nothing is lost while it is full: the
// session stops reading and the transport holds the PE back.
func TestRecvQueueBounded(t *testing.T) {
	reg := sessiontest.Registrar(t)
	const n = 500
	sessiontest.StartPE(t, reg, "Flood", 1, func(ctx context.Context, p *session.Peer) {
		for i := range n {
			if p.Send(binary.BigEndian.AppendUint32(nil, uint32(i))) != nil {
				return
			}
		}
		<-ctx.Done()
	}, nil)
	ctx := ctxT(t, 20*time.Second)
	s, err := session.Dial(ctx, "Flood", session.Config{Cache: sessiontest.Cache(t, reg), RecvQueue: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := session.QueueCap(s); n != 4 {
		t.Fatalf("queue capacity %d, want 4", n)
	}
	for i := range n {
		m, err := s.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := binary.BigEndian.Uint32(m.Data); got != uint32(i) {
			t.Fatalf("message %d is %d", i, got)
		}
	}
}
