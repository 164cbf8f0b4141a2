package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func lines(b *bytes.Buffer) []string { return strings.Split(strings.TrimSpace(b.String()), "\n") }
func newTest(opts Options) (*slog.Logger, *bytes.Buffer, *clock) {
	var buf bytes.Buffer
	c := &clock{t: time.Unix(1000, 0)}
	opts.Now = c.now
	h := New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}), opts)
	return slog.New(h), &buf, c
}

func TestOnePerIntervalWithCount(t *testing.T) {
	log, buf, c := newTest(Options{})
	for range 1000 {
		log.Warn("refused", "src", "10.0.0.1")
	}
	log.Warn("other")
	c.add(999 * time.Millisecond)
	log.Warn("refused", "src", "10.0.0.2")
	c.add(time.Millisecond)
	log.With("listener", "l1").Warn("refused", "src", "10.0.0.3")
	log.Debug("debug lines pass", "n", 1)
	log.Debug("debug lines pass", "n", 2)
	want := []string{
		`level=WARN msg=refused src=10.0.0.1`,
		`level=WARN msg=other`,
		`level=WARN msg=refused listener=l1 src=10.0.0.3 suppressed=1000`,
		`level=DEBUG msg="debug lines pass" n=1`,
		`level=DEBUG msg="debug lines pass" n=2`,
	}
	if got := lines(buf); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLevelsAreSeparateKeys(t *testing.T) {
	log, buf, _ := newTest(Options{Level: slog.LevelDebug})
	log.Info("x")
	log.Warn("x")
	log.Info("x")
	if n := len(lines(buf)); n != 2 {
		t.Fatalf("%d lines: %q", n, buf.String())
	}
}

func TestKeyTableBounded(t *testing.T) {
	log, buf, c := newTest(Options{MaxKeys: 4})
	for i := range 100 {
		log.Warn(strings.Repeat("m", i+1))
	}
	h := log.Handler().(*Handler)
	if n := len(h.t.entries); n != 4 {
		t.Fatalf("%d keys, want 4", n)
	}
	if n := len(lines(buf)); n != 4 {
		t.Fatalf("%d lines, want 4", n)
	}
	c.add(2 * time.Second)
	buf.Reset()
	log.Warn("new after quiet")
	if !strings.Contains(buf.String(), "new after quiet") || !strings.Contains(buf.String(), "suppressed_other=96") {
		t.Fatalf("a new key after the others went quiet was dropped: %q", buf.String())
	}
}

func TestConcurrent(t *testing.T) {
	var buf syncBuf
	log := slog.New(New(slog.NewTextHandler(&buf, nil), Options{Interval: time.Hour}))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				log.With("g", 1).Warn("flood")
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(buf.String(), "flood"); n != 1 {
		t.Fatalf("%d lines, want 1", n)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
