package peagent

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// historyLen is how many health check results an element keeps for the
// status page.
const historyLen = 40

// CheckResult is one health check of a backend.
type CheckResult struct {
	At  time.Time
	OK  bool
	Err string // why it failed ("" when OK)
}

// healthHistory is an element's recent health checks and the time of its
// last up/down change. The zero value is ready; safe for concurrent use.
type healthHistory struct {
	mu      sync.Mutex // guards the fields below
	ring    [historyLen]CheckResult
	n, next int
	since   time.Time // when the backend last went up or down
}

// maxCheckErr bounds the error text kept per check.
const maxCheckErr = 160

func (h *healthHistory) add(at time.Time, err error) {
	r := CheckResult{At: at, OK: err == nil}
	if err != nil {
		r.Err = err.Error()
		if len(r.Err) > maxCheckErr {
			r.Err = strings.ToValidUTF8(r.Err[:maxCheckErr], "") + "…"
		}
	}
	h.mu.Lock()
	h.ring[h.next] = r
	h.next = (h.next + 1) % historyLen
	h.n = min(h.n+1, historyLen)
	h.mu.Unlock()
}

func (h *healthHistory) changed(at time.Time) {
	h.mu.Lock()
	h.since = at
	h.mu.Unlock()
}

// get returns the results, oldest first (a new slice), and the time of the
// last change.
func (h *healthHistory) get() ([]CheckResult, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]CheckResult, 0, h.n)
	for i := range h.n {
		out = append(out, h.ring[(h.next-h.n+i+historyLen)%historyLen])
	}
	return out, h.since
}

// elementsGauge is rserpool_pe_elements{pool}: the configured elements per
// pool, counted at scrape time, so that an alert can compare it with
// rserpool_pe_backend_up (a pool's backends that pass their checks).
type elementsGauge struct {
	a    *Agent
	desc *prometheus.Desc
}

func newElementsGauge(a *Agent) *elementsGauge {
	return &elementsGauge{a: a, desc: prometheus.NewDesc("rserpool_pe_elements",
		"Number of this agent's configured pool elements (backends), per pool.", []string{"pool"}, nil)}
}

func (g *elementsGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *elementsGauge) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{}
	g.a.mu.Lock()
	for ec := range g.a.members {
		counts[ec.Pool.String()]++
	}
	g.a.mu.Unlock()
	for pool, n := range counts {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(n), pool)
	}
}
