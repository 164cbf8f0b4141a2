package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReplaceSection(t *testing.T) {
	block := func(s string) string { return beginMarker + "\n" + s + endMarker + "\n" }
	tests := []struct {
		name, doc, want string
	}{
		{"empty file", "", block("new\n")},
		{"no markers", "# Bench\n\ntext", "# Bench\n\ntext\n\n" + block("new\n")},
		{"replace keeps both sides", "# Bench\n" + block("old\nold\n") + "after\n", "# Bench\n" + block("new\n") + "after\n"},
		{"older marker text", "a\n<!-- proxybench:begin -->\nold\n" + endMarker + "\nz\n", "a\n" + block("new\n") + "z\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := replaceSection(tt.doc, "new\n")
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
			again, err := replaceSection(got, "new\n")
			if err != nil || again != got {
				t.Errorf("second replacement changed the document: %q, %v", again, err)
			}
		})
	}
	for _, doc := range []string{endMarker + "\n<!-- proxybench:begin -->\n", "<!-- proxybench:begin -->\n", endMarker + "\n"} {
		if _, err := replaceSection(doc, "x\n"); err == nil {
			t.Errorf("replaceSection(%q): want error for unbalanced markers", doc)
		}
	}
}

func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\nhow to run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"first\n", "second\n"} {
		if err := writeSection(path, s); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	if !strings.HasPrefix(got, "# Benchmarks\n\nhow to run\n") || !strings.Contains(got, "second\n") || strings.Contains(got, "first") {
		t.Errorf("file after two writes:\n%s", got)
	}
}

func TestFmtCount(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 76012.4: "76,012", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := fmtCount(in); got != want {
			t.Errorf("fmtCount(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestReportMarkdown(t *testing.T) {
	r := newReport()
	r.When = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	r.Runs, r.Duration, r.Conns, r.Size, r.Rate = 3, time.Second, 16, 64, 5000
	r.Paths = []string{pathDirect, pathHAProxy}
	for _, ops := range []int64{70000, 80000, 76000} {
		r.add(pathDirect, result{Mode: measRR, Ops: ops, Seconds: 1})
		r.add(pathHAProxy, result{Mode: measRR, Ops: ops / 2, Seconds: 1, CPU: float64(ops/2) * 20e-6})
	}
	r.add(pathDirect, result{Mode: measLat, Ops: 10, Seconds: 1, P50: 100e3, P99: 300e3, P999: 500e3})
	r.add(pathHAProxy, result{Mode: measLat, Ops: 10, Seconds: 1, P50: 150e3, P99: 450e3, P999: 900e3, Errors: 2})
	md := r.markdown()
	for _, want := range []string{
		"| (b) request/response, 16 conns × 64 B (req/s) | 76,000 (70,000–80,000) | – | 38,000 (35,000–40,000) | – | – | – | 0.50 |",
		"| (d) p99 (µs) | 300 (300–300) | – | 450 (450–450) | – | – | – | 1.50 |",
		"| (d) p99 added over direct (µs) | – | – | 150 | – | – | – | – |",
		"| (b) CPU per request (µs, the path's process) | – | – | 20.0 (20.0–20.0) | – |",
		"| (d) p99.9 (µs) | 500 (500–500) | – | 900 (900–900) |",
		"HAProxy lat: 2",
		"median of 3 runs",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestRenderHAProxy(t *testing.T) {
	b, err := renderHAProxy(haproxyParams{Threads: 2, Listen: "127.0.0.1:9000", Backend: "127.0.0.1:7000"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nbthread 2\n", "mode tcp\n", "bind 127.0.0.1:9000\n", "server s1 127.0.0.1:7000\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config lacks %q:\n%s", want, b)
		}
	}
}

func TestReportRelayColumn(t *testing.T) {
	r := newReport()
	r.Runs, r.Duration, r.Conns, r.Size, r.Rate = 1, time.Second, 16, 64, 5000
	r.Paths = []string{pathDirect, pathRelay}
	r.add(pathDirect, result{Mode: measRR, Ops: 1000, Seconds: 1})
	r.add(pathRelay, result{Mode: measRR, Ops: 400, Seconds: 1})
	md := r.markdown()
	for _, want := range []string{
		"| measurement | direct | rserpool proxy | HAProxy | rserpool, goroutine relay | Go io.Copy relay | proxy/HAProxy |",
		"| 1,000 (1,000–1,000) | – | – | – | 400 (400–400) | – | – | – |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "added over direct") || strings.Contains(md, "NaN") {
		t.Errorf("latency rows without latency data:\n%s", md)
	}
}

func TestParseList(t *testing.T) {
	got, err := parseList("-only", " direct,haproxy,direct", allPaths)
	if err != nil || !slices.Equal(got, []string{pathDirect, pathHAProxy}) {
		t.Errorf("parseList = %v, %v", got, err)
	}
	if _, err := parseList("-only", "direct,nginx", allPaths); err == nil || !strings.Contains(err.Error(), "nginx") {
		t.Errorf("parseList with an unknown path: err = %v", err)
	}
}

func TestReportFaults(t *testing.T) {
	r := newReport()
	r.Runs, r.Duration, r.Conns, r.Size, r.Rate = 1, time.Second, 16, 64, 5000
	r.Paths = []string{pathProxy, pathHAProxy}
	r.Faults = &faultsResult{
		Base:      map[string]result{pathProxy: {P50: 1e6, P99: 2e6}, pathHAProxy: {P50: 1e6, P99: 3e6}},
		BlackHole: map[string]result{pathProxy: {Ops: 1000, P50: 1e6, P99: 4e6, Max: 9e6}, pathHAProxy: {Ops: 990, Errors: 10, P50: 2e6, P99: 1003e6, Max: 1100e6}},
		Hung:      map[string]result{pathProxy: {Ops: 1000, P99: 200e6}, pathHAProxy: {Ops: 700, Errors: 300, P99: 1000e6}},
	}
	md := r.markdown()
	for _, want := range []string{
		"| black hole: p99 added to new connections (ms) | 2.0 | 1000.0 |",
		"| black hole: failed connections | 0 of 1000 | 10 of 1000 |",
		"| hung PE (1 of 3 SIGSTOPped): failed requests | 0 of 1000 | 300 of 1000 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
