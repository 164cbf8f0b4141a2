package session_test

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rserpool/rserpool/examples/counter"
	"github.com/rserpool/rserpool/session"
	"github.com/rserpool/rserpool/session/sessiontest"
	"github.com/rserpool/rserpool/wire"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChildPE())
	}
	goleak.VerifyTestMain(m)
}

// The tests' PEs serve the counter of examples/counter: a request is the
// step the pool user wants, the PE counts only the next step, and sends
// its count as a signed cookie before each answer. testKey is the pools'
// cookie key.
var testKey = []byte("0123456789abcdef0123456789abcdef")

func counterHandler(id uint32) func(context.Context, *session.Peer) {
	signer, err := session.NewSigner(testKey)
	if err != nil {
		panic(err)
	}
	return counter.Handler(id, signer, nil)
}

func startCounter(t testing.TB, reg string, pool wire.PoolHandle, id uint32, mod func(*session.ServerConfig)) *sessiontest.PE {
	t.Helper()
	return sessiontest.StartPE(t, reg, pool, id, counterHandler(id), mod)
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// countTo steps the session from..to. counter.Step fails on any answer
// that is not the step asked for (a step lost, or a request that reached a
// PE twice); countTo also checks that the first answer after a failover
// comes from a session whose state a Cookie Echo restored. It returns the
// failovers seen and the answers.
func countTo(t *testing.T, ctx context.Context, s *session.Session, from, to uint64) ([]*session.FailoverError, []counter.Answer) {
	t.Helper()
	var fos []*session.FailoverError
	var as []counter.Answer
	for n := from; n <= to; n++ {
		a, f, err := counter.Step(ctx, s, n)
		if err != nil {
			t.Fatalf("step %d: %v", n, err)
		}
		if len(f) > 0 && !a.Restored {
			t.Fatalf("step %d: first answer after a failover from a PE that restored nothing", n)
		}
		for _, fo := range f {
			if !errors.Is(fo, session.ErrFailover) || errors.Is(fo, io.EOF) {
				t.Fatalf("%v: matches ErrFailover %v, io.EOF %v", fo, errors.Is(fo, session.ErrFailover), errors.Is(fo, io.EOF))
			}
		}
		fos = append(fos, f...)
		as = append(as, a)
	}
	return fos, as
}
