package admin

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRates(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	r := NewRates(t0)
	for i, step := range []struct {
		at   time.Duration
		v    float64
		want float64
	}{
		{10 * time.Second, 100, 10},                                // since the start, when the counter was 0
		{20 * time.Second, 300, 15},                                // the start is still inside the window
		{20*time.Second + 300*time.Millisecond, 303, 303.0 / 20.3}, // a refresh within a second: the older reference
		{90 * time.Second, 900, 600.0 / 70},                        // nothing inside the window: the newest sample before it
		{95 * time.Second, 950, 10},                                // the sample at 90 s
		{100 * time.Second, 10, 10.0 / 10},                         // restarted counter: its value over the time
	} {
		got := r.Observe(at(step.at), "c", step.v)
		if math.Abs(got-step.want) > 1e-9 {
			t.Errorf("step %d at %v: rate %v, want %v", i, step.at, got, step.want)
		}
	}
	if got := r.Observe(t0, "new", 5); !math.IsNaN(got) {
		t.Errorf("a rate at the start itself = %v, want NaN", got)
	}
}

func TestRatesBounded(t *testing.T) {
	t0 := time.Now()
	r := NewRates(t0)
	for i := range maxRateKeys {
		r.Observe(t0.Add(time.Second), string(rune(i)), 1)
	}
	if got := r.Observe(t0.Add(2*time.Second), "one more", 1); !math.IsNaN(got) {
		t.Fatalf("key beyond the bound: %v, want NaN", got)
	}
	// Keys not observed for two windows make room.
	if got := r.Observe(t0.Add(3*RateWindow), "one more", 30); math.IsNaN(got) {
		t.Fatal("no room after the old keys expired")
	}
	for _, s := range r.keys {
		if s.n > rateSamples {
			t.Fatalf("series holds %d samples", s.n)
		}
	}
	// A long run keeps at most rateSamples samples per key.
	for i := range 1000 {
		r.Observe(t0.Add(3*RateWindow+time.Duration(i)*time.Second), "one more", float64(i))
	}
	if s := r.keys["one more"]; s.n > rateSamples || s.n < 2 {
		t.Fatalf("series holds %d samples", s.n)
	}
}

func TestValue(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c"})
	c.Add(3)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
	g.Set(-2)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h"})
	if Value(c) != 3 || Value(g) != -2 || !math.IsNaN(Value(h)) {
		t.Fatalf("Value = %v %v %v", Value(c), Value(g), Value(h))
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{ShortDuration(-time.Second), "0s"},
		{ShortDuration(850 * time.Millisecond), "850ms"},
		{ShortDuration(42 * time.Second), "42s"},
		{ShortDuration(3*time.Minute + 5*time.Second), "3m05s"},
		{ShortDuration(2*time.Hour + 10*time.Minute), "2h10m"},
		{ShortDuration(75*time.Hour + 30*time.Minute), "3d03h"},
		{PerSecond(math.NaN()), "–"},
		{PerSecond(0), "0/s"},
		{PerSecond(0.25), "0.25/s"},
		{PerSecond(1.0 / 3), "0.33/s"},
		{PerSecond(12.4), "12/s"},
		{PerSecond(1340), "1340/s"},
		{PerSecond(13400), "13.4k/s"},
		{PerSecond(2.5e7), "25.0M/s"},
		{Count(0), "0"},
		{Count(999), "999"},
		{Count(12345), "12\u2009345"},
		{Count(-1234567), "-1\u2009234\u2009567"},
		{Count(math.NaN()), "–"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

const testContent = `{{define "title"}}T{{.Name}}{{end}}{{define "content"}}<p id="x">{{.Name}} {{persec .Rate}} {{ago .Now .Then}}</p>{{end}}`

type testData struct {
	Name      string
	Rate      float64
	Now, Then time.Time
}

func TestPage(t *testing.T) {
	now := time.Now()
	fail := false
	p, err := NewPage(PageConfig{
		Daemon:  "testd",
		Content: testContent,
		Links:   []Link{{"/metrics", "Prometheus"}},
		Data: func(ctx context.Context, at time.Time, _ *Rates) (any, error) {
			if fail {
				return nil, errors.New("loop closed")
			}
			return testData{Name: `<script>alert("x")</script>A\x00`, Rate: 2, Now: at, Then: at.Add(-90 * time.Second)}, nil
		},
		Started: now.Add(-time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Handle(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("GET / = %d %v", resp.StatusCode, resp.Header)
	}
	for _, want := range []string{
		"<title>T&lt;script&gt;", "rserpool testd", `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;A\x00 2/s 1m30s`,
		`href="/metrics"`, "up 1h00m", `data-refresh="5"`, `src="/assets/status.js"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>alert") {
		t.Error("page holds the unescaped script")
	}
	if resp, _ := get("/other"); resp.StatusCode != 404 {
		t.Errorf("GET /other = %d, want 404 (the page is only at /)", resp.StatusCode)
	}
	for path, ctype := range map[string]string{"/assets/status.css": "text/css", "/assets/status.js": "javascript"} {
		resp, body := get(path)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), ctype) || len(body) < 100 {
			t.Errorf("GET %s = %d %q (%d bytes)", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
	if resp, _ := get("/assets/../page.go"); resp.StatusCode == 200 {
		t.Error("assets serve files outside the assets directory")
	}
	fail = true
	if resp, body := get("/"); resp.StatusCode != 503 || !strings.Contains(body, "loop closed") {
		t.Errorf("GET / with failing data = %d %q", resp.StatusCode, body)
	}
}

func TestNewPageErrors(t *testing.T) {
	data := func(context.Context, time.Time, *Rates) (any, error) { return nil, nil }
	for name, cfg := range map[string]PageConfig{
		"no data":    {Daemon: "d", Content: testContent},
		"no content": {Daemon: "d", Content: `{{define "title"}}x{{end}}`, Data: data},
		"bad syntax": {Daemon: "d", Content: `{{define "title"}}{{.X}{{end}}`, Data: data},
	} {
		if _, err := NewPage(cfg); err == nil {
			t.Errorf("%s: NewPage accepted it", name)
		}
	}
	p, err := NewPage(PageConfig{Daemon: "d", Content: `{{define "title"}}x{{end}}{{define "content"}}{{.Missing}}{{end}}`, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 {
		// nil data renders empty fields: not an error
		t.Fatalf("nil data: %d %s", rec.Code, rec.Body)
	}
	p, _ = NewPage(PageConfig{Daemon: "d", Content: `{{define "title"}}x{{end}}{{define "content"}}{{.Missing}}{{end}}`,
		Data: func(context.Context, time.Time, *Rates) (any, error) { return 3, nil }})
	rec = httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 500 {
		t.Fatalf("template error: %d, want 500", rec.Code)
	}
}
