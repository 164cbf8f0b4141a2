package registrar

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/internal/admin"
	"github.com/rserpool/rserpool/registrar/enrp"
	"github.com/rserpool/rserpool/wire"
)

// The status page (GET / on the admin address) shows at most this many
// pools and PEs per pool, so that its cost on the loop and its size stay
// bounded; /handlespace has everything.
const (
	statusMaxPools    = 200
	statusMaxElements = 100
)

//go:embed status.html
var statusTemplate string

// StatusView is what the registrar's status page shows.
type StatusView struct {
	Now       time.Time
	ID        string
	ASAP      []string
	ENRP      []string
	ENRPOn    bool
	Elements  int
	Owned     int
	Checksum  string // of the PEs this registrar owns
	NumPools  int
	Pools     []StatusPool
	MorePools int
	Peers     []StatusPeer
	// Counters and their rates per second over the last minute.
	Registrations, RegistrationRate float64
	Resolutions, ResolutionRate     float64
	Rejected                        float64
	Connections                     float64
}

// ActivePeers counts the peers in state active.
func (v StatusView) ActivePeers() int {
	n := 0
	for _, p := range v.Peers {
		if p.State == enrp.PeerActive.String() {
			n++
		}
	}
	return n
}

// StatusPool is one pool on the status page.
type StatusPool struct {
	Handle   wire.PoolHandle
	Policy   string
	Size     int
	Elements []ElementSnapshot
	More     int
}

// StatusPeer is one ENRP peer on the status page.
type StatusPeer struct {
	PeerSnapshot
	// Ours is this registrar's checksum of the PEs the peer owns; Match
	// whether the peer's last Presence said the same.
	Ours  string
	Match bool
	Known bool // heard from (ID known)
}

// StateClass is the badge colour of the peer's state.
func (p StatusPeer) StateClass() string {
	switch p.State {
	case enrp.PeerActive.String():
		return "ok"
	case enrp.PeerProbing.String():
		return "warn"
	case enrp.PeerUnknown.String():
		return "muted"
	}
	return "bad"
}

// statusPage builds the registrar's page for the admin server.
func (r *Registrar) statusPage() (*admin.Page, error) {
	return admin.NewPage(admin.PageConfig{
		Daemon:  "registrar",
		Content: statusTemplate,
		Links: []admin.Link{{Path: "/metrics", What: "Prometheus"}, {Path: "/handlespace", What: "JSON"},
			{Path: "/healthz", What: "health"}},
		Data: func(ctx context.Context, now time.Time, rates *admin.Rates) (any, error) {
			v, err := r.statusView(ctx, now)
			if err != nil {
				return nil, err
			}
			v.RegistrationRate = rates.Observe(now, "registrations", v.Registrations)
			v.ResolutionRate = rates.Observe(now, "resolutions", v.Resolutions)
			return v, nil
		},
	})
}

// statusView takes the page's data; the handlespace part on the loop.
func (r *Registrar) statusView(ctx context.Context, now time.Time) (StatusView, error) {
	v, err := onLoop(ctx, r, func(l *loop) StatusView { return l.statusView(now) })
	if err != nil {
		return StatusView{}, err
	}
	v.ASAP, v.ENRP = r.ASAPAddrs(), r.ENRPAddrs()
	v.Registrations = admin.Value(r.m.registrations.WithLabelValues(resultOK))
	v.Resolutions = admin.Value(r.m.resolutions)
	for _, res := range []string{resultInvalid, resultInconsistent, resultUnauthorized, resultLimit} {
		v.Rejected += admin.Value(r.m.registrations.WithLabelValues(res))
	}
	v.Connections = admin.Value(r.m.connections)
	return v, nil
}

// statusView runs on the loop: O(statusMaxPools × statusMaxElements + peers).
func (l *loop) statusView(now time.Time) StatusView {
	v := StatusView{
		Now: now, ID: ServerID(l.id).String(), ENRPOn: l.enrp != nil,
		Elements: l.hs.NumElements(), Owned: l.hs.OwnedCount(l.id), NumPools: l.hs.NumPools(),
		Checksum: fmt.Sprintf("0x%04x", l.hs.Checksum(l.id)),
	}
	l.hs.Pools(func(h wire.PoolHandle, pt wire.PolicyType) bool {
		if len(v.Pools) == statusMaxPools {
			return false
		}
		p := StatusPool{Handle: h, Policy: pt.Name(), Size: l.hs.PoolLen(h)}
		l.hs.Elements(h, func(e *handlespace.Element) bool {
			if len(p.Elements) == statusMaxElements {
				return false
			}
			p.Elements = append(p.Elements, elementSnapshot(e, l.id))
			return true
		})
		p.More = p.Size - len(p.Elements)
		v.Pools = append(v.Pools, p)
		return true
	})
	v.MorePools = v.NumPools - len(v.Pools)
	if l.enrp != nil {
		for _, p := range l.enrp.node.Peers() {
			ours := l.hs.Checksum(p.ID)
			v.Peers = append(v.Peers, StatusPeer{
				PeerSnapshot: PeerSnapshot{ID: ServerID(p.ID).String(), Addr: p.Addr, State: p.State.String(),
					Static: p.Static, Checksum: fmt.Sprintf("0x%04x", p.Checksum), LastHeard: p.LastHeard},
				Ours: fmt.Sprintf("0x%04x", ours), Match: p.Checksum == ours, Known: p.ID != 0,
			})
		}
	}
	return v
}
