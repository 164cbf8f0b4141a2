package transport

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// unhex decodes hex with spaces and newlines.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Worked bytes of tcp-mapping.md §9.
const (
	hexInit        = "01 00 00 04"
	hexDataEcho    = "00 00 00 20 00 00 00 00 00 00 00 00 00 00 00 0b 05 00 00 10 00 09 00 0c 45 63 68 6f 50 6f 6f 6c"
	hexDataEcho03  = "00 00 00 18 00 00 00 0b 05 00 00 10 00 09 00 0c 45 63 68 6f 50 6f 6f 6c"
	hexAck0        = "03 00 00 08 00 00 00 00"
	hexHB          = "04 00 00 0c 00 01 00 08 de ad be ef"
	hexHBAck       = "05 00 00 0c 00 01 00 08 de ad be ef"
	hexDataOdd07   = "00 00 00 11 05 00 00 0d 00 09 00 09 50 6f 6f 6c 31 00 00 00"
	hexEchoMessage = "05 00 00 10 00 09 00 0c 45 63 68 6f 50 6f 6f 6c"
)

// deadline bounds every wait of a test.
const deadline = 10 * time.Second

func testConfig(t testing.TB) *Config {
	return &Config{HeartbeatInterval: -1}
}

// listen starts a transport listener on loopback.
func listen(t testing.TB, scheme Scheme, cfg *Config) Listener {
	t.Helper()
	ln, err := Listen(MustParseAddr(string(scheme)+"://127.0.0.1:0"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// silentClient connects a plain TCP client to ln that sends and answers
// nothing, and returns it with the accepted end; both close when the test
// ends.
func silentClient(t testing.TB, ln Listener) (raw net.Conn, s Conn) {
	t.Helper()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	s, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return raw, s
}

// accept runs Accept in a goroutine owned by the test.
func accept(t testing.TB, ln Listener) <-chan Conn {
	t.Helper()
	ch := make(chan Conn, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
			close(ch)
			return
		}
		ch <- c
	}()
	t.Cleanup(wg.Wait)
	return ch
}

func recvConn(t testing.TB, ch <-chan Conn) Conn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("accept failed")
		}
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(deadline):
		t.Fatal("accept timed out")
	}
	return nil
}

// pair returns two connected message conns.
func pair(t testing.TB, scheme Scheme, srvCfg, cliCfg *Config) (client, server Conn) {
	t.Helper()
	ln := listen(t, scheme, srvCfg)
	ch := accept(t, ln)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	c, err := Dial(ctx, mustAddrFromNet(t, scheme, ln.Addr()), cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, recvConn(t, ch)
}

// rawPeer returns a transport conn and the raw TCP socket at its other end.
func rawPeer(t testing.TB, cfg *Config) (Conn, net.Conn) {
	t.Helper()
	ln := listen(t, SchemeTCP, cfg)
	raw, err := net.DialTimeout("tcp", ln.Addr().String(), deadline)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		raw.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Cleanup(func() { raw.Close() }) // first, so that c's Close sees EOF
	raw.SetDeadline(time.Now().Add(deadline))
	return c, raw
}

func readFull(t testing.TB, r io.Reader, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

// readMessage reads with the test deadline; the conn must be closed by the
// caller's cleanup if it hangs.
func readMessage(t testing.TB, c Conn) (Message, error) {
	t.Helper()
	type res struct {
		m   Message
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := c.ReadMessage()
		m.Data = bytes.Clone(m.Data)
		ch <- res{m, err}
	}()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-time.After(deadline):
		c.Close()
		r := <-ch
		t.Fatalf("ReadMessage did not return within %v (then: %v)", deadline, r.err)
		return r.m, r.err
	}
}

func mustAddrFromNet(t testing.TB, s Scheme, a net.Addr) Addr {
	t.Helper()
	x, err := AddrFromNet(s, a)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestRoundTrip(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		t.Run(host, func(t *testing.T) {
			ln, err := Listen(MustParseAddr("tcp://"+host+":0"), testConfig(t))
			if err != nil {
				t.Skipf("no loopback for %s: %v", host, err)
			}
			defer ln.Close()
			ch := accept(t, ln)
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			c, err := Dial(ctx, mustAddrFromNet(t, SchemeTCP, ln.Addr()), testConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := recvConn(t, ch)
			msgs := []Message{
				{PPID: 11, Stream: 0, Data: unhex(t, hexEchoMessage)},
				{PPID: 12, Stream: 3, Data: []byte("odd")},
				{PPID: 0, Stream: 65535, Data: []byte{}},
				{PPID: 0xdeadbeef, Stream: 1, Data: bytes.Repeat([]byte{0xa5}, 65519)},
			}
			for _, m := range msgs {
				if err := c.WriteMessage(m); err != nil {
					t.Fatal(err)
				}
				if err := s.WriteMessage(m); err != nil {
					t.Fatal(err)
				}
			}
			for _, side := range []Conn{s, c} {
				for i, want := range msgs {
					got, err := readMessage(t, side)
					if err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
					if got.PPID != want.PPID || got.Stream != want.Stream || !bytes.Equal(got.Data, want.Data) {
						t.Errorf("message %d: got PPID %d stream %d %d bytes, want PPID %d stream %d %d bytes",
							i, got.PPID, got.Stream, len(got.Data), want.PPID, want.Stream, len(want.Data))
					}
				}
			}
			if got, want := c.PeerAddrs(), []net.Addr{s.LocalAddr()}; got[0].String() != want[0].String() || len(got) != 1 {
				t.Errorf("PeerAddrs = %v, want %v", got, want)
			}
			if c.RemoteAddr().String() != s.LocalAddr().String() {
				t.Errorf("RemoteAddr %v != peer LocalAddr %v", c.RemoteAddr(), s.LocalAddr())
			}
		})
	}
}

func TestTooLargeWrite(t *testing.T) {
	c, _ := pair(t, SchemeTCP, testConfig(t), &Config{HeartbeatInterval: -1, MaxMessageSize: 100})
	if err := c.WriteMessage(Message{Data: make([]byte, 101)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("WriteMessage(101 bytes) = %v, want ErrTooLarge", err)
	}
	if err := c.WriteMessage(Message{Data: make([]byte, 100)}); err != nil {
		t.Fatalf("WriteMessage(100 bytes) = %v", err)
	}
}

// TestWireBytes checks the frames against the worked bytes of the mapping.
func TestWireBytes(t *testing.T) {
	c, raw := rawPeer(t, testConfig(t))
	if got := readFull(t, raw, 4); !bytes.Equal(got, unhex(t, hexInit)) {
		t.Fatalf("first chunk % x, want INIT %s", got, hexInit)
	}
	if err := c.WriteMessage(Message{PPID: 11, Data: unhex(t, hexEchoMessage)}); err != nil {
		t.Fatal(err)
	}
	if got, want := readFull(t, raw, 32), unhex(t, hexDataEcho); !bytes.Equal(got, want) {
		t.Fatalf("DATA\n got % x\nwant % x", got, want)
	}
	// Odd length: chunk length 4+16+3, then one pad byte.
	if err := c.WriteMessage(Message{PPID: 11, Stream: 2, Data: []byte("abc")}); err != nil {
		t.Fatal(err)
	}
	want := unhex(t, "00 00 00 13 00 00 00 01 00 02 00 00 00 00 00 0b 61 62 63 00")
	if got := readFull(t, raw, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("odd DATA\n got % x\nwant % x", got, want)
	}

	// The peer's INIT 0x00 and DATA: we deliver it and ACK with TSN 0.
	raw.Write(unhex(t, hexInit+hexDataEcho))
	m, err := readMessage(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Message{PPID: 11, Data: unhex(t, hexEchoMessage)}, m); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if got := readFull(t, raw, 8); !bytes.Equal(got, unhex(t, hexAck0)) {
		t.Fatalf("ACK % x, want %s", got, hexAck0)
	}
	// HEARTBEAT is echoed unchanged by the pending ReadMessage.
	go c.ReadMessage() // returns at Close
	raw.Write(unhex(t, hexHB))
	if got := readFull(t, raw, 12); !bytes.Equal(got, unhex(t, hexHBAck)) {
		t.Fatalf("HEARTBEAT ACK % x, want %s", got, hexHBAck)
	}
}

// TestPeerInitFlags parses DATA from peers that omit optional fields.
func TestPeerInitFlags(t *testing.T) {
	tests := []struct {
		name    string
		stream  string
		want    Message
		wantAck string
	}{
		{"flags03", "01 03 00 04" + hexDataEcho03, Message{PPID: 11, Data: unhex(t, hexEchoMessage)}, "03 00 00 04"},
		{"flags07_odd", "01 07 00 04" + hexDataOdd07, Message{Data: unhex(t, "05 00 00 0d 00 09 00 09 50 6f 6f 6c 31")}, "03 00 00 04"},
		{"flags02", "01 02 00 04 00 00 00 10 00 00 00 00 00 00 00 0c 61 62 63 64", Message{PPID: 12, Data: []byte("abcd")}, hexAck0},
		{"flags04_ext", "01 04 00 04 00 00 00 0d 00 00 00 00 00 07 00 00 7a 00 00 00", Message{Stream: 7, Data: []byte("z")}, hexAck0},
		{"unknown_chunk_skipped", hexInit + "42 80 00 09 01 02 03 04 05 00 00 00" + hexDataEcho, Message{PPID: 11, Data: unhex(t, hexEchoMessage)}, hexAck0},
		{"ack_from_peer_ignored", hexInit + hexAck0 + "03 00 00 04" + hexDataEcho, Message{PPID: 11, Data: unhex(t, hexEchoMessage)}, hexAck0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, raw := rawPeer(t, testConfig(t))
			readFull(t, raw, 4) // our INIT
			raw.Write(unhex(t, tt.stream))
			m, err := readMessage(t, c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, m); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			want := unhex(t, tt.wantAck)
			if got := readFull(t, raw, len(want)); !bytes.Equal(got, want) {
				t.Fatalf("ACK % x, want % x", got, want)
			}
		})
	}
}

// TestHostileInput: each broken stream ends the connection with a clear
// error from ReadMessage and WriteMessage.
func TestHostileInput(t *testing.T) {
	tests := []struct {
		name    string
		stream  string
		cfg     Config
		wantErr error
	}{
		{"length_below_4", hexInit + "00 00 00 03", Config{}, ErrProtocol},
		{"chunk_over_max", hexInit + "00 00 03 f9", Config{MaxMessageSize: 1000}, ErrTooLarge},
		{"chunk_over_default_max_after_unknown", "ff 00 ff ff", Config{MaxMessageSize: 10}, ErrTooLarge},
		{"init_twice", hexInit + hexInit, Config{}, ErrProtocol},
		{"init_late", hexHB + hexInit, Config{}, ErrProtocol},
		{"data_shorter_than_header", hexInit + "00 00 00 0c 00 00 00 00 00 00 00 00", Config{}, ErrProtocol},
		{"tsn_gap", hexInit + "00 00 00 10 00 00 00 05 00 00 00 00 00 00 00 0b", Config{}, ErrProtocol},
		{"ack_bad_length", hexInit + "03 00 00 06 00 00 00 00", Config{}, ErrProtocol},
		{"length_lies_then_eof", hexInit + "00 00 01 00 00 00 00 00", Config{}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.HeartbeatInterval = -1
			c, raw := rawPeer(t, &cfg)
			raw.Write(unhex(t, tt.stream))
			if tt.wantErr == io.ErrUnexpectedEOF {
				raw.(*net.TCPConn).CloseWrite()
			}
			_, err := readMessage(t, c)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadMessage error = %v, want %v", err, tt.wantErr)
			}
			if err := c.WriteMessage(Message{Data: []byte("x")}); !errors.Is(err, tt.wantErr) {
				t.Fatalf("WriteMessage after failure = %v, want %v", err, tt.wantErr)
			}
			// The connection is closed: the peer sees EOF or a reset.
			io.Copy(io.Discard, raw)
		})
	}
}

// TestPeerEOF: a clean close at a chunk boundary delivers the queued
// messages, then io.EOF.
func TestPeerEOF(t *testing.T) {
	c, raw := rawPeer(t, testConfig(t))
	raw.Write(unhex(t, hexInit+hexDataEcho))
	raw.(*net.TCPConn).CloseWrite()
	if _, err := readMessage(t, c); err != nil {
		t.Fatal(err)
	}
	if _, err := readMessage(t, c); err != io.EOF {
		t.Fatalf("ReadMessage at end = %v, want io.EOF", err)
	}
}

// TestReceiveBackpressure: a peer flooding a connection whose application
// does not read is stopped by TCP flow control; memory stays bounded.
func TestReceiveBackpressure(t *testing.T) {
	_, raw := rawPeer(t, testConfig(t))
	raw.Write(unhex(t, hexInit))
	var buf []byte
	// A write blocked for 500 ms means flow control stopped the flood; the
	// bytes absorbed by then are the socket buffers (nothing reads them).
	const limit = 64 << 20
	total := 0
	tsn := uint32(0)
	for total < limit {
		buf = buf[:0]
		for range 64 {
			buf = appendData(buf, tsn, 0, 0, 11, make([]byte, 1000))
			tsn++
		}
		raw.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := raw.Write(buf)
		total += n
		if err != nil {
			if !isTimeout(err) {
				t.Fatalf("write: %v", err)
			}
			t.Logf("flow control stopped the flood after %d KiB", total>>10)
			return
		}
	}
	t.Fatalf("wrote %d MiB without being stopped", total>>20)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestCloseUnblocksRead: Close returns a blocked ReadMessage with
// net.ErrClosed and is idempotent.
func TestCloseUnblocksRead(t *testing.T) {
	c, _ := pair(t, SchemeTCP, testConfig(t), testConfig(t))
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadMessage()
		errc <- err
	}()
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadMessage after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(deadline):
		t.Fatal("Close did not unblock ReadMessage")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := c.WriteMessage(Message{}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteMessage after Close = %v, want net.ErrClosed", err)
	}
}

// TestCloseFlushes: messages queued before Close reach the peer, then EOF.
func TestCloseFlushes(t *testing.T) {
	c, s := pair(t, SchemeTCP, testConfig(t), testConfig(t))
	const n = 5000
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			m, err := s.ReadMessage()
			if err != nil {
				errc <- fmt.Errorf("message %d: %w", i, err)
				return
			}
			if int(m.Stream) != i || len(m.Data) != i%300 {
				errc <- fmt.Errorf("message %d: stream %d len %d", i, m.Stream, len(m.Data))
				return
			}
		}
		if _, err := s.ReadMessage(); err != io.EOF {
			errc <- fmt.Errorf("after the last message: %v, want io.EOF", err)
			return
		}
		errc <- nil
	}()
	for i := range n {
		if err := c.WriteMessage(Message{PPID: 11, Stream: uint16(i), Data: bytes.Repeat([]byte{byte(i)}, i%300)}); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(deadline):
		s.Close()
		t.Fatalf("reader stuck; then: %v", <-errc)
	}
}

// TestCloseBounded: Close returns within CloseTimeout when the peer reads
// nothing at all, and the peer then sees a truncated stream.
func TestCloseBounded(t *testing.T) {
	cfg := &Config{HeartbeatInterval: -1, CloseTimeout: 200 * time.Millisecond}
	ln := listen(t, SchemeTCP, testConfig(t))
	raw, err := net.DialTimeout("tcp", ln.Addr().String(), deadline)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := newMapConn(raw, raw, resolve(cfg).mapping(), false)
	s, err := ln.Accept() // accepted but never read: TCP flow control stops the writer
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := make([]byte, 60000)
	errc := make(chan error, 1)
	wrote := make(chan struct{})
	go func() {
		for i := range 300 { // 18 MB: more than the socket buffers and queues hold
			if i == 10 {
				close(wrote)
			}
			if err := c.WriteMessage(Message{Data: big}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	<-wrote
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with CloseTimeout 200ms", d)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked WriteMessage returned %v, want net.ErrClosed", err)
	}
}

// TestConcurrentWriters: writers interleave whole messages; per-stream order
// holds.
func TestConcurrentWriters(t *testing.T) {
	c, s := pair(t, SchemeTCP, testConfig(t), testConfig(t))
	const writers, per = 4, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				b := []byte{byte(w), byte(i >> 8), byte(i)}
				if err := c.WriteMessage(Message{Stream: uint16(w), Data: b}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]int, writers)
	for range writers * per {
		m, err := readMessage(t, s)
		if err != nil {
			t.Fatal(err)
		}
		w, i := int(m.Data[0]), int(m.Data[1])<<8|int(m.Data[2])
		if int(m.Stream) != w || i != next[w] {
			t.Fatalf("writer %d: got message %d on stream %d, want %d", w, i, m.Stream, next[w])
		}
		next[w]++
	}
	wg.Wait()
}

// TestHeartbeatFloodWithoutReading: a peer that sends HEARTBEATs but never
// reads our answers is cut off once the answers queue up to the hard limit.
func TestHeartbeatFloodWithoutReading(t *testing.T) {
	c, raw := rawPeer(t, testConfig(t))
	errc := make(chan error, 1)
	go func() { _, err := c.ReadMessage(); errc <- err }() // the application reads
	raw.Write(unhex(t, hexInit))
	hbs := bytes.Repeat(unhex(t, hexHB), 4096)
	const limit = 256 << 20 // bounded: far above socket buffers + 1 MiB
	total := 0
	for total < limit {
		n, err := raw.Write(hbs)
		total += n
		if err != nil {
			break // we closed the connection: reset or broken pipe
		}
	}
	if total >= limit {
		t.Fatalf("wrote %d MiB of HEARTBEATs without being cut off", total>>20)
	}
	err := <-errc
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "not reading") {
		t.Fatalf("ReadMessage = %v, want ErrProtocol (peer not reading)", err)
	}
}

// TestUnknownChunksLogged: unknown chunks are skipped and the first few per
// connection logged, on the injected logger.
func TestUnknownChunksLogged(t *testing.T) {
	var logs safeBuffer
	cfg := &Config{HeartbeatInterval: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	c, raw := rawPeer(t, cfg)
	stream := hexInit
	for range 20 {
		stream += "c8 01 00 06 aa bb 00 00"
	}
	raw.Write(unhex(t, stream+hexDataEcho))
	if _, err := readMessage(t, c); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(logs.String(), "skipping unknown chunk"); got != maxLoggedSkips {
		t.Fatalf("%d log lines for 20 unknown chunks, want %d:\n%s", got, maxLoggedSkips, logs.String())
	}
}

// safeBuffer is a bytes.Buffer safe for concurrent use.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRegressionCloseBoundedPeerNeverReads (found by regclient's
// TestClientRegistrarNeverReads): Close against a peer that neither reads
// nor closes blocked for ever when the flush timed out: the CloseTimeout
// timer was spent on the flush, and the wait for the peer's end of stream
// had no bound left.
func TestRegressionCloseBoundedPeerNeverReads(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := raw.Accept(); err == nil {
			held <- c // never read, never closed until the end
		}
	}()
	cfg := &Config{HeartbeatInterval: -1, CloseTimeout: 200 * time.Millisecond}
	c, err := Dial(context.Background(), mustAddrFromNet(t, SchemeTCP, raw.Addr()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	peer := <-held
	defer peer.Close()
	big := make([]byte, 60000)
	errc := make(chan error, 1)
	go func() {
		for { // until the kernel buffers and the send queue are full and Close ends it
			if err := c.WriteMessage(Message{Data: big}); err != nil {
				errc <- err
				return
			}
		}
	}()
	// Wait until the writers are stuck: the kernel buffers and the send
	// queue are full.
	for i := 0; c.(*mapConn).queued() < sendQueueBytes; i++ {
		if i == 1000 {
			t.Fatal("the send queue never filled")
		}
		time.Sleep(10 * time.Millisecond) // the queue has no event to wait on
	}
	done := make(chan struct{})
	start := time.Now()
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("Close still blocked after %v with CloseTimeout 200ms", time.Since(start))
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked WriteMessage returned %v, want net.ErrClosed", err)
	}
}

// queued returns the bytes in the send queue.
func (c *mapConn) queued() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return len(c.wbuf)
}

// TestAbortDoesNotWaitForThePeer: Close waits up to CloseTimeout for a peer
// that never ends its stream; Abort returns at once and the peer sees the
// connection reset.
func TestAbortDoesNotWaitForThePeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// A peer that sends half a chunk header and never reads or closes.
	raw.Write([]byte{0x00, 0x00})
	c := newMapConn(srv, srv, resolve(&Config{CloseTimeout: time.Hour, HeartbeatInterval: -1}).mapping(), false)
	done := make(chan struct{})
	go func() { Abort(c); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Abort waited for the peer")
	}
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [256]byte
	for {
		_, err := raw.Read(buf[:])
		if err == nil {
			continue // the INIT the mapping may have sent first
		}
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
			t.Fatalf("peer read: %v, want the connection reset", err)
		}
		break
	}
	if _, err := c.ReadMessage(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadMessage after Abort: %v", err)
	}
}

// TestReadMessageWithin: ErrIdle after the wait without input leaves the
// connection usable.
func TestReadMessageWithin(t *testing.T) {
	c, s := pair(t, SchemeTCP, testConfig(t), testConfig(t))
	if err := c.WriteMessage(Message{PPID: 11, Data: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if m, err := ReadMessageWithin(s, deadline); err != nil || string(m.Data) != "first" {
		t.Fatalf("ReadMessageWithin = %q, %v", m.Data, err)
	}
	if _, err := ReadMessageWithin(s, 20*time.Millisecond); !errors.Is(err, ErrIdle) {
		t.Fatalf("ReadMessageWithin without input = %v, want ErrIdle", err)
	}
	if err := c.WriteMessage(Message{PPID: 11, Data: []byte("second")}); err != nil {
		t.Fatal(err)
	}
	if m, err := ReadMessageWithin(s, deadline); err != nil || string(m.Data) != "second" {
		t.Fatalf("ReadMessageWithin after ErrIdle = %q, %v", m.Data, err)
	}
}
