package registrar

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rserpool/rserpool/registrar/enrp"
)

// peerGauges are computed at scrape time on the loop, from the ENRP peer
// list and the handlespace (so they cannot drift):
//
//	rserpool_registrar_peer_checksum_mismatches  active peers whose last Presence
//	                                             checksum differs from this registrar's
//	                                             checksum of their PEs
//	rserpool_registrar_info{id, enrp}            1, with the server ID and whether ENRP is on
//
// A mismatch lasts until the audit (Handle Table Request) it starts has
// synchronised the two; one that persists is what an alert watches.
type peerGauges struct {
	r        *Registrar
	id       string
	enrpOn   string // "true" or "false": ENRP settings need a restart
	mismatch *prometheus.Desc
	info     *prometheus.Desc
}

// newPeerGauges is called by New, before r is shared.
func newPeerGauges(r *Registrar) *peerGauges {
	enrpOn := "false"
	if r.cfg.ENRP.Enabled() {
		enrpOn = "true"
	}
	return &peerGauges{
		r: r, id: r.id.String(), enrpOn: enrpOn,
		mismatch: prometheus.NewDesc("rserpool_registrar_peer_checksum_mismatches",
			"Active ENRP peers whose last Presence carried a PE checksum other than this registrar's checksum of their PEs.", nil, nil),
		info: prometheus.NewDesc("rserpool_registrar_info",
			"Always 1: the registrar's server ID and whether ENRP is on (enrp=\"true\"/\"false\").", []string{"id", "enrp"}, nil),
	}
}

func (g *peerGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.mismatch
	ch <- g.info
}

func (g *peerGauges) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(g.info, prometheus.GaugeValue, 1, g.id, g.enrpOn)
	n := 0
	if err := g.r.do(func(l *loop) { n = checksumMismatches(l) }); err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(g.mismatch, prometheus.GaugeValue, float64(n))
}

// checksumMismatches runs on the loop. O(peers).
func checksumMismatches(l *loop) int {
	if l.enrp == nil {
		return 0
	}
	n := 0
	for _, p := range l.enrp.node.Peers() {
		if p.ID != 0 && p.State == enrp.PeerActive && p.Checksum != l.hs.Checksum(p.ID) {
			n++
		}
	}
	return n
}
