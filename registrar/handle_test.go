package registrar

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rserpool/rserpool/wire"
)

// hostileHandles are pool handles that are not text: invalid UTF-8, NUL,
// control and non-printable bytes, quotes and backslashes, and the maximum
// length of the test's config (64 bytes).
var hostileHandles = []wire.PoolHandle{
	"\xff\xfe\xfd",
	"nul\x00inside",
	"\x00",
	"ctl\x01\x1b[31m\n",
	"nbsp\u00a0rlo\u202e",
	`quote"back\slash`,
	"half-rune\xe6\x97",
	wire.PoolHandle(bytes.Repeat([]byte{0x80}, 64)),
}

// syncBuffer is a bytes.Buffer safe for the registrar's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRegressionNonUTF8PoolHandle: one registration whose pool handle was
// not valid UTF-8 killed the registrar (panic in the pool_elements gauge's
// label). Every such handle registers, resolves, deregisters, and reaches
// each text sink (metric label, JSON and text log lines, /handlespace)
// escaped one way, from which the bytes come back.
func TestRegressionNonUTF8PoolHandle(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var logs syncBuffer
			var handler slog.Handler = slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})
			if format == "text" {
				handler = slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})
			}
			cfg := testConfig()
			cfg.Limits.MaxHandleLength = 64
			reg := prometheus.NewRegistry()
			r, err := New(cfg, Options{Logger: slog.New(handler), Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				r.Shutdown(ctx)
			})
			pe := dial(t, r.ASAPAddrs()[0])
			pe.autoAck.Store(true)
			for i, h := range hostileHandles {
				resp := pe.register(regMsg(string(h), uint32(i+1), 7000, wire.PolicyRoundRobin))
				if resp.Reject || resp.PoolHandle != h {
					t.Fatalf("register %x: %+v", string(h), resp)
				}
				hr := pe.resolve(string(h), 0)
				if hr.Error != nil || len(hr.Elements) != 1 || hr.Elements[0].ID != uint32(i+1) {
					t.Fatalf("resolve %x: %+v", string(h), hr)
				}
			}
			// A handle one byte too long is refused, not fatal.
			long := regMsg(strings.Repeat("\xff", 65), 99, 7000, wire.PolicyRoundRobin)
			if resp := pe.register(long); !resp.Reject {
				t.Fatalf("65-byte handle accepted")
			}

			// Prometheus: one gauge per pool, labelled with the escaped form.
			m := r.m.poolElements
			testutil.CollectAndCount(r.m.poolGauge) // a scrape fills the gauge
			for _, h := range hostileHandles {
				if v := testutil.ToFloat64(m.WithLabelValues(h.String())); v != 1 {
					t.Errorf("pool_elements{pool=%q} = %v, want 1", h, v)
				}
			}
			if _, err := reg.Gather(); err != nil {
				t.Fatalf("gather: %v", err)
			}
			body := httpGet(t, "http://"+r.AdminAddr()+"/metrics")
			if want := `rserpool_registrar_pool_elements{pool="nul\\x00inside"} 1`; !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}

			// /handlespace: the JSON handle decodes back to the bytes.
			var s Snapshot
			if err := json.Unmarshal([]byte(httpGet(t, "http://"+r.AdminAddr()+"/handlespace")), &s); err != nil {
				t.Fatal(err)
			}
			got := map[wire.PoolHandle]bool{}
			for _, p := range s.Pools {
				got[p.Handle] = true
			}
			for _, h := range hostileHandles {
				if !got[h] {
					t.Errorf("/handlespace lacks %q", h)
				}
			}

			// Deregistration empties each pool and drops its label.
			for i, h := range hostileHandles {
				pe.send(&wire.Deregistration{PoolHandle: h, ID: uint32(i + 1)})
				expect[*wire.DeregistrationResponse](t, pe)
			}
			if n := testutil.CollectAndCount(r.m.poolGauge); n != 0 {
				t.Errorf("%d pool label values left after deregistration", n)
			}

			// Logs: every line is valid UTF-8 and the handles appear escaped.
			out := logs.String()
			if !strings.Contains(out, `nul\\x00inside`) && !strings.Contains(out, `nul\x00inside`) {
				t.Errorf("log lacks the escaped handle:\n%s", out)
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if strings.ContainsRune(line, '\uFFFD') || strings.ContainsAny(line, "\x00\x01\x1b") {
					t.Errorf("log line is not clean text: %q", line)
				}
				if format == "json" {
					var v map[string]any
					if err := json.Unmarshal([]byte(line), &v); err != nil {
						t.Errorf("log line is not JSON: %q", line)
						continue
					}
					if p, ok := v["pool"].(string); ok {
						if _, err := wire.ParsePoolHandle(p); err != nil {
							t.Errorf("pool attribute %q does not parse: %v", p, err)
						}
					}
				}
			}
		})
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}
