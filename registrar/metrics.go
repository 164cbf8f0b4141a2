package registrar

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rserpool/rserpool/wire"
)

// otherPool is the pool label shared by pools beyond Limits.MetricPools.
const otherPool = "_other"

// metrics holds every registrar metric. Label sets are bounded: results,
// reasons and limits are fixed lists, pools are capped by poolLabels.
type metrics struct {
	poolElements     *prometheus.GaugeVec   // pool
	elements         prometheus.Gauge       //
	pools            prometheus.Gauge       //
	registrations    *prometheus.CounterVec // result
	deregistrations  prometheus.Counter     //
	resolutions      prometheus.Counter     //
	resolutionMisses prometheus.Counter     //
	peers            prometheus.Gauge       //
	removals         *prometheus.CounterVec // reason
	keepAlivesSent   prometheus.Counter     //
	keepAliveAcks    prometheus.Counter     //
	unreachable      prometheus.Counter     //
	limitRejections  *prometheus.CounterVec // limit
	connections      prometheus.Gauge       //
	connectionsTotal *prometheus.CounterVec // result
	malformed        prometheus.Counter     //
	errorsSent       *prometheus.CounterVec // cause
	announces        prometheus.Counter     //
	updatesSent      prometheus.Counter     //
	updatesReceived  prometheus.Counter     //
	takeovers        prometheus.Counter     //
	audits           prometheus.Counter     //
	enrpDropped      prometheus.Counter     //
}

// Label values.
const (
	resultOK           = "ok"
	resultInvalid      = "invalid"
	resultInconsistent = "inconsistent"
	resultUnauthorized = "unauthorized"
	resultLimit        = "limit"

	reasonDeregistration = "deregistration"
	reasonKeepAlive      = "keepalive_timeout"
	reasonUnreachable    = "unreachable"
	reasonConnection     = "connection_lost"
	reasonExpiry         = "expiry"

	limitPools        = "pools"
	limitElements     = "elements"
	limitPoolElements = "pool_elements"
	limitHandleLength = "handle_length"
	limitConnections  = "connections"
	limitRate         = "rate"
	limitAuthz        = "authorization"
	limitErrors       = "errors"
	limitSendQueue    = "send_queue"

	limitSourceConnections = "source_connections"
	limitSourceElements    = "source_elements"
	limitENRPAllow         = "enrp_allow"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "rserpool", "registrar"
	m := &metrics{
		poolElements: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "pool_elements", Help: "PEs per pool (pools beyond the label cap are summed under pool=\"_other\")."}, []string{"pool"}),
		elements: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "elements", Help: "PEs in the handlespace."}),
		pools: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "pools", Help: "Pools in the handlespace."}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "registrations_total", Help: "ASAP registrations (and re-registrations) by result."}, []string{"result"}),
		deregistrations: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "deregistrations_total", Help: "ASAP deregistrations answered."}),
		resolutions: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "handle_resolutions_total", Help: "ASAP handle resolutions answered."}),
		resolutionMisses: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "handle_resolution_unknown_total", Help: "Handle resolutions answered with Unknown Pool Handle."}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "peers", Help: "Known ENRP peers."}),
		removals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "removals_total", Help: "PEs removed, by reason."}, []string{"reason"}),
		keepAlivesSent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "keepalives_sent_total", Help: "ASAP_ENDPOINT_KEEP_ALIVE messages sent to owned PEs."}),
		keepAliveAcks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "keepalive_acks_total", Help: "ASAP_ENDPOINT_KEEP_ALIVE_ACK messages received."}),
		unreachable: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "unreachable_reports_total", Help: "ASAP_ENDPOINT_UNREACHABLE reports received."}),
		limitRejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "limit_rejections_total", Help: "Requests or connections refused by a limit or by authorization."}, []string{"limit"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "connections", Help: "Open ASAP connections."}),
		connectionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "connections_total", Help: "ASAP connections accepted or refused."}, []string{"result"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "malformed_messages_total", Help: "Received messages that could not be decoded or were unexpected."}),
		errorsSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "asap_errors_sent_total", Help: "ASAP_ERROR messages sent, by cause code."}, []string{"cause"}),
		announces: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "announces_sent_total", Help: "ASAP_SERVER_ANNOUNCE datagrams sent."}),
		updatesSent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "enrp_handle_updates_sent_total", Help: "ENRP_HANDLE_UPDATE messages sent to peers."}),
		updatesReceived: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "enrp_handle_updates_received_total", Help: "ENRP_HANDLE_UPDATE messages received from peers."}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "enrp_takeovers_total", Help: "Dead peers this registrar took over (Takeover Server sent)."}),
		audits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "enrp_audits_total", Help: "Checksum audits started (Handle Table Request with W=1 sent)."}),
		enrpDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "enrp_messages_dropped_total", Help: "ENRP messages dropped because a peer's send queue was full or its connection failed."}),
	}
	for _, c := range []prometheus.Collector{m.poolElements, m.elements, m.pools, m.registrations,
		m.deregistrations, m.resolutions, m.resolutionMisses, m.peers, m.removals, m.keepAlivesSent,
		m.keepAliveAcks, m.unreachable, m.limitRejections, m.connections, m.connectionsTotal,
		m.malformed, m.errorsSent, m.announces,
		m.updatesSent, m.updatesReceived, m.takeovers, m.audits, m.enrpDropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{resultOK, resultInvalid, resultInconsistent, resultUnauthorized, resultLimit} {
		m.registrations.WithLabelValues(r)
	}
	for _, r := range []string{reasonDeregistration, reasonKeepAlive, reasonUnreachable, reasonConnection, reasonExpiry} {
		m.removals.WithLabelValues(r)
	}
	return m, nil
}

// poolLabels assigns bounded label values to pools. Owned by the loop.
type poolLabels struct {
	max    int
	named  map[wire.PoolHandle]bool // pools that have their own label
	gauge  *prometheus.GaugeVec
	others int // pools counted under _other
}

func newPoolLabels(max int, g *prometheus.GaugeVec) *poolLabels {
	return &poolLabels{max: max, named: map[wire.PoolHandle]bool{}, gauge: g}
}

// label returns the label of handle, assigning one when the pool is new.
func (p *poolLabels) label(handle wire.PoolHandle) string {
	if p.named[handle] {
		return handle.String()
	}
	return otherPool
}

// added records one PE added to handle; created says whether the pool is new.
func (p *poolLabels) added(handle wire.PoolHandle, created bool) {
	if created && len(p.named) < p.max && !p.named[handle] {
		p.named[handle] = true
	}
	p.gauge.WithLabelValues(p.label(handle)).Inc()
}

// removed records one PE removed from handle; gone says the pool vanished.
func (p *poolLabels) removed(handle wire.PoolHandle, gone bool) {
	l := p.label(handle)
	if gone && p.named[handle] {
		delete(p.named, handle)
		p.gauge.DeleteLabelValues(handle.String())
		return
	}
	p.gauge.WithLabelValues(l).Dec()
}
