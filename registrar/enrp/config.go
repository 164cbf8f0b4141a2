package enrp

import (
	"math/rand/v2"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// Arbitration decides which of two registrars that start a takeover of the
// same dead peer at the same time wins (RFC 5353 §3.5.1).
type Arbitration uint8

const (
	// LowerIDWins: the initiator with the lower server ID wins. This is what
	// RSPLIB does. It is the default because both initiators must apply the
	// same rule (with mixed rules each ignores the other, neither collects all
	// acknowledgements and the dead peer's PEs only age out), and RSPLIB is
	// the registrar this implementation has to interoperate with.
	LowerIDWins Arbitration = iota
	// HigherIDWins: the rule written in RFC 5353 §3.5.1.
	HigherIDWins
)

func (a Arbitration) String() string {
	if a == HigherIDWins {
		return "higher-id-wins"
	}
	return "lower-id-wins"
}

// Config configures a Node. Zero durations and sizes take the defaults given
// per field (RSPLIB's values, which suit LANs better than the RFC's tens of
// seconds).
type Config struct {
	// ID is this registrar's ENRP server ID; must be non-zero.
	ID uint32
	// ServerInfo describes our ENRP transport; ServerID is overwritten with
	// ID. Sent in every Presence (RSPLIB requires it) and List Response.
	ServerInfo wire.ServerInfo

	// PeerHeartbeat is PEER-HEARTBEAT-CYCLE, the Presence period, jittered
	// by ±12.5 %. Default 2.444 s (RSPLIB; RFC 30 s).
	PeerHeartbeat time.Duration
	// MaxTimeLastHeard is the silence after which a peer is probed with a
	// Presence R=1. Default 5 s (RSPLIB; RFC 61 s).
	MaxTimeLastHeard time.Duration
	// MaxTimeNoResponse is how long a probe, a Handle Table Request or a
	// List Request waits for its answer, and how long a mentor keeps an idle
	// download session. Default 5 s.
	MaxTimeNoResponse time.Duration
	// TakeoverExpiry is how long a takeover waits for Init Takeover Acks
	// before it is abandoned. Default 5 s.
	TakeoverExpiry time.Duration
	// MentorDiscovery is how long a starting registrar waits for a peer to
	// answer before it serves alone. Default 5 s. Negative: serve at once
	// when no static peers are configured.
	MentorDiscovery time.Duration

	// TableChunkPEs caps the PEs per Handle Table Response. Default 128.
	TableChunkPEs int
	// TableChunkBytes caps the (estimated) encoded size of a Handle Table
	// Response. Default 1400 (RSPLIB); larger values speed up a mentor
	// sync over the TCP mapping. The limit is never below one PE and never
	// above MaxTableChunkBytes (the 16-bit message length).
	TableChunkBytes int

	// MaxPeers caps the peer list; messages from further unknown registrars
	// are ignored (a hostile sender cycling server IDs cannot grow it).
	// Default 64.
	MaxPeers int
	// MaxSessions caps concurrent Handle Table downloads served (each holds
	// a snapshot of the keys: 16-24 bytes per PE); further requesters get
	// a response with R=1. Default 16.
	MaxSessions int

	// Arbitration is the takeover arbitration rule; default LowerIDWins.
	Arbitration Arbitration
	// Multicast also sends each periodic Presence as one Output with
	// Multicast set (the ENRP multicast channel).
	Multicast bool
	// Rand draws the heartbeat jitter; nil = randomly seeded.
	Rand *rand.Rand
}

// Defaults of the Config fields.
const (
	DefaultPeerHeartbeat     = 2444444 * time.Microsecond
	DefaultMaxTimeLastHeard  = 5 * time.Second
	DefaultMaxTimeNoResponse = 5 * time.Second
	DefaultTakeoverExpiry    = 5 * time.Second
	DefaultMentorDiscovery   = 5 * time.Second
	DefaultTableChunkPEs     = 128
	DefaultTableChunkBytes   = 1400
	MaxTableChunkBytes       = 65000
	DefaultMaxPeers          = 64
	DefaultMaxSessions       = 16
)

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.PeerHeartbeat, DefaultPeerHeartbeat)
	def(&c.MaxTimeLastHeard, DefaultMaxTimeLastHeard)
	def(&c.MaxTimeNoResponse, DefaultMaxTimeNoResponse)
	def(&c.TakeoverExpiry, DefaultTakeoverExpiry)
	def(&c.MentorDiscovery, DefaultMentorDiscovery)
	if c.TableChunkPEs <= 0 {
		c.TableChunkPEs = DefaultTableChunkPEs
	}
	if c.TableChunkBytes <= 0 {
		c.TableChunkBytes = DefaultTableChunkBytes
	}
	c.TableChunkBytes = min(c.TableChunkBytes, MaxTableChunkBytes)
	if c.MaxPeers <= 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	c.ServerInfo.ServerID = c.ID
}
