package asap

import (
	"net/netip"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// Config is what the core applies: the registrar's timers, registration
// rules and limits, already validated and parsed by the registrar. Unlike
// the registrar's TOML configuration, a zero limit here means "no limit";
// the registrar never passes one.
type Config struct {
	// ID is this registrar's server ID: the Home ENRP Server of the PEs it
	// owns and the sender of its keep-alives. Must be non-zero.
	ID uint32

	// KeepAliveInterval is the time from a registration (or a keep-alive
	// ack) to the next ASAP_ENDPOINT_KEEP_ALIVE; KeepAliveTimeout how long
	// the ack may take before the PE is removed.
	KeepAliveInterval time.Duration
	KeepAliveTimeout  time.Duration
	// ExpireOwned also removes PEs whose Registration Life (milliseconds)
	// ran out, checked every ExpiryCheckInterval.
	ExpireOwned         bool
	ExpiryCheckInterval time.Duration

	// RemoveOnConnectionLoss removes a connection's PEs when it ends, after
	// ConnectionLossGrace (0: at once); otherwise they get one
	// KeepAliveTimeout to re-register.
	RemoveOnConnectionLoss bool
	ConnectionLossGrace    time.Duration
	// RequireAddressSubset: every user-transport address must be an
	// address of the registering connection (RFC 5352 §2.2.1).
	RequireAddressSubset bool
	// UnreachableThreshold is MAX-BAD-PE-REPORT.
	UnreachableThreshold int
	// ResolutionItems is the number of PEs per resolution without (or
	// with a zero) Handle Resolution Option; MaxResolutionItems the cap.
	ResolutionItems    int
	MaxResolutionItems int

	// Allow lists the source networks that may register in pools without
	// an entry in Pools; empty = any source.
	Allow []netip.Prefix
	// Pools holds per-pool authorization and caps.
	Pools []Pool

	// MaxElements, MaxPoolElements and MaxPools cap what registrations
	// may add to the handlespace (replicated entries from ENRP peers are
	// not admitted here and are not refused by these caps).
	MaxElements     int
	MaxPoolElements int
	MaxPools        int
	// MaxHandleLength caps pool handles, in bytes.
	MaxHandleLength int
	// MaxSourceElements caps the PEs registered here from one source
	// address (the first address of the registering connection).
	MaxSourceElements int
	// MaxMessageSize bounds a message sent on an ASAP connection: handle
	// resolution responses are trimmed to fit it.
	MaxMessageSize int
	// MaxDials caps the association set-ups to PEs (Reach) under way.
	MaxDials int
}

// Pool is the authorization and cap of one pool (RFC 5355 §2.1-2.4).
type Pool struct {
	Handle wire.PoolHandle
	// Allow lists the source networks whose PEs may register; empty = any.
	Allow []netip.Prefix
	// TLSIdentities, when not empty, requires one of these client
	// certificate identities on the registering connection.
	TLSIdentities []string
	// MaxElements caps the pool; 0 = Config.MaxPoolElements.
	MaxElements int
}

// poolAuth is the compiled authorization of one pool.
type poolAuth struct {
	allow []netip.Prefix
	ids   map[string]bool
	max   int
}

func compileAuth(pools []Pool) map[wire.PoolHandle]*poolAuth {
	auth := make(map[wire.PoolHandle]*poolAuth, len(pools))
	for _, p := range pools {
		a := &poolAuth{allow: p.Allow, max: p.MaxElements}
		if len(p.TLSIdentities) > 0 {
			a.ids = make(map[string]bool, len(p.TLSIdentities))
			for _, id := range p.TLSIdentities {
				a.ids[id] = true
			}
		}
		auth[p.Handle] = a
	}
	return auth
}

// capped reports whether n has reached the cap max (max <= 0: no cap).
func capped(n, max int) bool { return max > 0 && n >= max }
