package admin

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"strconv"
	"time"
)

//go:embed assets
var assets embed.FS

// RefreshSeconds is how often a status page refreshes itself in the
// browser (the page's script; it stops while the tab is hidden).
const RefreshSeconds = 5

// Link is an endpoint listed at the foot of a status page.
type Link struct {
	Path string // "/metrics"
	What string // "Prometheus"
}

// PageConfig describes a daemon's status page.
type PageConfig struct {
	// Daemon is the daemon's name in the page header ("registrar").
	Daemon string
	// Content is html/template text that defines the templates "title"
	// (the header after the daemon's name) and "content" (the page's
	// body), both executed with the value Data returns. The functions of
	// Funcs are available.
	Content string
	// Links are listed at the foot of the page.
	Links []Link
	// Data returns the page's data at now, bounded in size (the page is
	// rendered in memory before it is sent). An error answers 503. rates
	// belongs to the page (its counters were zero at Started) and turns
	// the daemon's counters into rates.
	Data func(ctx context.Context, now time.Time, rates *Rates) (any, error)
	// Started is the daemon's start, for the uptime in the header; zero
	// means when NewPage ran.
	Started time.Time
}

// Page is a daemon's HTML status page: server-rendered with html/template,
// styled and refreshed by embedded assets, nothing loaded from elsewhere.
// It is safe for concurrent use.
type Page struct {
	cfg   PageConfig
	tmpl  *template.Template
	rates *Rates
}

// view is what the layout is executed with.
type view struct {
	Daemon  string
	Now     time.Time
	Uptime  time.Duration
	Refresh int
	Links   []Link
	Data    any
}

// NewPage parses cfg.Content with the shared layout.
func NewPage(cfg PageConfig) (*Page, error) {
	if cfg.Data == nil {
		return nil, fmt.Errorf("admin: status page %q: no Data function", cfg.Daemon)
	}
	if cfg.Started.IsZero() {
		cfg.Started = time.Now()
	}
	layout, err := fs.ReadFile(assets, "assets/layout.html")
	if err != nil {
		return nil, err
	}
	t, err := template.New("layout").Funcs(Funcs()).Parse(string(layout))
	if err != nil {
		return nil, fmt.Errorf("admin: status page layout: %w", err)
	}
	if _, err := t.New("daemon").Parse(cfg.Content); err != nil {
		return nil, fmt.Errorf("admin: status page %q: %w", cfg.Daemon, err)
	}
	for _, name := range []string{"title", "content"} {
		if t.Lookup(name) == nil {
			return nil, fmt.Errorf("admin: status page %q: no template %q", cfg.Daemon, name)
		}
	}
	return &Page{cfg: cfg, tmpl: t, rates: NewRates(cfg.Started)}, nil
}

// Handle registers the page at "GET /" (exactly) and its assets under
// "GET /assets/" on mux.
func (p *Page) Handle(mux *http.ServeMux) {
	mux.Handle("GET /{$}", p)
	sub, _ := fs.Sub(assets, "assets")
	files := http.StripPrefix("/assets/", http.FileServerFS(sub))
	mux.Handle("GET /assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	}))
}

// contentSecurityPolicy allows the page's own stylesheet, script and
// refresh requests, and nothing else (no inline script, no framing).
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ServeHTTP renders the page.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	data, err := p.cfg.Data(ctx, now, p.rates)
	if err != nil {
		http.Error(w, "status: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	var buf bytes.Buffer
	err = p.tmpl.ExecuteTemplate(&buf, "layout", view{
		Daemon: p.cfg.Daemon, Now: now, Uptime: now.Sub(p.cfg.Started), Refresh: RefreshSeconds,
		Links: p.cfg.Links, Data: data,
	})
	if err != nil {
		http.Error(w, "status: rendering: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(buf.Bytes())
}

// Funcs are the template functions of status pages:
//
//	ago NOW T     time since T, short ("42s", "3m05s", "2h10m", "3d4h"); "never" for a zero T
//	dur D         a duration, short, as ago
//	persec F      a rate ("0.25/s", "12/s", "1.3k/s"); "–" for NaN (not known yet)
//	num F         a count with thousands separated ("12 345")
//	pct A B       A/B as a percentage ("12%"); "–" when B is 0
//	hex32 N       "0x%08x"
//	load32 N      a policy load or load degradation (RFC 5356: 0..0xffffffff is 0..100 %) as "12.5%"
func Funcs() template.FuncMap {
	return template.FuncMap{
		"ago": func(now, t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return ShortDuration(now.Sub(t))
		},
		"dur":    ShortDuration,
		"persec": PerSecond,
		"num":    Count,
		"pct": func(a, b float64) string {
			if b == 0 {
				return "–"
			}
			return strconv.FormatFloat(100*a/b, 'f', 0, 64) + "%"
		},
		"hex32": func(n uint32) string { return fmt.Sprintf("0x%08x", n) },
		"load32": func(n uint32) string {
			return strconv.FormatFloat(100*float64(n)/math.MaxUint32, 'f', 1, 64) + "%"
		},
	}
}

// ShortDuration writes d with at most two units: "850ms", "42s", "3m05s",
// "2h10m", "3d04h". A negative d (clock steps) is written as 0s.
func ShortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// PerSecond writes a rate: two significant digits below 10, whole numbers
// up to 9,999, then thousands ("1.3k/s") and millions. NaN (a rate not
// known yet) is "–".
func PerSecond(f float64) string {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return "–"
	case f == 0:
		return "0/s"
	case f < 10:
		return strconv.FormatFloat(f, 'g', 2, 64) + "/s"
	case f < 10_000:
		return strconv.FormatFloat(f, 'f', 0, 64) + "/s"
	case f < 10_000_000:
		return strconv.FormatFloat(f/1e3, 'f', 1, 64) + "k/s"
	}
	return strconv.FormatFloat(f/1e6, 'f', 1, 64) + "M/s"
}

// Count writes a whole number with a thin space between thousands.
func Count(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "–"
	}
	s := strconv.FormatFloat(math.Round(f), 'f', 0, 64)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, "\u2009"...)
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
