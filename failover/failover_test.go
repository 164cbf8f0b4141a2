package failover_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rserpool/rserpool/failover"
	"github.com/rserpool/rserpool/internal/blackhole"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/pucache/pucachetest"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a scripted PE: every accepted connection runs serve.
type backend struct {
	ln      net.Listener
	accepts atomic.Int32
	done    chan struct{}
}

func startBackend(t *testing.T, serve func(net.Conn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepts.Add(1)
			serve(c) // sequential: one connection at a time is enough here
		}
	}()
	t.Cleanup(func() { ln.Close(); <-b.done })
	return b
}

func (b *backend) addr() netip.AddrPort { return b.ln.Addr().(*net.TCPAddr).AddrPort() }

func deadAddr(t *testing.T) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return a
}

func pool(t *testing.T, addrs ...netip.AddrPort) (*pucache.Pool, *pucachetest.Registrar) {
	t.Helper()
	r := pucachetest.Start(t)
	var pes []wire.PoolElement
	for i, a := range addrs {
		pes = append(pes, pucachetest.PE(uint32(i+1), a, wire.PolicyRoundRobin, 0))
	}
	r.SetPool("P", wire.PolicyRoundRobin, pes...)
	c, err := pucache.New(pucache.Config{Registrars: []transport.Addr{r.Addr()}}, pucache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c.Pool("P"), r
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// answer replies "<name>:<line>" to every line until EOF.
func answer(name string) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			if _, err := io.WriteString(c, name+":"+sc.Text()+"\n"); err != nil {
				return
			}
		}
	}
}

// dropAfterRead reads one line, then closes (reset=false) or resets.
func dropAfterRead(reset bool) func(net.Conn) {
	return func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		if reset {
			c.(*net.TCPConn).SetLinger(0)
		}
		c.Close()
	}
}

func TestDialSkipsDeadAndReports(t *testing.T) {
	live := startBackend(t, answer("B"))
	p, r := pool(t, deadAddr(t), deadAddr(t), live.addr())
	d := failover.NewDialer(p, failover.Config{Attempts: 4})
	var failures atomic.Int32
	d.OnFailure = func(pucache.Element, error) { failures.Add(1) }
	var tried failover.Tried
	conn, e, err := d.Dial(ctxT(t), nil, &tried)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	n := int(failures.Load())
	if e.ID != 3 || n < 1 || n > 2 || len(tried.IDs()) != n {
		t.Fatalf("connected to %d after %d failures (tried %v)", e.ID, n, tried.IDs())
	}
	for _, id := range tried.IDs() {
		if id == 3 {
			t.Fatalf("live PE counted as failed: %v", tried.IDs())
		}
	}
	r.WaitFor(t, 5*time.Second, "reports", func() bool { return len(r.Reports()) == n })
}

func TestDialBudgetNeverRepeatsAPE(t *testing.T) {
	p, r := pool(t, deadAddr(t), deadAddr(t), deadAddr(t))
	d := failover.NewDialer(p, failover.Config{Attempts: 10, Backoff: time.Millisecond})
	var tried failover.Tried
	_, _, err := d.Dial(ctxT(t), nil, &tried)
	if !errors.Is(err, failover.ErrBudget) {
		t.Fatalf("err = %v, want ErrBudget", err)
	}
	if got := tried.IDs(); len(got) != 3 {
		t.Fatalf("tried %v, want each of the 3 PEs exactly once", got)
	}
	r.WaitFor(t, 5*time.Second, "three reports", func() bool { return len(r.Reports()) == 3 })
	// The backoff round asked the registrar again for new PEs.
	if r.Resolutions("P") < 2 {
		t.Fatalf("resolutions = %d, want a re-resolution after every PE failed", r.Resolutions("P"))
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// relayRest copies the committed session like the proxy does.
func relayRest(s *failover.Session, client net.Conn) {
	done := make(chan struct{})
	go func() {
		if !s.BackendDone {
			io.Copy(client, s.Backend)
			client.(*net.TCPConn).CloseWrite()
		}
		close(done)
	}()
	if !s.ClientDone {
		io.Copy(s.Backend, client)
		s.Backend.(*net.TCPConn).CloseWrite()
	}
	<-done
	s.Backend.Close()
	client.Close()
}

func TestReplay(t *testing.T) {
	tests := []struct {
		name       string
		first      func(net.Conn)
		halfClose  bool // the client half-closes after its request
		request    string
		buffer     int
		want       string // what the client reads to EOF
		wantErr    error
		replays    int
		secondUsed bool
		firstByte  time.Duration
	}{
		{name: "closed before answering", first: dropAfterRead(false), request: "hello\n", buffer: 64,
			want: "B:hello\n", replays: 1, secondUsed: true},
		{name: "reset before answering", first: dropAfterRead(true), request: "hello\n", buffer: 64,
			want: "B:hello\n", replays: 1, secondUsed: true},
		{name: "half-closed client", first: dropAfterRead(false), request: "hello\n", buffer: 64, halfClose: true,
			want: "B:hello\n", replays: 1, secondUsed: true},
		{name: "silent PE: replayed after first_byte_timeout", request: "hello\n", buffer: 64, firstByte: 50 * time.Millisecond,
			first: func(c net.Conn) { io.Copy(io.Discard, c); c.Close() },
			want:  "B:hello\n", replays: 1, secondUsed: true},
		{name: "answered then closed: no replay", request: "hello\n", buffer: 64,
			first: func(c net.Conn) { bufio.NewReader(c).ReadString('\n'); io.WriteString(c, "A-partial"); c.Close() },
			want:  "A-partial", replays: 0},
		// Too big to replay: the PE's close reaches the client as is.
		{name: "request larger than buffer", first: dropAfterRead(false), request: strings.Repeat("x", 100) + "\n", buffer: 64,
			want: "", replays: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := startBackend(t, tc.first)
			b := startBackend(t, answer("B"))
			p, r := pool(t, a.addr(), b.addr())
			d := failover.NewDialer(p, failover.Config{Attempts: 3, ReplayBuffer: tc.buffer, FirstByteTimeout: tc.firstByte})
			cli, srv := tcpPair(t)
			go func() {
				io.WriteString(cli, tc.request)
				if tc.halfClose {
					cli.(*net.TCPConn).CloseWrite()
				}
			}()
			var tried failover.Tried
			s, err := d.DialReplay(ctxT(t), srv, nil, &tried, 5*time.Second)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				srv.Close()
				if b.accepts.Load() != 0 {
					t.Fatalf("second PE contacted although replay was impossible")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Replays != tc.replays {
				t.Fatalf("replays = %d, want %d", s.Replays, tc.replays)
			}
			done := make(chan struct{})
			go func() { relayRest(s, srv); close(done) }()
			cli.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, len(tc.want))
			if _, err := io.ReadFull(cli, buf); err != nil || string(buf) != tc.want {
				t.Fatalf("client read %q, %v; want %q", buf, err, tc.want)
			}
			if !tc.halfClose {
				cli.(*net.TCPConn).CloseWrite()
			}
			if rest, err := io.ReadAll(cli); err != nil || len(rest) != 0 {
				t.Fatalf("after the answer: %q, %v; want EOF", rest, err)
			}
			cli.Close()
			<-done
			if (b.accepts.Load() > 0) != tc.secondUsed {
				t.Fatalf("second PE accepts = %d, want used=%v", b.accepts.Load(), tc.secondUsed)
			}
			if tc.replays > 0 {
				r.WaitFor(t, 5*time.Second, "report of the first PE", func() bool { return len(r.Reports()) == 1 })
			}
		})
	}
}

func TestHedgedConnectPastBlackHole(t *testing.T) {
	live := startBackend(t, answer("B"))
	p, r := pool(t, blackhole.Listen(t), live.addr())
	d := failover.NewDialer(p, failover.Config{Attempts: 3, ConnectTimeout: 300 * time.Millisecond, HedgeDelay: 10 * time.Millisecond})
	var failures atomic.Int32
	d.OnFailure = func(pucache.Element, error) { failures.Add(1) }
	for i := range 2 {
		var tried failover.Tried
		conn, e, err := d.Dial(ctxT(t), nil, &tried)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		// The black hole's attempt was overtaken, not failed: it is not in
		// tried and not reported while it is still pending.
		if e.ID != 2 || len(tried.IDs()) != 0 {
			t.Fatalf("dial %d: connected to PE %d, tried %v; want PE 2 by a hedge", i, e.ID, tried.IDs())
		}
		tried.Wait()
	}
	// Once its own attempt timed out, the black hole was reported, once.
	r.WaitFor(t, 5*time.Second, "report of PE 1", func() bool {
		rs := r.Reports()
		return len(rs) == 1 && rs[0].ID == 1
	})
	if failures.Load() != 1 {
		t.Fatalf("failures = %d, want 1 (the black hole)", failures.Load())
	}
}

func TestHedgeOffWaitsForTimeout(t *testing.T) {
	live := startBackend(t, answer("B"))
	p, _ := pool(t, blackhole.Listen(t), live.addr())
	d := failover.NewDialer(p, failover.Config{Attempts: 3, ConnectTimeout: 100 * time.Millisecond, HedgeDelay: -1})
	var tried failover.Tried
	conn, e, err := d.Dial(ctxT(t), nil, &tried)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	tried.Wait()
	if e.ID != 2 || len(tried.IDs()) != 1 || tried.IDs()[0] != 1 {
		t.Fatalf("connected to %d, tried %v; want PE 2 after PE 1 failed", e.ID, tried.IDs())
	}
}
