package session

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	peagent "github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/registrar"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChildPE())
	}
	goleak.VerifyTestMain(m)
}

// testKey is the cookie key shared by every PE of the tests' pools.
var testKey = []byte("0123456789abcdef0123456789abcdef")

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startRegistrar runs a real registrar on a free loopback port.
func startRegistrar(t testing.TB) string {
	t.Helper()
	cfg := registrar.DefaultConfig()
	cfg.ASAP.Listen = []string{"tcp://127.0.0.1:0"}
	r, err := registrar.New(cfg, registrar.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	select {
	case <-r.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("registrar not ready")
	}
	return r.ASAPAddrs()[0]
}

func newCache(t testing.TB, reg string) *pucache.Cache {
	t.Helper()
	c, err := pucache.New(pucache.Config{Registrars: []string{reg}}, pucache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pe is one pool element of a test, served in this process.
type pe struct {
	srv      *Server
	done     chan error // Serve's result
	once     sync.Once
	serveErr error
}

// startPE registers a session server in pool at reg and waits until the
// registrar has accepted it. The test's cleanup closes it.
func startPE(t testing.TB, reg string, pool wire.PoolHandle, id uint32, h func(context.Context, *Peer), mod func(*ServerConfig)) *pe {
	t.Helper()
	cfg := ServerConfig{
		Element: peagent.PEConfig{Registrars: []string{reg}, PoolHandle: pool, ID: id,
			Policy: wire.Policy{Type: wire.PolicyRoundRobin}},
		Handler: h,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := transport.Listen("tcp://127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &pe{srv: srv, done: make(chan error, 1)}
	go func() { p.done <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(p.stop)
	if err := srv.WaitRegistered(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return p
}

// stop closes the server like a crash and waits for Serve to return.
func (p *pe) stop() {
	p.srv.Close()
	p.wait()
}

// wait waits for Serve to return and returns its error.
func (p *pe) wait() error {
	p.once.Do(func() { p.serveErr = <-p.done })
	return p.serveErr
}

// The test service counts: a request is the step the pool user wants
// (u64); the PE applies it if it is the next one (a repeated step is
// answered again without counting), sends the signed count as its cookie,
// then answers: count (u64), flags (u8: 1 = this session opened with a
// Cookie Echo whose state was restored), PE ID (u32).
const flagRestored = 1

func counterHandler(id uint32) func(context.Context, *Peer) {
	signer, err := NewSigner(testKey)
	if err != nil {
		panic(err)
	}
	return func(ctx context.Context, p *Peer) {
		var count uint64
		var flags byte
		for {
			m, err := p.Recv(ctx)
			if err != nil {
				return
			}
			if m.CookieEcho {
				state, err := signer.Verify(m.Data)
				if err != nil || len(state) != 8 {
					return // forged: end the session
				}
				count, flags = binary.BigEndian.Uint64(state), flagRestored
				continue
			}
			if len(m.Data) != 8 {
				return
			}
			if step := binary.BigEndian.Uint64(m.Data); step == count+1 {
				count = step
			}
			if p.SendCookie(signer.Sign(binary.BigEndian.AppendUint64(nil, count))) != nil {
				return
			}
			reply := binary.BigEndian.AppendUint64(nil, count)
			reply = append(reply, flags)
			reply = binary.BigEndian.AppendUint32(reply, id)
			if p.Send(reply) != nil {
				return
			}
		}
	}
}

type reply struct {
	count    uint64
	restored bool
	pe       uint32
}

// step asks for step n and waits for the answer, sending the request again
// after each failover notice (from Send or Recv). It returns the answer and
// the failovers seen. An answer to an earlier step would be a request that
// reached a PE twice: it fails the test.
func step(t testing.TB, ctx context.Context, s *Session, n uint64) (reply, []*FailoverError) {
	t.Helper()
	var fos []*FailoverError
	req := binary.BigEndian.AppendUint64(nil, n)
	send := func() {
		for {
			err := s.Send(ctx, req)
			var fo *FailoverError
			if !errors.As(err, &fo) {
				if err != nil {
					t.Fatalf("send step %d: %v", n, err)
				}
				return
			}
			fos = append(fos, fo)
		}
	}
	send()
	for {
		m, err := s.Recv(ctx)
		var fo *FailoverError
		if errors.As(err, &fo) {
			fos = append(fos, fo)
			send()
			continue
		}
		if err != nil {
			t.Fatalf("step %d: %v", n, err)
		}
		if len(m.Data) != 13 {
			t.Fatalf("step %d: answer of %d bytes", n, len(m.Data))
		}
		r := reply{binary.BigEndian.Uint64(m.Data), m.Data[8]&flagRestored != 0, binary.BigEndian.Uint32(m.Data[9:])}
		if r.count != n {
			t.Fatalf("step %d answered %d (PE 0x%08x): a step lost or repeated", n, r.count, r.pe)
		}
		return r, fos
	}
}
