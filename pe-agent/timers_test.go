package peagent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// memConn is an in-memory transport.Conn pair end. It lets the session's
// timers run under testing/synctest, where channel waits advance the
// virtual clock (real sockets would not).
type memConn struct {
	in     chan transport.Message
	out    chan transport.Message
	closed chan struct{}
	peer   *memConn
	once   sync.Once
}

func memPipe() (*memConn, *memConn) {
	a2b, b2a := make(chan transport.Message, 16), make(chan transport.Message, 16)
	a := &memConn{in: b2a, out: a2b, closed: make(chan struct{})}
	b := &memConn{in: a2b, out: b2a, closed: make(chan struct{})}
	a.peer, b.peer = b, a
	return a, b
}

func (c *memConn) ReadMessage() (transport.Message, error) {
	select {
	case m := <-c.in:
		return m, nil
	case <-c.closed:
		return transport.Message{}, net.ErrClosed
	case <-c.peer.closed:
		return transport.Message{}, io.EOF
	}
}

func (c *memConn) WriteMessage(m transport.Message) error {
	m.Data = append([]byte(nil), m.Data...)
	select {
	case <-c.closed:
		return net.ErrClosed
	case <-c.peer.closed:
		return io.ErrClosedPipe
	default:
	}
	select {
	case c.out <- m:
		return nil
	case <-c.closed:
		return net.ErrClosed
	case <-c.peer.closed:
		return io.ErrClosedPipe
	}
}

func (c *memConn) Close() error          { c.once.Do(func() { close(c.closed) }); return nil }
func (c *memConn) LocalAddr() net.Addr   { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr  { return &net.TCPAddr{} }
func (c *memConn) PeerAddrs() []net.Addr { return nil }

// Registrar addresses of the virtual-time tests (never dialed for real).
var (
	addrR0 = transport.MustParseAddr("tcp://r0:1")
	addrR1 = transport.MustParseAddr("tcp://r1:1")
	addrR2 = transport.MustParseAddr("tcp://r2:1")
)

type memRegistrar struct {
	t *testing.T
	c *memConn
}

func (r memRegistrar) next() wire.Message {
	r.t.Helper()
	m, err := r.c.ReadMessage()
	if err != nil {
		r.t.Fatalf("registrar side: %v", err)
	}
	msg, err := wire.ParseASAP(m.Data)
	if err != nil {
		r.t.Fatal(err)
	}
	return msg
}

func (r memRegistrar) send(m wire.Message) {
	r.t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.c.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b}); err != nil {
		r.t.Fatal(err)
	}
}

// TestTimersVirtual checks the default timers exactly: T4 re-registration
// after 30 s with Registration Life 90000 ms, T2 expiry after 3 s leading to
// the next registrar, and the staggered hunt: r0 refuses, so r1 is tried at
// once; r1 does not answer, so r2 joins after the stagger (250 ms) and
// answers, and r1's attempt is dropped.
func TestTimersVirtual(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		accepted := make(chan memRegistrar, 4)
		var mu sync.Mutex
		dials := map[transport.Addr][]time.Time{}
		dial := func(ctx context.Context, addr transport.Addr) (transport.Conn, error) {
			mu.Lock()
			dials[addr] = append(dials[addr], time.Now())
			first := len(dials[addr]) == 1
			mu.Unlock()
			switch {
			case addr == addrR0:
				return nil, errors.New("connection refused")
			case addr == addrR1 && first:
				<-ctx.Done() // a black hole until the hunt gives up on it
				return nil, ctx.Err()
			}
			pe, reg := memPipe()
			accepted <- memRegistrar{t, reg}
			return pe, nil
		}
		el, err := NewElement(PEConfig{
			Registrars: []transport.Addr{addrR0, addrR1, addrR2},
			PoolHandle: "P",
			Transport:  wire.Transport{Type: wire.TransportTCP, Port: 1, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
			Policy:     wire.Policy{Type: wire.PolicyRoundRobin},
			ID:         42,
			Dial:       dial,
		}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		el.Start()
		r2 := <-accepted // r0 refused, r1 silent, r2 up
		if d := time.Since(start); d != huntStagger {
			t.Errorf("connected after %v, want the stagger (%v)", d, huntStagger)
		}
		reg := r2.next().(*wire.Registration)
		if reg.Element.RegistrationLife != 90000 {
			t.Errorf("Registration Life %d ms, want 90000", reg.Element.RegistrationLife)
		}
		r2.send(&wire.RegistrationResponse{PoolHandle: "P", ID: 42})
		t0 := time.Now()
		reg = r2.next().(*wire.Registration) // T4
		if d := time.Since(t0); d != 30*time.Second {
			t.Errorf("re-registration after %v, want 30s", d)
		}
		// No answer: T2 (3 s) expires and the element moves on: r0 refuses,
		// r1 answers (r2, which failed, is tried only if every other
		// registrar fails).
		t1 := time.Now()
		r1 := <-accepted
		if d := time.Since(t1); d != 3*time.Second {
			t.Errorf("hunt after %v, want T2 = 3s", d)
		}
		if _, err := r2.c.ReadMessage(); err == nil {
			t.Error("connection to the silent registrar still open")
		}
		reg = r1.next().(*wire.Registration)
		if reg.Element.ID != 42 {
			t.Errorf("ID %d", reg.Element.ID)
		}
		r1.send(&wire.RegistrationResponse{PoolHandle: "P", ID: 42})
		synctest.Wait()
		if st := el.State(); !st.Registered || st.HomeAddr != addrR1 {
			t.Errorf("state %+v", st)
		}

		// Close deregisters at r1.
		closed := make(chan error, 1)
		go func() { closed <- el.Close(context.Background()) }()
		if _, ok := r1.next().(*wire.Deregistration); !ok {
			t.Error("no deregistration")
		}
		r1.send(&wire.DeregistrationResponse{PoolHandle: "P", ID: 42})
		if err := <-closed; err != nil {
			t.Error(err)
		}
		mu.Lock()
		defer mu.Unlock()
		want := map[transport.Addr]time.Duration{addrR0: 0, addrR1: 0, addrR2: huntStagger}
		for a, d := range want {
			if len(dials[a]) == 0 || !dials[a][0].Equal(start.Add(d)) {
				t.Errorf("%s: first dial at %v, want start + %v", a, dials[a], d)
			}
		}
		if len(dials[addrR2]) != 1 {
			t.Errorf("r2 dialed %d times; the failed home must wait until the others failed", len(dials[addrR2]))
		}
	})
}

// TestRetryBackoffVirtual: with every registrar down, hunts repeat after
// the retry interval, doubling up to 30 s.
func TestRetryBackoffVirtual(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var times []time.Time
		el, err := NewElement(PEConfig{
			Registrars: []transport.Addr{addrR0},
			PoolHandle: "P",
			Transport:  wire.Transport{Type: wire.TransportTCP, Port: 1, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
			Dial: func(ctx context.Context, addr transport.Addr) (transport.Conn, error) {
				mu.Lock()
				times = append(times, time.Now())
				mu.Unlock()
				return nil, errors.New("refused")
			},
		}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		el.Start()
		time.Sleep(2 * time.Minute)
		el.Close(context.Background())
		mu.Lock()
		defer mu.Unlock()
		want := []time.Duration{2, 4, 8, 16, 30, 30}
		for i, w := range want {
			if i+1 >= len(times) {
				t.Fatalf("only %d hunts", len(times))
			}
			if d := times[i+1].Sub(times[i]); d != w*time.Second {
				t.Errorf("hunt %d after %v, want %v", i+1, d, w*time.Second)
			}
		}
	})
}

// TestSilentHomeVirtual: a home registrar whose host drops every packet
// sends no reset; the element notices that the keep-alives (every 5 s,
// learnt from the first one after the registration) stop: two periods and
// a second after the last one it re-registers, the home does not answer
// within T2 (3 s), and the element registers at the next registrar, 14 s
// after the last keep-alive instead of at its next re-registration (up to
// 30 s) plus T2.
func TestSilentHomeVirtual(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		accepted := make(chan memRegistrar, 4)
		el, err := NewElement(PEConfig{
			Registrars: []transport.Addr{addrR0, addrR1},
			PoolHandle: "P",
			Transport:  wire.Transport{Type: wire.TransportTCP, Port: 1, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
			Policy:     wire.Policy{Type: wire.PolicyRoundRobin},
			ID:         42,
			Dial: func(ctx context.Context, addr transport.Addr) (transport.Conn, error) {
				pe, reg := memPipe()
				accepted <- memRegistrar{t, reg}
				return pe, nil
			},
		}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		el.Start()
		defer el.Close(context.Background())
		r0 := <-accepted
		r0.next()
		r0.send(&wire.RegistrationResponse{PoolHandle: "P", ID: 42})
		time.Sleep(5 * time.Second)
		r0.send(&wire.EndpointKeepAlive{ServerID: 7, PoolHandle: "P", HasID: true, ID: 42})
		if _, ok := r0.next().(*wire.EndpointKeepAliveAck); !ok {
			t.Fatal("no keep-alive ack")
		}
		last := time.Now()
		if _, ok := r0.next().(*wire.Registration); !ok { // the silence check
			t.Fatal("no re-registration after the silence")
		}
		if d := time.Since(last); d != 11*time.Second {
			t.Errorf("re-registered %v after the last keep-alive, want 2 × 5 s + 1 s", d)
		}
		r1 := <-accepted
		if d := time.Since(last); d != 14*time.Second {
			t.Errorf("moved to the next registrar %v after the last keep-alive, want 11 s + T2", d)
		}
		if _, ok := r1.next().(*wire.Registration); !ok {
			t.Fatal("no registration at the next registrar")
		}
	})
}
