package admin

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Rate windows of status pages.
const (
	// RateWindow is the span a status page's rates are averaged over.
	RateWindow = time.Minute
	// rateStep is the least time between two kept samples of a counter.
	rateStep = time.Second
	// rateSamples bounds the samples kept per counter (RateWindow/rateStep
	// and one older sample).
	rateSamples = int(RateWindow/rateStep) + 1
	// maxRateKeys bounds the counters a Rates tracks.
	maxRateKeys = 4096
)

// Rates turns counters into per-second rates for status pages, from
// samples taken when a page is rendered: each rate is the counter's
// increase over the last RateWindow (or, until a page has been rendered
// that long, since the Rates was made, when every counter is taken to be
// zero) divided by the time. It needs no goroutine. It is safe for
// concurrent use.
type Rates struct {
	mu    sync.Mutex // guards the fields below
	start time.Time
	keys  map[string]*series
}

type sample struct {
	t time.Time
	v float64
}

// series is a ring of samples of one counter, oldest first.
type series struct {
	s    [rateSamples]sample
	head int // index of the oldest sample
	n    int
	seen time.Time // last Observe
}

// NewRates returns a Rates whose counters were zero at start (counters
// made when the daemon was).
func NewRates(start time.Time) *Rates {
	return &Rates{start: start, keys: map[string]*series{}}
}

// Observe records counter key's value v at now and returns its rate per
// second. A key not observed for two windows is forgotten; at most
// maxRateKeys are tracked (a further key's rate is NaN).
func (r *Rates) Observe(now time.Time, key string, v float64) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.keys[key]
	if s == nil {
		if len(r.keys) >= maxRateKeys {
			r.expire(now)
			if len(r.keys) >= maxRateKeys {
				return math.NaN()
			}
		}
		s = &series{}
		s.push(sample{r.start, 0})
		r.keys[key] = s
	}
	s.seen = now
	// The reference: the oldest sample at least rateStep old inside the
	// window, else the newest one before the window, else the oldest.
	ref := s.at(0)
	for i := 0; i < s.n; i++ {
		x := s.at(i)
		age := now.Sub(x.t)
		if age < rateStep {
			break
		}
		ref = x
		if age <= RateWindow {
			break
		}
	}
	if last := s.at(s.n - 1); now.Sub(last.t) >= rateStep {
		s.push(sample{now, v})
		// Drop samples that are older than the window and not needed as
		// the reference.
		for s.n > 2 && now.Sub(s.at(1).t) > RateWindow {
			s.pop()
		}
	}
	dt := now.Sub(ref.t).Seconds()
	if dt <= 0 {
		return math.NaN()
	}
	dv := v - ref.v
	if dv < 0 { // the counter restarted
		dv = v
	}
	return dv / dt
}

// expire forgets keys not observed for two windows.
func (r *Rates) expire(now time.Time) {
	for k, s := range r.keys {
		if now.Sub(s.seen) > 2*RateWindow {
			delete(r.keys, k)
		}
	}
}

func (s *series) at(i int) sample { return s.s[(s.head+i)%len(s.s)] }

func (s *series) push(x sample) {
	if s.n == len(s.s) {
		s.pop()
	}
	s.s[(s.head+s.n)%len(s.s)] = x
	s.n++
}

func (s *series) pop() {
	s.head = (s.head + 1) % len(s.s)
	s.n--
}

// Value returns the value of a counter or gauge (NaN for another kind of
// metric or when it cannot be read).
func Value(m prometheus.Metric) float64 {
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		return math.NaN()
	}
	switch {
	case pb.Counter != nil:
		return pb.Counter.GetValue()
	case pb.Gauge != nil:
		return pb.Gauge.GetValue()
	}
	return math.NaN()
}
