package proxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's collectors (names per DESIGN.md). Label values are
// bounded: listener labels come from the configuration.
type metrics struct {
	connections *prometheus.CounterVec // listener, result
	active      *prometheus.GaugeVec   // listener
	failovers   *prometheus.CounterVec // listener
	bytes       *prometheus.CounterVec // listener, direction
}

// Connection results (label "result" of rserpool_proxy_connections_total).
const (
	resultOK        = "ok"         // relayed to a PE
	resultRefused   = "refused"    // over max_connections
	resultNoBackend = "no_backend" // every attempt to reach a PE failed
	resultAborted   = "aborted"    // client went away or proxy shut down before a PE answered
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rserpool_proxy_connections_total",
			Help: "Client connections accepted by the proxy, by listener and result (ok, refused, no_backend, aborted).",
		}, []string{"listener", "result"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rserpool_proxy_active_connections",
			Help: "Client connections currently open, by listener.",
		}, []string{"listener"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rserpool_proxy_failovers_total",
			Help: "Pool elements that failed for a client connection and were replaced by another one, by listener.",
		}, []string{"listener"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rserpool_proxy_bytes_total",
			Help: "Bytes relayed, by listener and direction (to_backend, to_client), counted when a connection ends.",
		}, []string{"listener", "direction"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connections, m.active, m.failovers, m.bytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("proxy: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// listenerMetrics are one listener's children, looked up once.
type listenerMetrics struct {
	ok, refused, noBackend, aborted prometheus.Counter
	active                          prometheus.Gauge
	failovers                       prometheus.Counter
	toBackend, toClient             prometheus.Counter
}

func (m *metrics) forListener(label string) *listenerMetrics {
	return &listenerMetrics{
		ok:        m.connections.WithLabelValues(label, resultOK),
		refused:   m.connections.WithLabelValues(label, resultRefused),
		noBackend: m.connections.WithLabelValues(label, resultNoBackend),
		aborted:   m.connections.WithLabelValues(label, resultAborted),
		active:    m.active.WithLabelValues(label),
		failovers: m.failovers.WithLabelValues(label),
		toBackend: m.bytes.WithLabelValues(label, "to_backend"),
		toClient:  m.bytes.WithLabelValues(label, "to_client"),
	}
}
