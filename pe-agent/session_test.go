package peagent

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// fakeRegistrar is a scripted registrar over the real transport: the test
// reads what the PE sends and decides each answer. It accepts one
// connection at a time and records every message.
type fakeRegistrar struct {
	t    *testing.T
	ln   transport.Listener
	addr transport.Addr
	msgs chan wire.Message
	conn chan transport.Conn // each accepted connection
	done chan struct{}

	mu    sync.Mutex // guards conns, last
	conns []transport.Conn
	last  transport.Conn // the connection of the latest message
}

func newFakeRegistrar(t *testing.T) *fakeRegistrar {
	t.Helper()
	ln, err := transport.Listen(transport.MustParseAddr("tcp://127.0.0.1:0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRegistrar{t: t, ln: ln, addr: transport.MustParseAddr("tcp://" + ln.Addr().String()),
		msgs: make(chan wire.Message, 100), conn: make(chan transport.Conn, 10), done: make(chan struct{})}
	readers := make(chan chan struct{}, 100)
	go func() {
		defer close(f.done)
		defer func() {
			close(readers)
			for r := range readers {
				<-r
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			f.conn <- c
			r := make(chan struct{})
			readers <- r
			go func() {
				defer close(r)
				for {
					m, err := c.ReadMessage()
					if err != nil {
						return
					}
					msg, err := wire.ParseASAP(m.Data)
					if err != nil {
						t.Errorf("fake registrar: undecodable message: %v", err)
						return
					}
					f.mu.Lock()
					f.last = c
					f.mu.Unlock()
					f.msgs <- msg
				}
			}()
		}
	}()
	t.Cleanup(f.stop)
	return f
}

// stop closes the listener and every accepted connection.
func (f *fakeRegistrar) stop() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	<-f.done
}

func (f *fakeRegistrar) accept() transport.Conn {
	f.t.Helper()
	select {
	case c := <-f.conn:
		return c
	case <-time.After(5 * time.Second):
		f.t.Fatal("fake registrar: no connection")
		return nil
	}
}

// lastConn returns the connection the latest message came on.
func (f *fakeRegistrar) lastConn() transport.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *fakeRegistrar) next() wire.Message {
	f.t.Helper()
	select {
	case m := <-f.msgs:
		return m
	case <-time.After(5 * time.Second):
		f.t.Fatal("fake registrar: no message")
		return nil
	}
}

func (f *fakeRegistrar) noMessage(d time.Duration) {
	f.t.Helper()
	select {
	case m := <-f.msgs:
		f.t.Fatalf("fake registrar: unexpected %T %+v", m, m)
	case <-time.After(d):
	}
}

func nextOf[T wire.Message](f *fakeRegistrar) T {
	f.t.Helper()
	m := f.next()
	v, ok := m.(T)
	if !ok {
		var zero T
		f.t.Fatalf("fake registrar: got %T %+v, want %T", m, m, zero)
	}
	return v
}

func send(t *testing.T, c transport.Conn, m wire.Message) {
	t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b}); err != nil {
		t.Fatal(err)
	}
}

// waitState waits until cond holds for the element's state.
func waitState(t *testing.T, el *Element, what string, cond func(State) bool) State {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		st := el.State()
		if cond(st) {
			return st
		}
		select {
		case <-el.Changes():
		case <-deadline:
			t.Fatalf("timeout waiting for %s; state %+v", what, st)
		}
	}
}

func testPEConfig(registrars ...transport.Addr) PEConfig {
	return PEConfig{
		Registrars: registrars,
		PoolHandle: "TestPool",
		Transport: wire.Transport{Type: wire.TransportTCP, Port: 7001,
			Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		Policy:                 wire.Policy{Type: wire.PolicyLeastUsed, Load: 5},
		ReregistrationInterval: time.Hour,
		ResponseTimeout:        time.Second,
		ConnectTimeout:         time.Second,
		RetryInterval:          100 * time.Millisecond,
	}
}

func closeEl(t *testing.T, el *Element) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	el.Close(ctx)
}

func TestElementRegisterKeepAliveDeregister(t *testing.T) {
	f := newFakeRegistrar(t)
	cfg := testPEConfig(f.addr)
	cfg.ID = 0x1234
	cfg.ReregistrationInterval = 2 * time.Second
	el, err := NewElement(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeEl(t, el)
	if err := el.Start(); err != nil {
		t.Fatal(err)
	}
	c := f.accept()
	reg := nextOf[*wire.Registration](f)
	if reg.PoolHandle != "TestPool" || reg.Element.ID != 0x1234 || reg.Element.RegistrationLife != 6000 ||
		reg.Element.Policy.Load != 5 || reg.Element.User.Port != 7001 || reg.Element.HomeServer != 0 {
		t.Fatalf("registration %+v", reg)
	}
	if st := el.State(); st.Registered {
		t.Fatal("registered before the response")
	}
	send(t, c, &wire.RegistrationResponse{PoolHandle: "TestPool", ID: 0x1234})
	st := waitState(t, el, "registered", func(s State) bool { return s.Registered })
	if st.HomeAddr != f.addr || st.LastErr != nil {
		t.Errorf("state %+v", st)
	}

	// A keep-alive without PE ID: one ack; the server ID becomes home.
	send(t, c, &wire.EndpointKeepAlive{ServerID: 0xaa, PoolHandle: "TestPool"})
	ack := nextOf[*wire.EndpointKeepAliveAck](f)
	if ack.PoolHandle != "TestPool" || ack.ID != 0x1234 {
		t.Errorf("ack %+v", ack)
	}
	waitState(t, el, "home 0xaa", func(s State) bool { return s.Home == 0xaa })
	// Another pool's keep-alive and one for another PE ID are not answered.
	send(t, c, &wire.EndpointKeepAlive{ServerID: 0xaa, PoolHandle: "OtherPool"})
	send(t, c, &wire.EndpointKeepAlive{ServerID: 0xaa, PoolHandle: "TestPool", HasID: true, ID: 0x9999})
	// H=1 from another server ID: adopt it as home.
	send(t, c, &wire.EndpointKeepAlive{Home: true, ServerID: 0xbb, PoolHandle: "TestPool", HasID: true, ID: 0x1234})
	ack = nextOf[*wire.EndpointKeepAliveAck](f)
	if ack.ID != 0x1234 {
		t.Errorf("ack %+v", ack)
	}
	waitState(t, el, "home 0xbb", func(s State) bool { return s.Home == 0xbb })
	// H=0 from yet another server does not move home.
	send(t, c, &wire.EndpointKeepAlive{ServerID: 0xcc, PoolHandle: "TestPool"})
	nextOf[*wire.EndpointKeepAliveAck](f)
	if st := el.State(); st.Home != 0xbb {
		t.Errorf("home moved on H=0: %+v", st)
	}

	// Periodic re-registration carries the home server ID.
	reg = nextOf[*wire.Registration](f)
	if reg.Element.ID != 0x1234 || reg.Element.HomeServer != 0xbb {
		t.Errorf("re-registration %+v", reg)
	}
	send(t, c, &wire.RegistrationResponse{PoolHandle: "TestPool", ID: 0x1234})

	// Policy change: immediate re-registration with the new load.
	if err := el.SetPolicy(wire.Policy{Type: wire.PolicyLeastUsed, Load: 77}); err != nil {
		t.Fatal(err)
	}
	reg = nextOf[*wire.Registration](f)
	if reg.Element.Policy.Load != 77 {
		t.Errorf("re-registration after SetPolicy: %+v", reg.Element.Policy)
	}
	send(t, c, &wire.RegistrationResponse{PoolHandle: "TestPool", ID: 0x1234})
	// The same values again: nothing is sent.
	el.SetPolicy(wire.Policy{Type: wire.PolicyLeastUsed, Load: 77})

	// Close deregisters and waits for the answer.
	closed := make(chan error, 1)
	go func() { closed <- el.Close(context.Background()) }()
	dereg := nextOf[*wire.Deregistration](f)
	if dereg.PoolHandle != "TestPool" || dereg.ID != 0x1234 {
		t.Errorf("deregistration %+v", dereg)
	}
	send(t, c, &wire.DeregistrationResponse{PoolHandle: "TestPool", ID: 0x1234})
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}
	if st := el.State(); st.Registered {
		t.Errorf("registered after Close: %+v", st)
	}
}

func TestElementRejectedRetries(t *testing.T) {
	f := newFakeRegistrar(t)
	el, err := NewElement(testPEConfig(f.addr), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeEl(t, el)
	el.Start()
	c := f.accept()
	reg := nextOf[*wire.Registration](f)
	send(t, c, &wire.RegistrationResponse{Reject: true, PoolHandle: reg.PoolHandle, ID: reg.Element.ID,
		Error: &wire.OperationError{Causes: []wire.ErrorCause{{Code: wire.CauseInconsistentPolicy}}}})
	st := waitState(t, el, "rejection", func(s State) bool { return s.LastErr != nil })
	var rej *RejectedError
	if !errors.As(st.LastErr, &rej) || rej.Causes[0].Code != wire.CauseInconsistentPolicy || st.Registered {
		t.Fatalf("state %+v", st)
	}
	// Retried after the retry interval; accepted this time.
	reg = nextOf[*wire.Registration](f)
	send(t, c, &wire.RegistrationResponse{PoolHandle: reg.PoolHandle, ID: reg.Element.ID})
	st = waitState(t, el, "registered", func(s State) bool { return s.Registered })
	if st.LastErr != nil {
		t.Errorf("LastErr after success: %v", st.LastErr)
	}
}

// TestElementFailsOverWhenRegistrarSilent: the hunt tries both registrars
// at once; if the silent one wins, T2 moves the element to the good one.
func TestElementFailsOverWhenRegistrarSilent(t *testing.T) {
	silent, good := newFakeRegistrar(t), newFakeRegistrar(t)
	el, err := NewElement(testPEConfig(silent.addr, good.addr), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeEl(t, el)
	el.Start()
	reg := nextOf[*wire.Registration](good) // at once, or after the silent one's T2
	send(t, good.lastConn(), &wire.RegistrationResponse{PoolHandle: reg.PoolHandle, ID: reg.Element.ID})
	st := waitState(t, el, "registered at the second registrar", func(s State) bool { return s.Registered })
	if st.HomeAddr != good.addr {
		t.Errorf("home %q, want %q", st.HomeAddr, good.addr)
	}
}

// TestElementReregistersAfterConnectionLoss: when the home registrar dies,
// the element registers at the other one with the same PE ID.
func TestElementReregistersAfterConnectionLoss(t *testing.T) {
	a, b := newFakeRegistrar(t), newFakeRegistrar(t)
	el, err := NewElement(testPEConfig(a.addr, b.addr), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeEl(t, el)
	el.Start()
	var reg *wire.Registration
	home, other := a, b
	select { // the parallel hunt connects to either first
	case m := <-a.msgs:
		reg = m.(*wire.Registration)
	case m := <-b.msgs:
		reg, home, other = m.(*wire.Registration), b, a
	case <-time.After(5 * time.Second):
		t.Fatal("no registration")
	}
	send(t, home.lastConn(), &wire.RegistrationResponse{PoolHandle: reg.PoolHandle, ID: reg.Element.ID})
	waitState(t, el, "registered", func(s State) bool { return s.Registered && s.HomeAddr == home.addr })
	home.stop() // the home registrar dies
	reg2 := nextOf[*wire.Registration](other)
	if reg2.Element.ID != reg.Element.ID {
		t.Errorf("PE ID changed: %#x → %#x", reg.Element.ID, reg2.Element.ID)
	}
	send(t, other.lastConn(), &wire.RegistrationResponse{PoolHandle: reg2.PoolHandle, ID: reg2.Element.ID})
	waitState(t, el, "registered at the other registrar", func(s State) bool { return s.Registered && s.HomeAddr == other.addr })
}

func TestElementSuspendResume(t *testing.T) {
	f := newFakeRegistrar(t)
	el, err := NewElement(testPEConfig(f.addr), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeEl(t, el)
	el.Start()
	c := f.accept()
	reg := nextOf[*wire.Registration](f)
	send(t, c, &wire.RegistrationResponse{PoolHandle: reg.PoolHandle, ID: reg.Element.ID})
	waitState(t, el, "registered", func(s State) bool { return s.Registered })
	el.Suspend()
	nextOf[*wire.Deregistration](f)
	send(t, c, &wire.DeregistrationResponse{PoolHandle: reg.PoolHandle, ID: reg.Element.ID})
	waitState(t, el, "deregistered", func(s State) bool { return !s.Registered })
	f.noMessage(200 * time.Millisecond)
	el.Start()
	nextOf[*wire.Registration](f)
}

func TestElementCloseBoundedWhenRegistrarSilent(t *testing.T) {
	f := newFakeRegistrar(t)
	el, err := NewElement(testPEConfig(f.addr), Options{})
	if err != nil {
		t.Fatal(err)
	}
	el.Start()
	c := f.accept()
	reg := nextOf[*wire.Registration](f)
	send(t, c, &wire.RegistrationResponse{PoolHandle: reg.PoolHandle, ID: reg.Element.ID})
	waitState(t, el, "registered", func(s State) bool { return s.Registered })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := el.Close(ctx); !errors.Is(err, ErrTimeout) {
		t.Errorf("Close = %v, want ErrTimeout", err)
	}
}

func TestElementNoRegistrarReachable(t *testing.T) {
	el, err := NewElement(testPEConfig(transport.MustParseAddr(closedPort(t))), Options{})
	if err != nil {
		t.Fatal(err)
	}
	el.Start()
	st := waitState(t, el, "hunt failure", func(s State) bool { return s.LastErr != nil })
	if st.Registered {
		t.Errorf("state %+v", st)
	}
	if err := el.Close(context.Background()); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := el.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v", err)
	}
}

// TestAgentElementsShareOneConnection: two elements of one agent register
// over a single registrar connection, and a keep-alive without PE ID is
// acknowledged once per element of its pool.
func TestAgentElementsShareOneConnection(t *testing.T) {
	f := newFakeRegistrar(t)
	b1, b2 := startBackend(t), startBackend(t)
	cfg := AgentConfig{Registrars: []transport.Addr{f.addr}, ResponseTimeout: 5 * time.Second}
	for _, b := range []*backend{b1, b2} {
		cfg.Elements = append(cfg.Elements, ElementConfig{Pool: "Shared", Backend: b.addr, Health: HealthConfig{Disable: true}})
	}
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Start()
	c := f.accept()
	ids := map[uint32]bool{}
	for range 2 {
		reg := nextOf[*wire.Registration](f)
		ids[reg.Element.ID] = true
		send(t, c, &wire.RegistrationResponse{PoolHandle: reg.PoolHandle, ID: reg.Element.ID})
	}
	if len(ids) != 2 {
		t.Fatalf("registrations for IDs %v, want two distinct", ids)
	}
	send(t, c, &wire.EndpointKeepAlive{ServerID: 1, PoolHandle: "Shared"})
	acked := map[uint32]bool{}
	for range 2 {
		acked[nextOf[*wire.EndpointKeepAliveAck](f).ID] = true
	}
	if len(acked) != 2 {
		t.Errorf("acks for %v, want both elements", acked)
	}
	select {
	case <-f.conn:
		t.Error("a second registrar connection was opened")
	case <-time.After(200 * time.Millisecond):
	}
	for _, s := range a.Status() {
		if !s.Registered || !s.Healthy || s.HomeAddr != f.addr {
			t.Errorf("status %+v", s)
		}
	}
}
