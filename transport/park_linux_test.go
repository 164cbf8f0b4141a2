package transport

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func newParker(t *testing.T) *Parker {
	t.Helper()
	p, err := NewParker()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// idlePair returns a connected pair whose server end has read the client's
// INIT and one message: it has nothing left to read.
func idlePair(t *testing.T) (client, server Conn) {
	t.Helper()
	c, s := pair(t, SchemeTCP, testConfig(t), testConfig(t))
	if err := c.WriteMessage(Message{PPID: 11, Data: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if m, err := readMessage(t, s); err != nil || string(m.Data) != "first" {
		t.Fatalf("ReadMessage = %q, %v", m.Data, err)
	}
	return c, s
}

// park parks s and returns a channel closed when it resumes.
func park(t *testing.T, p *Parker, s Conn) <-chan struct{} {
	t.Helper()
	resumed := make(chan struct{})
	if !p.Park(s, func() { close(resumed) }) {
		t.Fatal("Park = false for an idle TCP-mapping connection")
	}
	return resumed
}

func awaitResume(t *testing.T, ch <-chan struct{}, why string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(deadline):
		t.Fatalf("not resumed after %s", why)
	}
}

// TestParkResumesOnInput: a parked connection resumes when a message
// arrives and when the peer closes, and not before.
func TestParkResumesOnInput(t *testing.T) {
	p := newParker(t)
	c, s := idlePair(t)
	resumed := park(t, p, s)
	select {
	case <-resumed:
		t.Fatal("resumed without input")
	case <-time.After(50 * time.Millisecond):
	}
	if p.Park(s, func() {}) {
		t.Fatal("parked twice")
	}
	if err := c.WriteMessage(Message{PPID: 11, Data: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	awaitResume(t, resumed, "a message")
	if m, err := readMessage(t, s); err != nil || string(m.Data) != "ping" {
		t.Fatalf("ReadMessage = %q, %v", m.Data, err)
	}
	resumed = park(t, p, s)
	go c.Close()
	awaitResume(t, resumed, "the peer's close")
	if p.Park(s, func() {}) {
		t.Fatal("parked again at the end of the stream")
	}
	if _, err := readMessage(t, s); err != io.EOF {
		t.Fatalf("ReadMessage after the peer's close = %v, want io.EOF", err)
	}
	if p.Park(s, func() {}) {
		t.Fatal("parked an ended connection")
	}
}

// TestParkRefusesBuffered: bytes already received are read, not parked on.
func TestParkRefusesBuffered(t *testing.T) {
	p := newParker(t)
	c, raw := rawPeer(t, testConfig(t))
	raw.Write(unhex(t, hexInit+hexDataEcho))
	time.Sleep(20 * time.Millisecond) // let loopback deliver; Park does not wait
	if p.Park(c, func() { t.Error("resumed") }) {
		t.Fatal("parked with a message received")
	}
	if _, err := readMessage(t, c); err != nil {
		t.Fatal(err)
	}
}

// TestParkRefusesTLS: TLS connections keep their reader.
func TestParkRefusesTLS(t *testing.T) {
	p := newParker(t)
	pki := newTestPKI(t)
	cli := &Config{HeartbeatInterval: -1, TLS: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}}
	_, s := pair(t, SchemeTLS, pki.serverConfig(), cli)
	if p.Park(s, func() {}) {
		t.Fatal("parked a TLS connection")
	}
}

// TestParkResumesOnEnd: closing or aborting a parked connection, its
// heartbeat failure, or closing the Parker resumes it.
func TestParkResumesOnEnd(t *testing.T) {
	p := newParker(t)
	t.Run("close", func(t *testing.T) {
		_, s := idlePair(t)
		resumed := park(t, p, s)
		go s.Close()
		awaitResume(t, resumed, "Close")
		if _, err := s.ReadMessage(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadMessage = %v, want net.ErrClosed", err)
		}
	})
	t.Run("abort", func(t *testing.T) {
		_, s := idlePair(t)
		resumed := park(t, p, s)
		Abort(s)
		awaitResume(t, resumed, "Abort")
	})
	t.Run("heartbeat", func(t *testing.T) {
		cfg := &Config{HeartbeatInterval: 20 * time.Millisecond, HeartbeatMaxMissed: 1}
		ln := listen(t, SchemeTCP, cfg)
		_, s := silentClient(t, ln)
		resumed := park(t, p, s)
		awaitResume(t, resumed, "missed heartbeats")
		if _, err := s.ReadMessage(); !errors.Is(err, ErrHeartbeatTimeout) {
			t.Fatalf("ReadMessage = %v, want ErrHeartbeatTimeout", err)
		}
	})
	t.Run("parker_close", func(t *testing.T) {
		q, err := NewParker()
		if err != nil {
			t.Fatal(err)
		}
		_, s := idlePair(t)
		resumed := park(t, q, s)
		q.Close()
		awaitResume(t, resumed, "the Parker's Close")
		if q.Park(s, func() {}) {
			t.Fatal("parked on a closed Parker")
		}
	})
}

// TestParkHandlesControlChunks: ACKs and HEARTBEATs are handled by Park
// itself (a HEARTBEAT answered), so that they never need a ReadMessage.
func TestParkHandlesControlChunks(t *testing.T) {
	p := newParker(t)
	c, raw := rawPeer(t, testConfig(t))
	readFull(t, raw, 4) // our INIT
	needRead := make(chan struct{}, 1)
	var resume func()
	resume = func() {
		if !p.Park(c, resume) {
			needRead <- struct{}{}
		}
	}
	resume()
	raw.Write(unhex(t, hexInit+hexAck0+hexHB))
	if got := readFull(t, raw, 12); !bytes.Equal(got, unhex(t, hexHBAck)) {
		t.Fatalf("HEARTBEAT ACK % x, want %s", got, hexHBAck)
	}
	raw.Write(unhex(t, hexDataEcho))
	select {
	case <-needRead:
	case <-time.After(deadline):
		t.Fatal("a DATA chunk did not end the parking")
	}
	select {
	case <-needRead:
		t.Fatal("Park refused more than once")
	default:
	}
	m, err := readMessage(t, c)
	if err != nil || m.PPID != 11 {
		t.Fatalf("ReadMessage = %+v, %v", m, err)
	}
}
