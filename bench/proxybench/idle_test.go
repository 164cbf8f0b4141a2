package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseSteps(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		ok   bool
	}{
		{"1000,4000,9000", []int{1000, 4000, 9000}, true},
		{" 10 ", []int{10}, true},
		{"4000,1000", nil, false},
		{"0", nil, false},
		{"1,x", nil, false},
	} {
		got, err := parseSteps(tc.in)
		if (err == nil) != tc.ok || (tc.ok && !slices.Equal(got, tc.want)) {
			t.Errorf("parseSteps(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestIdleMarkdown(t *testing.T) {
	ic := idleConfig{Steps: []int{1000, 2000}, Active: 0.1, Rate: 10, Size: 64, ActiveFor: time.Second, Runs: 2}
	s := func(n int, rssKiB int64) idleSample {
		return idleSample{Conns: n, RSS: rssKiB << 10, Heap: -1, Stack: -1, Routines: -1, BaseRSS: 8 << 20}
	}
	a := func(x idleSample, ops int64, secs float64) idleSample { x.Ops, x.Seconds = ops, secs; return x }
	r := &idleReport{Cfg: ic, Paths: []string{pathProxy, pathHAProxy}, Samples: map[string]map[string][][]idleSample{
		pathProxy: {
			seqIdle:   {{s(1000, 2000), s(2000, 3000)}, {s(1000, 2000), s(2000, 3400)}},
			seqActive: {{s(1000, 2100), a(s(2000, 3100), 4000, 2)}},
		},
		pathHAProxy: {seqIdle: {{s(1000, 3400), s(2000, 6800)}}},
	}}
	md := r.markdown()
	for _, want := range []string{
		"| 1,000 idle | 2.00 | 3.40 |",
		"| 2,000 idle | 1.60 (1.50–1.70) | 3.40 |",
		"| 1,000, 100 active (1,000 req/s offered) | 2.10 | – |",
		"| baseline VmRSS (MiB) | 8.0 | 8.0 |",
		"| requests answered at 200 active (req/s) | 2,000 | – |",
		"| marginal, 1,000 → 2,000 idle | 1.20 (1.00–1.40) | 3.40 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
