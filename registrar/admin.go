package registrar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/internal/admin"
	"github.com/rserpool/rserpool/wire"
)

// Snapshot is the JSON form of the handlespace served at /handlespace.
type Snapshot struct {
	ServerID  string          `json:"server_id"`
	Pools     []PoolSnapshot  `json:"pools"`
	Checksums []OwnerChecksum `json:"checksums"`
	Elements  int             `json:"elements"`
	// Peers is the ENRP peer list (empty without ENRP).
	Peers []PeerSnapshot `json:"peers"`
}

// PeerSnapshot is one ENRP peer as this registrar sees it.
type PeerSnapshot struct {
	ID        string    `json:"id"` // "0x00000000" for a configured peer not heard from yet
	Addr      string    `json:"addr"`
	State     string    `json:"state"`
	Static    bool      `json:"static"`
	Checksum  string    `json:"checksum"` // from its last Presence
	LastHeard time.Time `json:"last_heard,omitzero"`
}

// PoolSnapshot is one pool.
type PoolSnapshot struct {
	Handle   wire.PoolHandle   `json:"handle"` // escaped form (wire.PoolHandle.String)
	Policy   string            `json:"policy"`
	Elements []ElementSnapshot `json:"elements"`
}

// ElementSnapshot is one PE.
type ElementSnapshot struct {
	ID                 string       `json:"id"`
	Home               string       `json:"home"`
	Owned              bool         `json:"owned"`
	Transport          string       `json:"transport"`
	Addrs              []string     `json:"addrs"`
	Port               uint16       `json:"port"`
	Use                string       `json:"use"`
	Policy             PolicyValues `json:"policy"`
	RegistrationLifeMS uint32       `json:"registration_life_ms"`
	ASAP               string       `json:"asap,omitempty"`
	Unreachable        int          `json:"unreachable_reports"`
	Registered         time.Time    `json:"registered"`
	Updated            time.Time    `json:"updated"`
}

// PolicyValues is a PE's policy parameter.
type PolicyValues struct {
	Type     string `json:"type"`
	Weight   uint32 `json:"weight,omitempty"`
	Priority uint32 `json:"priority,omitempty"`
	Load     uint32 `json:"load,omitempty"`
	LoadDeg  uint32 `json:"load_degradation,omitempty"`
}

// OwnerChecksum is the RFC 5353 §3.6.2 PE checksum of one owner.
type OwnerChecksum struct {
	Owner    string `json:"owner"`
	Elements int    `json:"elements"`
	Checksum string `json:"checksum"`
}

func (l *loop) snapshot() Snapshot {
	s := Snapshot{ServerID: ServerID(l.id).String(), Pools: []PoolSnapshot{}, Checksums: []OwnerChecksum{},
		Elements: l.hs.NumElements()}
	l.hs.Pools(func(h wire.PoolHandle, pt wire.PolicyType) bool {
		p := PoolSnapshot{Handle: h, Policy: pt.Name()}
		l.hs.Elements(h, func(e *handlespace.Element) bool {
			p.Elements = append(p.Elements, elementSnapshot(e, l.id))
			return true
		})
		s.Pools = append(s.Pools, p)
		return true
	})
	s.Peers = []PeerSnapshot{}
	if l.enrp != nil {
		for _, p := range l.enrp.node.Peers() {
			if p.Tentative {
				continue // a tool such as hsdump, not a peer
			}
			s.Peers = append(s.Peers, PeerSnapshot{ID: ServerID(p.ID).String(), Addr: p.Addr, State: p.State.String(),
				Static: p.Static, Checksum: fmt.Sprintf("0x%04x", p.Checksum), LastHeard: p.LastHeard})
		}
	}
	for _, o := range l.hs.Owners() {
		s.Checksums = append(s.Checksums, OwnerChecksum{Owner: ServerID(o).String(),
			Elements: l.hs.OwnedCount(o), Checksum: fmt.Sprintf("0x%04x", l.hs.Checksum(o))})
	}
	return s
}

func elementSnapshot(e *handlespace.Element, self uint32) ElementSnapshot {
	user, pol, asap := e.User(), e.Policy(), e.ASAP()
	es := ElementSnapshot{
		ID: ServerID(e.ID).String(), Home: ServerID(e.HomeServer).String(), Owned: e.HomeServer == self,
		Transport: user.Type.String(), Port: user.Port, Use: user.Use.String(),
		Addrs:              make([]string, len(user.Addrs)),
		RegistrationLifeMS: e.RegistrationLife,
		Policy: PolicyValues{Type: pol.Type.Name(), Weight: pol.Weight, Priority: pol.Priority,
			Load: pol.Load, LoadDeg: pol.LoadDegradation},
		Unreachable: e.Unreachable, Registered: e.Registered, Updated: e.Updated,
	}
	for i, a := range user.Addrs {
		es.Addrs[i] = a.String()
	}
	if asap.Type != 0 && len(asap.Addrs) > 0 {
		es.ASAP = fmt.Sprintf("%s %s port %d", asap.Type, asap.Addrs[0], asap.Port)
	}
	return es
}

// Snapshot returns the whole handlespace, taken consistently on the loop.
func (r *Registrar) Snapshot(ctx context.Context) (Snapshot, error) {
	return onLoop(ctx, r, (*loop).snapshot)
}

// onLoop runs fn on r's loop and returns its result, unless ctx ends or
// the loop stops first (fn may still run then; its result is dropped).
func onLoop[T any](ctx context.Context, r *Registrar, fn func(*loop) T) (T, error) {
	var zero T
	reply := make(chan T, 1)
	select {
	case r.loop.events <- evFunc{func(l *loop) { reply <- fn(l) }}:
	case <-r.loopDone:
		return zero, errors.New("registrar: closed")
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	select {
	case v := <-reply:
		return v, nil
	case <-r.loopDone:
		return zero, errors.New("registrar: closed")
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

func (r *Registrar) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.serving.Load() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /handlespace", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
		defer cancel()
		s, err := r.Snapshot(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if page, err := r.statusPage(); err != nil {
		r.log.Error("no status page", "err", err)
	} else {
		page.Handle(mux)
	}
	return mux
}

// Admin server bounds (internal/admin, shared by the three daemons).
const (
	adminReadHeaderTimeout = admin.ReadHeaderTimeout
	maxAdminConns          = admin.MaxConns
)
