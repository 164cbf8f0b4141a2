package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Paths, in table order.
const (
	pathDirect    = "direct"
	pathProxy     = "proxy"
	pathHAProxy   = "haproxy"
	pathGoroutine = "goroutine" // the rserpool proxy on its goroutine relay
	pathRelay     = "relay"     // optional: a plain io.Copy relay in Go
)

var (
	allPaths     = []string{pathDirect, pathProxy, pathHAProxy, pathGoroutine, pathRelay}
	defaultPaths = []string{pathDirect, pathProxy, pathHAProxy, pathGoroutine}
	allMeas      = []string{measBulk, measRR, measCRR, measLat}
)

var pathTitle = map[string]string{
	pathDirect:    "direct",
	pathProxy:     "rserpool proxy",
	pathHAProxy:   "HAProxy",
	pathGoroutine: "rserpool, goroutine relay",
	pathRelay:     "Go io.Copy relay",
}

// A row of the table: one number per path and run, derived from a result.
type row struct {
	key   string
	meas  string // which load run produces it
	label string
	value func(result) float64
	fmt   func(float64) string
}

func rows(conns, size int, rate float64) []row {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	return []row{
		{"bulk", measBulk, "(a) bulk, one stream (Gbit/s)",
			func(r result) float64 { return float64(r.Bytes) * 8 / r.Seconds / 1e9 }, fmtFixed(2)},
		{"rr", measRR, fmt.Sprintf("(b) request/response, %d conns × %d B (req/s)", conns, size),
			func(r result) float64 { return float64(r.Ops) / r.Seconds }, fmtCount},
		{"crr", measCRR, fmt.Sprintf("(c) connect/request/response/close, %d clients (conn/s)", conns),
			func(r result) float64 { return float64(r.Ops) / r.Seconds }, fmtCount},
		{"p50", measLat, fmt.Sprintf("(d) p50 at %s req/s (µs)", fmtCount(rate)),
			func(r result) float64 { return us(r.P50) }, fmtCount},
		{"p99", measLat, "(d) p99 (µs)",
			func(r result) float64 { return us(r.P99) }, fmtCount},
		{"p999", measLat, "(d) p99.9 (µs)",
			func(r result) float64 { return us(r.P999) }, fmtCount},
		{"cpu_rr", measRR, "(b) CPU per request (µs, the path's process)",
			func(r result) float64 { return cpuPerOp(r) }, fmtFixed(1)},
		{"cpu_crr", measCRR, "(c) CPU per connection (µs)",
			func(r result) float64 { return cpuPerOp(r) }, fmtFixed(1)},
		{"sys_rr", measRR, "(b) system calls per request (strace -c)", nil, fmtFixed(2)},
		{"sys_crr", measCRR, "(c) system calls per connection", nil, fmtFixed(2)},
	}
}

// cpuPerOp is the CPU time of the serving process per operation in µs, or
// NaN when it was not measured (direct).
func cpuPerOp(r result) float64 {
	if r.CPU <= 0 || r.Ops == 0 {
		return math.NaN()
	}
	return r.CPU / float64(r.Ops) * 1e6
}

func fmtFixed(prec int) func(float64) string {
	return func(v float64) string { return fmt.Sprintf("%.*f", prec, v) }
}

// fmtCount formats v rounded to an integer with thousands separators.
func fmtCount(v float64) string {
	s := fmt.Sprintf("%.0f", math.Abs(v))
	var b strings.Builder
	if v < 0 && s != "0" {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// report holds every run's numbers and what they were measured with.
type report struct {
	When     time.Time
	Machine  string
	Load     string // load averages before and after, to judge how much else ran
	Versions string
	Command  string
	Runs     int
	Duration time.Duration
	Conns    int
	Size     int
	Rate     float64
	Paths    []string                        // measured paths, in table order
	Values   map[string]map[string][]float64 // path → row key → one value per run
	Errors   map[string]map[string]int64     // path → measurement → failed operations
	Faults   *faultsResult                   // the fault scenarios, if run
}

func newReport() *report {
	return &report{Values: map[string]map[string][]float64{}, Errors: map[string]map[string]int64{}}
}

// add records one load result of path.
func (r *report) add(path string, res result) {
	if r.Values[path] == nil {
		r.Values[path] = map[string][]float64{}
		r.Errors[path] = map[string]int64{}
	}
	for _, rw := range rows(r.Conns, r.Size, r.Rate) {
		if rw.meas == res.Mode && rw.value != nil {
			if v := rw.value(res); !math.IsNaN(v) {
				r.Values[path][rw.key] = append(r.Values[path][rw.key], v)
			}
		}
	}
	r.Errors[path][res.Mode] += res.Errors
}

// addSyscalls records the system calls per operation of path under meas.
func (r *report) addSyscalls(path, meas string, perOp float64) {
	if r.Values[path] == nil {
		r.Values[path] = map[string][]float64{}
		r.Errors[path] = map[string]int64{}
	}
	key := "sys_" + meas
	r.Values[path][key] = append(r.Values[path][key], perOp)
}

func (r *report) med(path, key string) float64 { return median(r.Values[path][key]) }

func (r *report) has(path string) bool { return slices.Contains(r.Paths, path) }

// columns returns the paths shown in the table: the three compared paths
// always, the relay only when it was measured.
func (r *report) columns() []string {
	if r.has(pathRelay) {
		return allPaths
	}
	return defaultPaths
}

// ratio formats a/b of the medians of two paths, or "–" when either is missing.
func (r *report) ratio(key, a, b string) string {
	if !r.has(a) || !r.has(b) {
		return "–"
	}
	x, y := r.med(a, key), r.med(b, key)
	if math.IsNaN(x) || math.IsNaN(y) || y == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", x/y)
}

// markdown renders the section that goes between the markers.
func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Results of %s\n\n", r.When.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s\n", r.Machine)
	fmt.Fprintf(&b, "- Versions: %s\n", r.Versions)
	if r.Load != "" {
		fmt.Fprintf(&b, "- Load average (1, 5, 15 min): %s\n", r.Load)
	}
	fmt.Fprintf(&b, "- Command: `%s`\n", r.Command)
	fmt.Fprintf(&b, "- Each cell: median of %d runs of %v (min–max in parentheses); paths measured one after another, interleaved per run\n\n", r.Runs, r.Duration)

	cols := r.columns()
	b.WriteString("| measurement |")
	for _, p := range cols {
		fmt.Fprintf(&b, " %s |", pathTitle[p])
	}
	b.WriteString(" proxy/HAProxy | proxy/direct | HAProxy/direct |\n|---|")
	b.WriteString(strings.Repeat("---:|", len(cols)+3))
	b.WriteString("\n")
	for _, rw := range rows(r.Conns, r.Size, r.Rate) {
		fmt.Fprintf(&b, "| %s |", rw.label)
		for _, p := range cols {
			vs := r.Values[p][rw.key]
			if !r.has(p) || len(vs) == 0 {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(&b, " %s (%s–%s) |", rw.fmt(median(vs)), rw.fmt(slices.Min(vs)), rw.fmt(slices.Max(vs)))
		}
		fmt.Fprintf(&b, " %s | %s | %s |\n",
			r.ratio(rw.key, pathProxy, pathHAProxy), r.ratio(rw.key, pathProxy, pathDirect), r.ratio(rw.key, pathHAProxy, pathDirect))
	}
	// Added latency: each path's median p99 minus the direct path's.
	if base := r.med(pathDirect, "p99"); r.has(pathDirect) && !math.IsNaN(base) {
		b.WriteString("| (d) p99 added over direct (µs) |")
		added := map[string]float64{}
		for _, p := range cols {
			if !r.has(p) || p == pathDirect || len(r.Values[p]["p99"]) == 0 {
				b.WriteString(" – |")
				continue
			}
			added[p] = r.med(p, "p99") - base
			fmt.Fprintf(&b, " %s |", fmtCount(added[p]))
		}
		ph := "–"
		if a, ok := added[pathProxy]; ok {
			if h, ok := added[pathHAProxy]; ok && h > 0 {
				ph = fmt.Sprintf("%.2f", a/h)
			}
		}
		fmt.Fprintf(&b, " %s | – | – |\n", ph)
	}
	if r.Faults != nil {
		b.WriteString(r.faultsMarkdown())
	}
	var errs []string
	for _, p := range r.Paths {
		for _, m := range allMeas {
			if n := r.Errors[p][m]; n > 0 {
				errs = append(errs, fmt.Sprintf("%s %s: %d", pathTitle[p], m, n))
			}
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(&b, "\nFailed operations (all runs): %s.\n", strings.Join(errs, ", "))
	} else {
		b.WriteString("\nNo failed operations.\n")
	}
	return b.String()
}

// faultsMarkdown renders the fault scenarios' table.
func (r *report) faultsMarkdown() string {
	f := r.Faults
	ms := func(ns int64) string { return fmt.Sprintf("%.1f", float64(ns)/1e6) }
	var b strings.Builder
	b.WriteString("\nFaults (new connections at 200/s per path from 8 clients, both paths at once; `proxybench faults`):\n\n")
	b.WriteString("| scenario | rserpool proxy | HAProxy |\n|---|---:|---:|\n")
	row := func(label string, v func(result) string, m map[string]result) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", label, v(m[pathProxy]), v(m[pathHAProxy]))
	}
	row("no fault: p50 / p99 (ms)", func(x result) string { return ms(x.P50) + " / " + ms(x.P99) }, f.Base)
	row("black hole (SYNs to 1 of 2 PEs dropped): p50 / p99 / max (ms)", func(x result) string { return ms(x.P50) + " / " + ms(x.P99) + " / " + ms(x.Max) }, f.BlackHole)
	added := map[string]result{}
	for p, x := range f.BlackHole {
		added[p] = result{P99: x.P99 - f.Base[p].P99}
	}
	row("black hole: p99 added to new connections (ms)", func(x result) string { return ms(x.P99) }, added)
	row("black hole: failed connections", func(x result) string { return fmt.Sprintf("%d of %d", x.Errors, x.Errors+x.Ops) }, f.BlackHole)
	row("hung PE (1 of 3 SIGSTOPped): failed requests", func(x result) string { return fmt.Sprintf("%d of %d", x.Errors, x.Errors+x.Ops) }, f.Hung)
	row("hung PE: p50 / p99 / max (ms)", func(x result) string { return ms(x.P50) + " / " + ms(x.P99) + " / " + ms(x.Max) }, f.Hung)
	return b.String()
}

// Markers around the generated section of BENCHMARKS.md.
const (
	beginMarker = "<!-- proxybench:begin (generated by go run ./bench/proxybench -write BENCHMARKS.md; edits inside are lost) -->"
	endMarker   = "<!-- proxybench:end -->"
)

// replaceSection returns doc with the text between the markers replaced by
// section, or doc with a marked section appended when it has no markers.
func replaceSection(doc, section string) (string, error) {
	return replaceMarked(doc, section, beginMarker, endMarker)
}

// replaceMarked is replaceSection for the markers begin (matched up to its
// first space) and end.
func replaceMarked(doc, section, begin, end string) (string, error) {
	block := begin + "\n" + section + end + "\n"
	prefix, _, _ := strings.Cut(begin, " (")
	i := strings.Index(doc, prefix)
	j := strings.Index(doc, end)
	switch {
	case i < 0 && j < 0:
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		if doc != "" {
			doc += "\n"
		}
		return doc + block, nil
	case i < 0 || j < i:
		return "", fmt.Errorf("markers %s … %s are unbalanced", prefix, end)
	}
	return doc[:i] + block + strings.TrimPrefix(doc[j+len(end):], "\n"), nil
}

// writeSection regenerates the marked section of the markdown file at path.
func writeSection(path, section string) error {
	return writeMarked(path, section, beginMarker, endMarker)
}

// writeMarked regenerates the section between begin and end of the
// markdown file at path.
func writeMarked(path, section, begin, end string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc, err := replaceMarked(string(old), section, begin, end)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}
