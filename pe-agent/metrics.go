package peagent

import "github.com/prometheus/client_golang/prometheus"

// metrics are the agent's Prometheus metrics. Labels are bounded by the
// configuration (pool handles); PE identifiers are never labels.
type metrics struct {
	registered    *prometheus.GaugeVec   // elements of the pool currently registered
	backendUp     *prometheus.GaugeVec   // backends of the pool currently healthy
	registrations *prometheus.CounterVec // registration answers by result
	keepAlives    *prometheus.CounterVec // keep-alive acks sent
	healthChecks  *prometheus.CounterVec // health checks by result
	loadReports   *prometheus.CounterVec // load-triggered policy updates
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		registered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rserpool_pe_registered",
			Help: "Number of this agent's pool elements currently registered, per pool.",
		}, []string{"pool"}),
		backendUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rserpool_pe_backend_up",
			Help: "Number of this agent's backends currently passing health checks, per pool.",
		}, []string{"pool"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rserpool_pe_registrations_total",
			Help: "Registrations and re-registrations by result (accepted, rejected, timeout, error).",
		}, []string{"pool", "result"}),
		keepAlives: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rserpool_pe_keepalive_acks_total",
			Help: "Endpoint Keep-Alive Acks sent to registrars.",
		}, []string{"pool"}),
		healthChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rserpool_pe_health_checks_total",
			Help: "Backend health checks by result (ok, fail).",
		}, []string{"pool", "result"}),
		loadReports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rserpool_pe_load_updates_total",
			Help: "Load changes large enough to be sent to the registrar.",
		}, []string{"pool"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.registered, m.backendUp, m.registrations, m.keepAlives, m.healthChecks, m.loadReports} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
