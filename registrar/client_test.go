package registrar

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// client is a scripted PE/PU over the real transport.
type client struct {
	t       testing.TB
	c       transport.Conn
	msgs    chan wire.Message
	closed  chan struct{}
	autoAck atomic.Bool // answer keep-alives automatically
	kas     atomic.Int64
	wg      sync.WaitGroup
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tc, err := transport.Dial(ctx, transport.MustParseAddr(addr), &transport.Config{HeartbeatInterval: -1})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	cl := &client{t: t, c: tc, msgs: make(chan wire.Message, 4096), closed: make(chan struct{})}
	cl.wg.Add(1)
	go cl.read()
	t.Cleanup(cl.close)
	return cl
}

func (cl *client) close() {
	cl.c.Close()
	cl.wg.Wait()
}

func (cl *client) read() {
	defer cl.wg.Done()
	defer close(cl.closed)
	for {
		m, err := cl.c.ReadMessage()
		if err != nil {
			return
		}
		msg, err := wire.ParseASAP(m.Data)
		if err != nil {
			cl.t.Errorf("client: undecodable message from registrar: %v", err)
			return
		}
		if ka, ok := msg.(*wire.EndpointKeepAlive); ok {
			cl.kas.Add(1)
			if cl.autoAck.Load() {
				cl.sendNoFail(&wire.EndpointKeepAliveAck{PoolHandle: ka.PoolHandle, ID: ka.ID})
				continue
			}
		}
		select {
		case cl.msgs <- msg:
		default:
			cl.t.Errorf("client: message queue full")
			return
		}
	}
}

func (cl *client) sendNoFail(m wire.Message) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	return cl.c.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b})
}

func (cl *client) send(m wire.Message) {
	cl.t.Helper()
	if err := cl.sendNoFail(m); err != nil {
		cl.t.Fatalf("send %T: %v", m, err)
	}
}

func (cl *client) sendRaw(b []byte) {
	cl.t.Helper()
	if err := cl.c.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b}); err != nil {
		cl.t.Fatalf("send raw: %v", err)
	}
}

// recv returns the next message or fails after d.
func (cl *client) recv(d time.Duration) wire.Message {
	cl.t.Helper()
	select {
	case m := <-cl.msgs:
		return m
	case <-cl.closed:
		select {
		case m := <-cl.msgs:
			return m
		default:
		}
		cl.t.Fatalf("connection closed while waiting for a message")
	case <-time.After(d):
		cl.t.Fatalf("no message within %v", d)
	}
	return nil
}

// waitClosed reports whether the registrar closed the connection within d.
// refused reports whether the registrar refuses a new connection to addr
// within d: the connection is reset while it is made (a refusal resets at
// once, and may beat the dial's own completion) or closed after it.
func refused(t testing.TB, addr string, d time.Duration) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tc, err := transport.Dial(ctx, transport.MustParseAddr(addr), &transport.Config{HeartbeatInterval: -1})
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	cl := &client{t: t, c: tc, msgs: make(chan wire.Message, 4096), closed: make(chan struct{})}
	cl.wg.Add(1)
	go cl.read()
	defer cl.close()
	return cl.waitClosed(d)
}

func (cl *client) waitClosed(d time.Duration) bool {
	select {
	case <-cl.closed:
		return true
	case <-time.After(d):
		return false
	}
}

func expect[T wire.Message](t testing.TB, cl *client) T {
	t.Helper()
	m := cl.recv(5 * time.Second)
	v, ok := m.(T)
	if !ok {
		var zero T
		t.Fatalf("got %T (%+v), want %T", m, m, zero)
	}
	return v
}

var loopback = netip.MustParseAddr("127.0.0.1")

func regMsg(handle string, id uint32, port uint16, p wire.PolicyType) *wire.Registration {
	pol := wire.Policy{Type: p}
	switch p {
	case wire.PolicyWeightedRoundRobin, wire.PolicyWeightedRandom:
		pol.Weight = 1
	}
	return &wire.Registration{PoolHandle: wire.PoolHandle(handle), Element: wire.PoolElement{
		ID: id, RegistrationLife: 30000,
		User:   wire.Transport{Type: wire.TransportTCP, Port: port, Addrs: []netip.Addr{loopback}},
		Policy: pol,
	}}
}

// register sends a registration and returns the response.
func (cl *client) register(r *wire.Registration) *wire.RegistrationResponse {
	cl.t.Helper()
	cl.send(r)
	return expect[*wire.RegistrationResponse](cl.t, cl)
}

func (cl *client) resolve(handle string, items uint32) *wire.HandleResolutionResponse {
	cl.t.Helper()
	cl.send(&wire.HandleResolution{PoolHandle: wire.PoolHandle(handle), HasItems: items != 0, Items: items})
	return expect[*wire.HandleResolutionResponse](cl.t, cl)
}

func cause(e *wire.OperationError) wire.CauseCode {
	if e == nil || len(e.Causes) == 0 {
		return 0xffff
	}
	return e.Causes[0].Code
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("REGISTRAR_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testConfig is a config on 127.0.0.1:0 whose keep-alives never fire
// during a test; keep-alive tests shorten them.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.ASAP.Listen = []string{"tcp://127.0.0.1:0"}
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Timers.KeepAliveInterval = time.Hour
	return cfg
}

// harness is an in-process registrar with a change feed.
type harness struct {
	r       *Registrar
	reg     *prometheus.Registry
	changes chan Change
	addr    string
}

func start(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), changes: make(chan Change, 1<<16)}
	r, err := New(cfg, Options{Logger: testLogger(t), Registerer: h.reg, OnChange: func(c Change) {
		select {
		case h.changes <- c:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	h.r = r
	h.addr = r.ASAPAddrs()[0]
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return h
}

// waitChange waits for a change of PE id with the given action.
func (h *harness) waitChange(t testing.TB, action wire.UpdateAction, id uint32, d time.Duration) Change {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case c := <-h.changes:
			if c.Action == action && c.Element.ID == id {
				return c
			}
		case <-deadline:
			t.Fatalf("no %v change for PE 0x%x within %v", action, id, d)
			return Change{}
		}
	}
}

// numElements reads the handlespace size on the loop.
func (h *harness) numElements(t testing.TB) int {
	var n int
	if err := h.r.do(func(l *loop) { n = l.hs.NumElements() }); err != nil {
		t.Fatal(err)
	}
	return n
}
