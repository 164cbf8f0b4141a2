package peagent

import (
	"context"
	_ "embed"
	"slices"
	"strings"
	"time"

	"github.com/rserpool/rserpool/internal/admin"
	"github.com/rserpool/rserpool/wire"
)

//go:embed status.html
var statusTemplate string

// StatusView is what the pe-agent's status page shows.
type StatusView struct {
	Now        time.Time
	Registrars []string
	Elements   []StatusElement
	Registered int
	Up         int
	// Registrations accepted (re-registrations included) and their rate
	// per second over the last minute.
	Registrations, RegistrationRate float64
	Rejected                        float64 // rejected, timed out or failed
}

// StatusElement is one element on the status page.
type StatusElement struct {
	ElementStatus
	Transport string
	Policy    string
	Weight    uint32
	Priority  uint32
	LoadFrom  LoadSource
	Checked   bool // health checks run (not disabled)
	Interval  time.Duration
	History   []CheckResult // oldest first
	Since     time.Time     // last up/down change
	LastCheck *CheckResult
}

// HealthClass is the badge colour of the backend's health.
func (e StatusElement) HealthClass() string {
	switch {
	case e.Checked && len(e.History) == 0:
		return "muted"
	case e.Healthy:
		return "ok"
	}
	return "bad"
}

// statusPage builds the pe-agent's page for the admin server.
func (a *Agent) statusPage() (*admin.Page, error) {
	return admin.NewPage(admin.PageConfig{
		Daemon:  "pe-agent",
		Content: statusTemplate,
		Links: []admin.Link{{Path: "/metrics", What: "Prometheus"}, {Path: "/status", What: "JSON"},
			{Path: "/healthz", What: "health"}},
		Data: func(_ context.Context, now time.Time, rates *admin.Rates) (any, error) {
			v := a.statusView(now)
			v.RegistrationRate = rates.Observe(now, "registrations", v.Registrations)
			return v, nil
		},
	})
}

func (a *Agent) statusView(now time.Time) StatusView {
	v := StatusView{Now: now}
	a.mu.Lock()
	for _, r := range a.cfg.Registrars {
		v.Registrars = append(v.Registrars, r.String())
	}
	type entry struct {
		mb *member
		ec ElementConfig
	}
	members := make([]entry, 0, len(a.members))
	for ec, mb := range a.members {
		members = append(members, entry{mb, ec})
	}
	a.mu.Unlock()
	pools := map[wire.PoolHandle]bool{}
	for _, m := range members {
		mb, ec := m.mb, m.ec
		mb.mu.Lock()
		es := ElementStatus{Pool: ec.Pool, Backend: ec.Backend, ID: mb.el.ID(), Healthy: mb.healthy, Load: mb.load}
		mb.mu.Unlock()
		es.State = mb.el.State()
		se := StatusElement{ElementStatus: es, Transport: ec.Transport, Policy: ec.Policy, Weight: ec.Weight,
			Priority: ec.Priority, LoadFrom: ec.Load.Source, Checked: !ec.Health.Disable, Interval: ec.Health.Interval}
		se.History, se.Since = mb.history.get()
		if n := len(se.History); n > 0 {
			se.LastCheck = &se.History[n-1]
		}
		if es.Registered {
			v.Registered++
		}
		if es.Healthy {
			v.Up++
		}
		v.Elements = append(v.Elements, se)
		pools[ec.Pool] = true
	}
	slices.SortFunc(v.Elements, func(x, y StatusElement) int {
		if c := strings.Compare(string(x.Pool), string(y.Pool)); c != 0 {
			return c
		}
		return strings.Compare(x.Backend, y.Backend)
	})
	for pool := range pools {
		p := pool.String()
		v.Registrations += admin.Value(a.metrics.registrations.WithLabelValues(p, "accepted"))
		for _, res := range []string{"rejected", "timeout", "error"} {
			v.Rejected += admin.Value(a.metrics.registrations.WithLabelValues(p, res))
		}
	}
	return v
}
