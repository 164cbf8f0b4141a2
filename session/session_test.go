package session_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	peagent "github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/session"
	"github.com/rserpool/rserpool/session/sessiontest"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// A session survives the crash of its PE, twice: the next PE gets the
// Cookie Echo as the session's first message, restores the count, and the
// count goes on without a lost or repeated step.
func TestSessionSurvivesPECrash(t *testing.T) {
	reg := sessiontest.Registrar(t)
	pes := map[uint32]*sessiontest.PE{}
	for id := uint32(1); id <= 3; id++ {
		pes[id] = startCounter(t, reg, "Count", id, nil)
	}
	ctx := ctxT(t, 30*time.Second)
	s, err := session.Dial(ctx, "Count", session.Config{Cache: sessiontest.Cache(t, reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := uint64(0)
	for round := 0; round < 3; round++ {
		fos, rs := countTo(t, ctx, s, n+1, n+10)
		n += 10
		if round > 0 && (len(fos) != 1 || !fos[0].CookieEchoed || fos[0].From.ID == fos[0].To.ID) {
			t.Fatalf("round %d: failovers %v, want one with a cookie echoed", round, fos)
		}
		cur := rs[len(rs)-1].PE
		if s.PE().ID != cur {
			t.Fatalf("session says PE 0x%08x, answers come from 0x%08x", s.PE().ID, cur)
		}
		if round < 2 {
			pes[cur].Kill()
			delete(pes, cur)
		}
	}
	if st := s.Stats(); st.Failovers != 2 || st.Cookies != 30 {
		t.Fatalf("stats %+v, want 2 failovers and 30 cookies", st)
	}
}

// childEnv makes the test binary a PE process (see runChildPE).
const childEnv = "RSERPOOL_SESSION_TEST_PE"

// runChildPE serves the counting service as a PE of pool "Kill": env
// RSERPOOL_SESSION_TEST_PE is the registrar, RSERPOOL_SESSION_TEST_ID the
// PE ID. It prints "ready" once registered and runs until killed.
func runChildPE() int {
	id, err := strconv.ParseUint(os.Getenv("RSERPOOL_SESSION_TEST_ID"), 0, 32)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv, err := session.NewServer(session.ServerConfig{
		Element: peagent.PEConfig{Registrars: []transport.Addr{transport.MustParseAddr(os.Getenv(childEnv))}, PoolHandle: "Kill", ID: uint32(id),
			Policy: wire.Policy{Type: wire.PolicyRoundRobin}},
		Handler: counterHandler(uint32(id)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ln, err := transport.Listen(transport.MustParseAddr("tcp://127.0.0.1:0"), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.WaitRegistered(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("ready")
	<-done
	return 0
}

// startChildPE starts the test binary as PE id and waits for its "ready".
func startChildPE(t *testing.T, reg string, id uint32) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+reg, fmt.Sprintf("RSERPOOL_SESSION_TEST_ID=%d", id))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("PE process %d: %q, %v", id, line, err)
	}
	return cmd
}

// The same with real processes and SIGKILL: the PE gets no chance to say
// anything; the kernel closes its connections.
func TestSessionSurvivesSIGKILL(t *testing.T) {
	reg := sessiontest.Registrar(t)
	procs := map[uint32]*exec.Cmd{}
	for id := uint32(11); id <= 13; id++ {
		procs[id] = startChildPE(t, reg, id)
	}
	ctx := ctxT(t, 60*time.Second)
	s, err := session.Dial(ctx, "Kill", session.Config{Cache: sessiontest.Cache(t, reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := uint64(0)
	seen := map[uint32]bool{}
	for round := 0; round < 3; round++ {
		fos, rs := countTo(t, ctx, s, n+1, n+20)
		n += 20
		if round > 0 && (len(fos) != 1 || !fos[0].CookieEchoed) {
			t.Fatalf("round %d: failovers %v, want one with a cookie echoed", round, fos)
		}
		cur := rs[len(rs)-1].PE
		if seen[cur] {
			t.Fatalf("round %d: back on PE 0x%08x, which was killed", round, cur)
		}
		seen[cur] = true
		if round < 2 {
			if err := procs[cur].Process.Kill(); err != nil {
				t.Fatal(err)
			}
			procs[cur].Wait()
		}
	}
}

// The application can ask for a failover; the notice names the cause.
func TestRequestedFailover(t *testing.T) {
	reg := sessiontest.Registrar(t)
	for id := uint32(1); id <= 2; id++ {
		startCounter(t, reg, "Req", id, nil)
	}
	ctx := ctxT(t, 30*time.Second)
	s, err := session.Dial(ctx, "Req", session.Config{Cache: sessiontest.Cache(t, reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	countTo(t, ctx, s, 1, 3)
	from := s.PE()
	if err := s.Failover(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if s.PE().ID == from.ID {
		t.Fatalf("still on PE %v", from)
	}
	// Failover's nil error was the notice: nobody reports it again, and
	// the new PE restored the count from the cookie echo.
	fos, rs := countTo(t, ctx, s, 4, 6)
	if len(fos) != 0 || !rs[0].Restored {
		t.Fatalf("failovers %v, first answer %+v", fos, rs[0])
	}
}

// A business card steers the failover: every PE of pool "Card" names a PE
// of another pool, which the policy could never choose; the session goes
// there, with the cookie.
func TestBusinessCardSteersFailover(t *testing.T) {
	reg := sessiontest.Registrar(t)
	d := startCounter(t, reg, "Elsewhere", 9, nil)
	card := func() *wire.BusinessCard {
		return &wire.BusinessCard{PoolHandle: "Elsewhere", Elements: []wire.PoolElement{d.Srv.Self()}}
	}
	pes := map[uint32]*sessiontest.PE{}
	for id := uint32(1); id <= 2; id++ {
		pes[id] = startCounter(t, reg, "Card", id, func(c *session.ServerConfig) { c.BusinessCard = card })
	}
	ctx := ctxT(t, 30*time.Second)
	s, err := session.Dial(ctx, "Card", session.Config{Cache: sessiontest.Cache(t, reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, rs := countTo(t, ctx, s, 1, 5)
	pes[rs[4].PE].Kill()
	fos, rs := countTo(t, ctx, s, 6, 10)
	if len(fos) != 1 || !fos[0].FromCard || fos[0].To.ID != 9 || fos[0].To.Pool != "Elsewhere" || rs[0].PE != 9 {
		t.Fatalf("failovers %v, answers from 0x%08x: want the card's PE 9 of pool Elsewhere", fos, rs[0].PE)
	}
	if st := s.Stats(); st.BusinessCards != 1 {
		t.Fatalf("stats %+v, want 1 business card", st)
	}
}

// A card whose PEs are all dead does not strand the session: after trying
// them it falls back to the pool's policy.
func TestDeadBusinessCardFallsBackToPolicy(t *testing.T) {
	reg := sessiontest.Registrar(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := wire.Transport{Type: wire.TransportTCP, Port: uint16(ln.Addr().(*net.TCPAddr).Port),
		Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Use: wire.UseDataAndControl}
	ln.Close()
	card := func() *wire.BusinessCard {
		return &wire.BusinessCard{PoolHandle: "Gone", Elements: []wire.PoolElement{{ID: 77, User: dead}}}
	}
	pes := map[uint32]*sessiontest.PE{}
	for id := uint32(1); id <= 2; id++ {
		pes[id] = startCounter(t, reg, "Fall", id, func(c *session.ServerConfig) { c.BusinessCard = card })
	}
	ctx := ctxT(t, 30*time.Second)
	s, err := session.Dial(ctx, "Fall", session.Config{Cache: sessiontest.Cache(t, reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, rs := countTo(t, ctx, s, 1, 3)
	first := rs[2].PE
	pes[first].Kill()
	fos, rs := countTo(t, ctx, s, 4, 6)
	if len(fos) != 1 || fos[0].FromCard || rs[0].PE == first {
		t.Fatalf("failovers %v, answers from 0x%08x", fos, rs[0].PE)
	}
}

// The PU/PE case: a PE of pool "Front" is a pool user of pool "Back" and
// sends its business card there, so that the back end knows the pool (and
// the PE) its pool user belongs to.
func TestPoolUserThatIsAPESendsItsCard(t *testing.T) {
	reg := sessiontest.Registrar(t)
	sessiontest.StartPE(t, reg, "Back", 20, func(ctx context.Context, p *session.Peer) {
		if _, err := p.Recv(ctx); err != nil {
			return
		}
		bc := p.BusinessCard()
		if bc == nil || len(bc.Elements) == 0 {
			p.Send([]byte("no card"))
			return
		}
		p.Send([]byte(fmt.Sprintf("%s 0x%08x", bc.PoolHandle, bc.Elements[0].ID)))
	}, nil)
	cache := sessiontest.Cache(t, reg)
	var front *sessiontest.PE
	front = sessiontest.StartPE(t, reg, "Front", 10, func(ctx context.Context, p *session.Peer) {
		if _, err := p.Recv(ctx); err != nil {
			return
		}
		card := &wire.BusinessCard{PoolHandle: "Front", Elements: []wire.PoolElement{front.Srv.Self()}}
		back, err := session.Dial(ctx, "Back", session.Config{Cache: cache, BusinessCard: card})
		if err != nil {
			p.Send([]byte(err.Error()))
			return
		}
		defer back.Close()
		back.Send(ctx, []byte("who am I?"))
		m, err := back.Recv(ctx)
		if err != nil {
			p.Send([]byte(err.Error()))
			return
		}
		p.Send(m.Data)
	}, nil)
	_ = front
	ctx := ctxT(t, 30*time.Second)
	s, err := session.Dial(ctx, "Front", session.Config{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Send(ctx, []byte("hello"))
	m, err := s.Recv(ctx)
	if err != nil || string(m.Data) != "Front 0x0000000a" {
		t.Fatalf("back end saw %q, %v; want the front PE's card", m.Data, err)
	}
}

// A cookie over the limit is dropped and the previous one kept; the
// session goes on.
func TestPoolUserDropsOversizedCookie(t *testing.T) {
	reg := sessiontest.Registrar(t)
	sessiontest.StartPE(t, reg, "Big", 1, func(ctx context.Context, p *session.Peer) {
		for {
			m, err := p.Recv(ctx)
			if err != nil {
				return
			}
			if p.SendCookie(make([]byte, len(m.Data))) != nil || p.Send(m.Data) != nil {
				return
			}
		}
	}, func(c *session.ServerConfig) { c.MaxCookieSize = 1 << 10 })
	ctx := ctxT(t, 30*time.Second)
	s, err := session.Dial(ctx, "Big", session.Config{Cache: sessiontest.Cache(t, reg), MaxCookieSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, n := range []int{64, 65, 512} {
		if err := s.Send(ctx, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Cookies != 1 || st.CookiesDropped != 2 || len(s.Cookie()) != 64 {
		t.Fatalf("stats %+v, cookie of %d bytes; want the 64-byte one kept and two dropped", st, len(s.Cookie()))
	}
}

// When the pool has no other PE, the failover gives up after
// FailoverTimeout and the session reports why.
func TestFailoverGivesUp(t *testing.T) {
	reg := sessiontest.Registrar(t)
	only := startCounter(t, reg, "Alone", 1, nil)
	ctx := ctxT(t, 30*time.Second)
	s, err := session.Dial(ctx, "Alone", session.Config{Cache: sessiontest.Cache(t, reg), FailoverTimeout: time.Second, RetryDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	countTo(t, ctx, s, 1, 2)
	only.Kill()
	if _, err := s.Recv(ctx); !errors.Is(err, session.ErrNoPE) {
		t.Fatalf("Recv: %v, want session.ErrNoPE", err)
	}
	if err := s.Send(ctx, []byte{1}); !errors.Is(err, session.ErrNoPE) {
		t.Fatalf("Send: %v, want session.ErrNoPE", err)
	}
}

// Dial refuses what cannot work, with errors that say why.
func TestDialErrors(t *testing.T) {
	reg := sessiontest.Registrar(t)
	cache := sessiontest.Cache(t, reg)
	ctx := ctxT(t, 30*time.Second)
	if _, err := session.Dial(ctx, "Nobody", session.Config{Cache: cache}); !errors.Is(err, session.ErrNoPE) {
		t.Fatalf("unknown pool: %v", err)
	}
	if _, err := session.Dial(ctx, "X", session.Config{Cache: cache, PPID: wire.PPIDASAP}); !errors.Is(err, session.ErrASAPPPID) {
		t.Fatalf("PPID 11: %v", err)
	}
	if _, err := session.Dial(ctx, "X", session.Config{}); err == nil {
		t.Fatal("no cache: no error")
	}
	// A plain TCP server (Transport Use "data only") does not speak the
	// TCP mapping: the session must not take it for a peer.
	el, err := peagent.NewElement(peagent.PEConfig{Registrars: []transport.Addr{transport.MustParseAddr(reg)}, PoolHandle: "Plain", ID: 5,
		Transport: wire.Transport{Type: wire.TransportTCP, Port: 9, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		Policy:    wire.Policy{Type: wire.PolicyRoundRobin}}, peagent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close(context.Background())
	el.Start()
	for !el.State().Registered {
		select {
		case <-el.Changes():
		case <-ctx.Done():
			t.Fatal("plain PE not registered")
		}
	}
	if _, err := session.Dial(ctx, "Plain", session.Config{Cache: cache}); !errors.Is(err, session.ErrNoControl) {
		t.Fatalf("plain TCP PE: %v", err)
	}
}

// The stream view: Write splits, Read joins.
func TestStreamView(t *testing.T) {
	reg := sessiontest.Registrar(t)
	sessiontest.StartPE(t, reg, "Echo", 1, func(ctx context.Context, p *session.Peer) {
		for {
			m, err := p.Recv(ctx)
			if err != nil || p.Send(m.Data) != nil {
				return
			}
		}
	}, nil)
	ctx := ctxT(t, 30*time.Second)
	s, err := session.Dial(ctx, "Echo", session.Config{Cache: sessiontest.Cache(t, reg), PPID: 42})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := make([]byte, 100_000)
	for i := range want {
		want[i] = byte(i * 7)
	}
	var rw io.ReadWriter = s
	if n, err := rw.Write(want); n != len(want) || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(rw, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatal("echoed bytes differ")
	}
	if err := s.SendMessage(ctx, session.Message{PPID: wire.PPIDASAP}); !errors.Is(err, session.ErrASAPPPID) {
		t.Fatalf("PPID 11: %v", err)
	}
}
