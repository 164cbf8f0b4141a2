package handlespace

import (
	"net/netip"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// PoolSnapshot is one pool of a Snapshot, shaped for JSON (the registrar's
// /handlespace endpoint and "rserpool ctl handlespace -json").
type PoolSnapshot struct {
	Handle     wire.PoolHandle   `json:"handle"` // escaped form (wire.PoolHandle.String)
	Policy     string            `json:"policy"` // wire.PolicyType.Name of the pool's policy type
	PolicyType wire.PolicyType   `json:"policy_type"`
	Elements   []ElementSnapshot `json:"elements"`
}

// ElementSnapshot is one PE of a PoolSnapshot.
type ElementSnapshot struct {
	ID               uint32       `json:"id"`
	Home             uint32       `json:"home"`
	RegistrationLife uint32       `json:"registration_life"`
	Transport        string       `json:"transport"` // "tcp", "sctp", "udp", "udplite", "dccp", "opaque"
	Addrs            []netip.Addr `json:"addrs,omitempty"`
	Port             uint16       `json:"port,omitempty"`
	Use              uint16       `json:"transport_use"`
	Policy           wire.Policy  `json:"policy"`
	Degradation      uint32       `json:"degradation,omitempty"`
	Selections       uint64       `json:"selections"`
	Unreachable      int          `json:"unreachable,omitempty"`
	Registered       time.Time    `json:"registered"`
	Updated          time.Time    `json:"updated"`
	Expiry           *time.Time   `json:"expiry,omitempty"`
}

// Snapshot returns a deep copy of the whole handlespace, pools in handle
// order and PEs in ID order. The result is the caller's. O(n log n).
func (h *Handlespace) Snapshot() []PoolSnapshot {
	out := make([]PoolSnapshot, 0, len(h.pools))
	h.Pools(func(handle wire.PoolHandle, t wire.PolicyType) bool {
		ps := PoolSnapshot{Handle: handle, Policy: t.Name(), PolicyType: t,
			Elements: make([]ElementSnapshot, 0, h.PoolLen(handle))}
		h.Elements(handle, func(e *Element) bool {
			u := e.User()
			es := ElementSnapshot{
				ID:               e.ID,
				Home:             e.HomeServer,
				RegistrationLife: e.RegistrationLife,
				Transport:        transportName(u.Type),
				Addrs:            append([]netip.Addr(nil), u.Addrs...),
				Port:             u.Port,
				Use:              uint16(u.Use),
				Policy:           e.Policy(),
				Degradation:      e.Degradation(),
				Selections:       e.Selections(),
				Unreachable:      e.Unreachable,
				Registered:       e.Registered,
				Updated:          e.Updated,
			}
			es.Policy.Raw = append([]uint32(nil), es.Policy.Raw...)
			if !e.Expiry.IsZero() {
				t := e.Expiry
				es.Expiry = &t
			}
			ps.Elements = append(ps.Elements, es)
			return true
		})
		out = append(out, ps)
		return true
	})
	return out
}

func transportName(t wire.TransportType) string {
	switch t {
	case wire.TransportTCP:
		return "tcp"
	case wire.TransportSCTP:
		return "sctp"
	case wire.TransportUDP:
		return "udp"
	case wire.TransportUDPLite:
		return "udplite"
	case wire.TransportDCCP:
		return "dccp"
	case wire.TransportOpaque:
		return "opaque"
	}
	return "unknown"
}
