package calcapp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rserpool/rserpool/session"
	"github.com/rserpool/rserpool/session/sessiontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFormats(t *testing.T) {
	// A Complete of job 7: 5,000,000 calculations, all done (layout of
	// RSPLIB's struct CalcAppMessage).
	want, _ := hex.DecodeString("05000018" + "00000007" + "00000000004c4b40" + "00000000004c4b40")
	m := Message{Type: TypeComplete, JobID: 7, JobSize: 5_000_000, Completed: 5_000_000}
	if b := AppendMessage(nil, m); !bytes.Equal(b, want) {
		t.Fatalf("%x, want %x", b, want)
	}
	if got, err := ParseMessage(want); err != nil || got != m {
		t.Fatalf("%+v, %v", got, err)
	}
	c := Cookie{JobID: 7, JobSize: 5_000_000, Completed: 1_234_567}
	cb := AppendCookie(nil, c)
	if len(cb) != CookieLen {
		t.Fatalf("cookie of %d bytes", len(cb))
	}
	if got, err := ParseCookie(cb); err != nil || got != c {
		t.Fatalf("%+v, %v", got, err)
	}
	for name, b := range map[string][]byte{
		"short":        want[:23],
		"length short": append([]byte{5, 0, 0, 23}, want[4:]...),
		"length long":  append([]byte{5, 0, 0, 25}, want[4:]...),
		"type 0":       append([]byte{0}, want[1:]...),
		"type 8":       append([]byte{8}, want[1:]...),
	} {
		if _, err := ParseMessage(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, b := range map[string][]byte{
		"short":          cb[:19],
		"done over size": AppendCookie(nil, Cookie{JobID: 1, JobSize: 5, Completed: 6}),
	} {
		if _, err := ParseCookie(b); !errors.Is(err, ErrFormat) {
			t.Errorf("cookie %s: %v", name, err)
		}
	}
}

// FuzzParse: no input panics; what decodes encodes back.
func FuzzParse(f *testing.F) {
	f.Add(AppendMessage(nil, Message{Type: TypeRequest, JobID: 1, JobSize: 10}))
	f.Add(AppendCookie(nil, Cookie{JobID: 1, JobSize: 10, Completed: 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := ParseMessage(b); err == nil {
			if e := AppendMessage(nil, m); !bytes.Equal(e[4:], b[4:MessageLen]) || e[0] != b[0] {
				t.Fatalf("%x re-encodes to %x", b, e)
			}
		}
		if c, err := ParseCookie(b); err == nil && !bytes.Equal(AppendCookie(nil, c), b[:CookieLen]) {
			t.Fatalf("cookie %x", b)
		}
	})
}

type workerEvent struct {
	pe uint32
	Event
}

// A worker dies in the middle of a job: the client's session fails over
// with the last cookie, and the other worker takes the job over from the
// progress the cookie carries instead of starting again.
func TestJobSurvivesWorkerCrash(t *testing.T) {
	reg := sessiontest.Registrar(t)
	events := make(chan workerEvent, 256)
	pes := map[uint32]*sessiontest.PE{}
	for id := uint32(1); id <= 2; id++ {
		w := NewWorker(WorkerConfig{Capacity: 2e6, CookieInterval: 20 * time.Millisecond,
			OnEvent: func(e Event) {
				select {
				case events <- workerEvent{id, e}:
				default:
				}
			}})
		pes[id] = sessiontest.StartPE(t, reg, "CalcAppPool", id, w.Handler, func(c *session.ServerConfig) { c.PPID = PPID })
	}
	cache := sessiontest.Cache(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	type result struct {
		rs  []JobResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		rs, err := Run(ctx, func(ctx context.Context) (*session.Session, error) {
			return session.Dial(ctx, "CalcAppPool", session.Config{Cache: cache, PPID: PPID})
		}, ClientConfig{JobSize: 1_000_000, KeepAliveInterval: 100 * time.Millisecond, KeepAliveTimeout: time.Second, Out: &out})
		done <- result{rs, err}
	}()

	// Kill the worker once it has sent a cookie with some progress.
	var victim uint32
	for victim == 0 {
		select {
		case e := <-events:
			if e.Kind == EventCookie && e.Completed > 0 {
				victim = e.pe
			}
		case <-ctx.Done():
			t.Fatalf("no cookie from a worker: %s", out.String())
		}
	}
	pes[victim].Kill()
	r := <-done
	if r.err != nil || len(r.rs) != 1 {
		t.Fatalf("%+v, %v\n%s", r.rs, r.err, out.String())
	}
	if j := r.rs[0]; j.PE == victim || j.Failovers != 1 || j.Restarts != 0 {
		t.Fatalf("job %+v (victim %d)\n%s", j, victim, out.String())
	}
	for {
		select {
		case e := <-events:
			if e.pe != victim && e.Kind == EventRestored {
				if e.Completed == 0 || e.Completed >= e.JobSize {
					t.Fatalf("restored %d of %d", e.Completed, e.JobSize)
				}
				return
			}
		default:
			t.Fatalf("the other worker did not restore the job from the cookie echo\n%s", out.String())
		}
	}
}
