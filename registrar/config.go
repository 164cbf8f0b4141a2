package registrar

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/rserpool/rserpool/internal/confdir"
	"github.com/rserpool/rserpool/registrar/asap"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// ServerID is a registrar's ENRP server identifier. In TOML it is written as
// a hexadecimal string ("0x1a2b3c4d" or "1a2b3c4d"); zero means "pick a
// random non-zero identifier at start".
type ServerID uint32

// UnmarshalText parses a hexadecimal identifier with or without "0x".
func (s *ServerID) UnmarshalText(b []byte) error {
	t := strings.TrimPrefix(strings.TrimPrefix(string(b), "0x"), "0X")
	v, err := strconv.ParseUint(t, 16, 32)
	if err != nil {
		return fmt.Errorf("server id %q: want a 32-bit hexadecimal number", string(b))
	}
	*s = ServerID(v)
	return nil
}

// MarshalText writes the identifier as "0x%08x".
func (s ServerID) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s ServerID) String() string { return fmt.Sprintf("0x%08x", uint32(s)) }

// Config is the whole registrar configuration. DefaultConfig returns the
// documented defaults; LoadConfig overlays a TOML file on them.
type Config struct {
	// ID is the ENRP server identifier; 0 = random non-zero at New.
	ID ServerID `toml:"id"`

	ASAP         ASAPConfig         `toml:"asap"`
	ENRP         ENRPConfig         `toml:"enrp"`
	Announce     AnnounceConfig     `toml:"announce"`
	Admin        AdminConfig        `toml:"admin"`
	Timers       TimersConfig       `toml:"timers"`
	Registration RegistrationConfig `toml:"registration"`
	Limits       LimitsConfig       `toml:"limits"`
	TLS          TLSConfig          `toml:"tls"`
	// Pools holds per-pool authorization and limits ([[pool]] tables).
	Pools []PoolConfig `toml:"pool"`
}

// ASAPConfig lists the ASAP listeners.
type ASAPConfig struct {
	// Listen holds "tcp://h:p" (TCP mapping; default scheme), "sctp://h:p"
	// or "tls://h:p". Default ["tcp://127.0.0.1:3863"].
	Listen []string `toml:"listen"`
}

// ENRPConfig configures ENRP (RFC 5353): replication of the handlespace
// between registrars, audit and takeover. ENRP runs when Listen, Peers or
// Multicast is set. Zero timers and sizes take the enrp package defaults
// (RSPLIB's values).
type ENRPConfig struct {
	// Listen holds ENRP listeners: "tcp://h:p" (TCP mapping carrying PPID
	// 12, this project's extension; port 9901 by convention), "sctp://h:p"
	// or "tls://h:p" (mutual TLS, see PeerIdentities).
	Listen []string `toml:"listen"`
	// Peers holds the static peers' ENRP addresses.
	Peers []string `toml:"peers"`
	// PeerHeartbeat is PEER-HEARTBEAT-CYCLE (Presence period). Default 2.444 s.
	PeerHeartbeat time.Duration `toml:"peer_heartbeat"`
	// MaxTimeLastHeard: a peer silent this long is probed. Default 5 s.
	MaxTimeLastHeard time.Duration `toml:"max_time_last_heard"`
	// MaxTimeNoResponse: a probe or request unanswered this long fails (a
	// probed peer is then dead and taken over). Default 5 s.
	MaxTimeNoResponse time.Duration `toml:"max_time_no_response"`
	// TakeoverExpiry: a takeover without every ack is abandoned. Default 5 s.
	TakeoverExpiry time.Duration `toml:"takeover_expiry"`
	// MentorDiscovery is how long a starting registrar waits for a mentor
	// before it serves ASAP alone. Default 5 s; without peers and without
	// multicast it serves at once.
	MentorDiscovery time.Duration `toml:"mentor_discovery"`
	// Arbitration is the takeover arbitration rule: "lower-id-wins"
	// (default, RSPLIB) or "higher-id-wins" (RFC 5353 §3.5.1). Every
	// registrar of a set must use the same rule.
	Arbitration string `toml:"arbitration"`
	// TableChunkPEs and TableChunkBytes bound one Handle Table Response.
	// Defaults 128 PEs and 1400 bytes (RSPLIB); raise both (e.g. 1024 and
	// 60000) for a faster mentor sync over the TCP mapping.
	TableChunkPEs   int `toml:"table_chunk_pes"`
	TableChunkBytes int `toml:"table_chunk_bytes"`
	// Allow lists the networks (CIDR) ENRP peers may be in: accepted ENRP
	// connections from other sources are closed, dialed peers outside
	// them are dropped, and multicast Presences from them are ignored.
	// Empty = any source (the default, so that RSPLIB registrars, which
	// have no TLS, interoperate; a warning at start says so when ENRP
	// listens without TLS).
	Allow []string `toml:"allow"`
	// PeerIdentities, when not empty, restricts tls:// peers (incoming and
	// outgoing) to certificates whose common name or a SAN is listed;
	// certificates are verified against tls.client_ca_file.
	PeerIdentities []string `toml:"peer_identities"`
	// Multicast is ENRP Presence by UDP multicast (peer discovery).
	Multicast ENRPMulticastConfig `toml:"multicast"`
}

// ENRPMulticastConfig is the ENRP multicast channel. Off unless Enabled.
type ENRPMulticastConfig struct {
	Enabled bool `toml:"enabled"`
	// Group is the multicast group and port. Default "239.0.0.51:9901".
	Group string `toml:"group"`
	// Interface names the interface to send and join on; "" = the
	// system's choice.
	Interface string `toml:"interface"`
	// TTL is the multicast TTL. Default 30.
	TTL int `toml:"ttl"`
}

// Enabled reports whether ENRP runs.
func (c ENRPConfig) Enabled() bool {
	return len(c.Listen) > 0 || len(c.Peers) > 0 || c.Multicast.Enabled
}

// AnnounceConfig controls ASAP Server Announce by UDP multicast (RFC 5352
// §3.6). Off unless Enabled.
type AnnounceConfig struct {
	Enabled bool `toml:"enabled"`
	// Group is the multicast group and port. Default "239.0.0.50:3863"
	// (RSPLIB's default group; 224.0.1.185 is the IANA one).
	Group string `toml:"group"`
	// Interface names the outgoing interface; "" = the system's choice.
	Interface string `toml:"interface"`
	// Interval is T6-Serverannounce. Default 1 s (RFC 5352 and RSPLIB);
	// each period is drawn from ±12.5 % around it as RSPLIB does, so that
	// registrars started together do not stay in phase.
	Interval time.Duration `toml:"interval"`
	// TTL is the multicast TTL. Default 30 (RSPLIB).
	TTL int `toml:"ttl"`
}

// AdminConfig is the admin HTTP listener.
type AdminConfig struct {
	// Listen is "host:port" for /metrics, /healthz, /handlespace; "" = off.
	Listen string `toml:"listen"`
}

// TimersConfig holds every timer of the registrar.
type TimersConfig struct {
	// KeepAliveInterval is the time from a registration (or a keep-alive
	// ack) to the next ASAP_ENDPOINT_KEEP_ALIVE to an owned PE. Default 5 s:
	// RSPLIB's value, which detects a dead PE within 10 s while costing one
	// small message per PE every 5 s (the RFC leaves it unspecified).
	KeepAliveInterval time.Duration `toml:"keepalive_interval"`
	// KeepAliveTimeout is how long to wait for the ack before the PE is
	// removed. Default 5 s (RSPLIB); a PE on a loaded host answers well
	// within it, while a PU gets no stale entry for longer than
	// interval + timeout.
	KeepAliveTimeout time.Duration `toml:"keepalive_timeout"`
	// ConnHeartbeatInterval is the TCP-mapping heartbeat period on ASAP
	// connections. Default 30 s (SCTP HB.interval, the mapping's choice);
	// keep-alives already detect dead PEs faster.
	ConnHeartbeatInterval time.Duration `toml:"conn_heartbeat_interval"`
	// ConnHeartbeatMaxMissed is how many heartbeats may go unanswered.
	// Default 5 (SCTP Path.Max.Retrans).
	ConnHeartbeatMaxMissed int `toml:"conn_heartbeat_max_missed"`
	// ExpiryCheckInterval is how often registration lives are checked when
	// Registration.ExpireOwned is set. Default 1 s: lives are tens of
	// seconds, so one second of lateness is harmless.
	ExpiryCheckInterval time.Duration `toml:"expiry_check_interval"`
	// ConnectionLossGrace is how long the PEs of an ASAP connection that
	// ended without a deregistration (the PE's process died, its host
	// reset the connection) stay before they are removed, when
	// Registration.RemoveOnConnectionLoss is set: a re-registration over a
	// new connection within it (a PE that reconnected, or moved to another
	// registrar) keeps the PE without a removal in between. Default 500 ms:
	// a reconnection and registration take a few round trips, and a dead
	// PE still leaves the pool within a second. 0 removes them at once, as
	// RSPLIB does on COMM_LOST.
	ConnectionLossGrace time.Duration `toml:"connection_loss_grace"`
}

// RegistrationConfig holds the registration and resolution rules.
type RegistrationConfig struct {
	// ExpireOwned also removes owned PEs whose Registration Life (ms) ran
	// out without a re-registration. Default false: like RSPLIB, owned PEs
	// are monitored by keep-alive only.
	ExpireOwned bool `toml:"expire_owned"`
	// RemoveOnConnectionLoss removes the PEs registered over a connection
	// when it ends, after timers.connection_loss_grace (RSPLIB removes them
	// at once on COMM_LOST). Default true. false keeps them for one
	// keepalive_timeout.
	RemoveOnConnectionLoss bool `toml:"remove_on_connection_loss"`
	// RequireAddressSubset enforces RFC 5352 §2.2.1: every address of the
	// PE's user transport must be an address of the registering connection.
	// Default true. Set false to let agents register backends on other
	// hosts (then the pool's allow list is the only address check).
	RequireAddressSubset bool `toml:"require_address_subset"`
	// UnreachableThreshold is MAX-BAD-PE-REPORT: a PE is removed when its
	// ASAP_ENDPOINT_UNREACHABLE count reaches it. Default 3 (RSPLIB "≥ 3").
	UnreachableThreshold int `toml:"unreachable_threshold"`
	// ResolutionItems is the number of PEs in a handle resolution response
	// when the request has no (or a zero) Handle Resolution Option.
	// Default 3 (RSPLIB).
	ResolutionItems int `toml:"resolution_items"`
	// MaxResolutionItems caps the PEs per response. Default 128 (RSPLIB; an
	// RSPLIB PU rejects responses with more).
	MaxResolutionItems int `toml:"max_resolution_items"`
	// Allow lists the source networks (CIDR) that may register PEs in pools
	// without a [[pool]] entry of their own; empty = any source.
	Allow []string `toml:"allow"`
}

// LimitsConfig bounds every resource a client can make the registrar spend.
// Zero means the default; there is no "unlimited".
type LimitsConfig struct {
	// MaxElements caps PEs in the handlespace. Default 1,000,000.
	MaxElements int `toml:"max_elements"`
	// MaxPoolElements caps PEs per pool unless its [[pool]] says otherwise.
	// Default 100,000.
	MaxPoolElements int `toml:"max_pool_elements"`
	// MaxPools caps pools. Default 10,000.
	MaxPools int `toml:"max_pools"`
	// MaxHandleLength caps pool handles, in bytes. Default 32 (RSPLIB).
	MaxHandleLength int `toml:"max_handle_length"`
	// MaxConnections caps concurrent ASAP connections. Default 20,000.
	MaxConnections int `toml:"max_connections"`
	// MaxSourceConnections caps concurrent ASAP connections from one source
	// address; more are closed at accept (associations the registrar opens
	// to PEs do not count). Default 256: a host runs a few agents, proxies
	// and RSPLIB PE or PU processes (one association each), while one host
	// holding connections that stall (half a chunk header: 30 s each, the
	// transport's chunk timeout) cannot take more than 256 of the
	// max_connections slots or more than a few MiB.
	MaxSourceConnections int `toml:"max_source_connections"`
	// MaxSourceElements caps the PEs registered here from one source
	// address (the registering connection's first address): further
	// registrations of new PEs get cause 0x6. Default 1,000: a pe-agent
	// with several hundred backends fits, one host cannot fill the
	// handlespace (10,000 PEs from one host are refused). PEs taken over
	// from a dead peer do not count.
	MaxSourceElements int `toml:"max_source_elements"`
	// MessagesPerSecond is each connection's sustained message rate; Burst
	// the bucket size. Defaults 20,000/s and 20,000: far above any PE or PU,
	// low enough that one client cannot monopolise the event loop.
	MessagesPerSecond int `toml:"messages_per_second"`
	Burst             int `toml:"burst"`
	// MaxMessageSize bounds one received ASAP message; a larger frame closes
	// the connection. Default 8192 (a registration with 64 IPv6 addresses
	// is under 2 KiB).
	MaxMessageSize int `toml:"max_message_size"`
	// MaxErrors is how many malformed messages a connection may send before
	// it is closed. Default 10.
	MaxErrors int `toml:"max_errors"`
	// SendQueueBytes bounds the replies queued per connection. A client
	// that reads slowly stops being read from at a quarter of it; one that
	// does not read at all fills it and is disconnected. Default 4 MiB
	// (room for the keep-alives of tens of thousands of PEs on one
	// connection; an idle connection holds none of it).
	SendQueueBytes int `toml:"send_queue_bytes"`
	// MetricPools caps distinct pool label values of
	// rserpool_registrar_pool_elements: the first MetricPools pools in
	// handle order have their own; further pools share pool="_other".
	// Default 100.
	MetricPools int `toml:"metric_pools"`
}

// TLSConfig configures tls:// listeners.
type TLSConfig struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ClientCAFile, when set, requires and verifies client certificates.
	ClientCAFile string `toml:"client_ca_file"`
}

// PoolConfig is the authorization and limits of one pool (RFC 5355).
type PoolConfig struct {
	// Handle is the pool handle, in the escaped text form of wire.PoolHandle
	// (`\\xHH` for a byte that is not printable, `\\\\` for a backslash).
	Handle wire.PoolHandle `toml:"handle"`
	// Allow lists the source networks (CIDR) whose PEs may register; empty =
	// any source.
	Allow []string `toml:"allow"`
	// TLSIdentities, when not empty, requires registration over TLS with a
	// client certificate whose subject common name or a DNS/URI/e-mail SAN
	// is listed.
	TLSIdentities []string `toml:"tls_identities"`
	// MaxElements caps this pool; 0 = Limits.MaxPoolElements.
	MaxElements int `toml:"max_elements"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		ASAP:     ASAPConfig{Listen: []string{"tcp://127.0.0.1:3863"}},
		Announce: AnnounceConfig{Group: "239.0.0.50:3863", Interval: time.Second, TTL: 30},
		ENRP:     ENRPConfig{Multicast: ENRPMulticastConfig{Group: "239.0.0.51:9901", TTL: 30}},
		Timers: TimersConfig{
			KeepAliveInterval:      5 * time.Second,
			KeepAliveTimeout:       5 * time.Second,
			ConnHeartbeatInterval:  30 * time.Second,
			ConnHeartbeatMaxMissed: 5,
			ExpiryCheckInterval:    time.Second,
			ConnectionLossGrace:    500 * time.Millisecond,
		},
		Registration: RegistrationConfig{
			RemoveOnConnectionLoss: true,
			RequireAddressSubset:   true,
			UnreachableThreshold:   3,
			ResolutionItems:        3,
			MaxResolutionItems:     128,
		},
		Limits: LimitsConfig{
			MaxElements:          1_000_000,
			MaxPoolElements:      100_000,
			MaxPools:             10_000,
			MaxHandleLength:      32,
			MaxConnections:       20_000,
			MaxSourceConnections: 256,
			MaxSourceElements:    1000,
			MessagesPerSecond:    20_000,
			Burst:                20_000,
			MaxMessageSize:       8192,
			MaxErrors:            10,
			SendQueueBytes:       4 << 20,
			MetricPools:          100,
		},
	}
}

// LoadConfig reads a TOML file, or a directory of *.toml files merged as
// internal/confdir describes (one file per [[pool]], say), over
// DefaultConfig. Unknown keys and bad values are errors naming the key and
// the file; a key defined in two files of a directory is an error naming
// both. The result is validated.
func LoadConfig(path string) (Config, error) {
	src, err := confdir.Read(path, func(b []byte) error { _, err := decodeConfig(b); return err })
	if err != nil {
		return Config{}, err
	}
	cfg, err := decodeConfig(src.Data)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return Config{}, src.Annotate(err)
	}
	return cfg, nil
}

// ParseConfig decodes TOML text over DefaultConfig, strictly (an unknown
// key is an error), and validates the result, as LoadConfig does.
func ParseConfig(b []byte) (Config, error) {
	cfg, err := decodeConfig(b)
	if err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// decodeConfig decodes TOML text over DefaultConfig strictly, without
// validating.
func decodeConfig(b []byte) (Config, error) {
	cfg := DefaultConfig()
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&cfg)
	if err != nil {
		return Config{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("unknown keys: %s", strings.Join(keys, ", "))
	}
	return cfg, nil
}

// Validate reports every problem at once, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, a...)...))
	}
	if len(c.ASAP.Listen) == 0 {
		bad("asap.listen", "at least one address is required")
	}
	for i, a := range c.ASAP.Listen {
		if _, err := transport.ParseAddr(a); err != nil {
			bad(fmt.Sprintf("asap.listen[%d]", i), "%v", err)
		}
		if schemeOf(a) == transport.SchemeTLS && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
			bad(fmt.Sprintf("asap.listen[%d]", i), "tls:// needs tls.cert_file and tls.key_file")
		}
	}
	for i, a := range c.ENRP.Listen {
		if _, err := transport.ParseAddr(a); err != nil {
			bad(fmt.Sprintf("enrp.listen[%d]", i), "%v", err)
		}
	}
	enrpAllow := parsePrefixes(c.ENRP.Allow)
	for i, s := range c.ENRP.Allow {
		if _, err := netip.ParsePrefix(s); err != nil {
			bad(fmt.Sprintf("enrp.allow[%d]", i), "%v", err)
		}
	}
	for i, a := range c.ENRP.Peers {
		if _, err := transport.ParseAddr(a); err != nil {
			bad(fmt.Sprintf("enrp.peers[%d]", i), "%v", err)
		} else if ip, ok := addrIP(a); ok && len(enrpAllow) > 0 && !asap.Contains(enrpAllow, ip) {
			bad(fmt.Sprintf("enrp.peers[%d]", i), "%q is outside enrp.allow", a)
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"enrp.peer_heartbeat", c.ENRP.PeerHeartbeat}, {"enrp.max_time_last_heard", c.ENRP.MaxTimeLastHeard},
		{"enrp.max_time_no_response", c.ENRP.MaxTimeNoResponse}, {"enrp.takeover_expiry", c.ENRP.TakeoverExpiry},
		{"enrp.mentor_discovery", c.ENRP.MentorDiscovery}} {
		if d.v < 0 {
			bad(d.key, "must not be negative")
		}
	}
	switch c.ENRP.Arbitration {
	case "", "lower-id-wins", "higher-id-wins":
	default:
		bad("enrp.arbitration", "%q: want lower-id-wins or higher-id-wins", c.ENRP.Arbitration)
	}
	if c.ENRP.TableChunkPEs < 0 {
		bad("enrp.table_chunk_pes", "must not be negative")
	}
	if c.ENRP.TableChunkBytes < 0 || c.ENRP.TableChunkBytes > 65000 {
		bad("enrp.table_chunk_bytes", "%d is outside 0..65000", c.ENRP.TableChunkBytes)
	}
	for i, a := range c.ENRP.Listen {
		if schemeOf(a) == transport.SchemeTLS && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
			bad(fmt.Sprintf("enrp.listen[%d]", i), "tls:// needs tls.cert_file and tls.key_file")
		}
	}
	if c.ENRP.Multicast.Enabled {
		if ap, err := netip.ParseAddrPort(c.ENRP.Multicast.Group); err != nil || !ap.Addr().IsMulticast() {
			bad("enrp.multicast.group", "%q is not a multicast group:port", c.ENRP.Multicast.Group)
		}
		if c.ENRP.Multicast.TTL < 1 || c.ENRP.Multicast.TTL > 255 {
			bad("enrp.multicast.ttl", "%d is outside 1..255", c.ENRP.Multicast.TTL)
		}
		if c.ENRP.Multicast.Interface != "" {
			if _, err := net.InterfaceByName(c.ENRP.Multicast.Interface); err != nil {
				bad("enrp.multicast.interface", "%v", err)
			}
		}
	}
	if c.Announce.Enabled {
		if ap, err := netip.ParseAddrPort(c.Announce.Group); err != nil || !ap.Addr().IsMulticast() {
			bad("announce.group", "%q is not a multicast group:port", c.Announce.Group)
		}
		if c.Announce.TTL < 1 || c.Announce.TTL > 255 {
			bad("announce.ttl", "%d is outside 1..255", c.Announce.TTL)
		}
		if c.Announce.Interface != "" {
			if _, err := net.InterfaceByName(c.Announce.Interface); err != nil {
				bad("announce.interface", "%v", err)
			}
		}
	}
	if c.Announce.Interval < 10*time.Millisecond {
		bad("announce.interval", "%v is below 10ms (write units, e.g. \"1s\")", c.Announce.Interval)
	}
	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			bad("admin.listen", "%v", err)
		}
	}
	dur := func(key string, d, min time.Duration) {
		if d < min {
			bad(key, "%v is below %v (write units, e.g. \"5s\")", d, min)
		}
	}
	dur("timers.keepalive_interval", c.Timers.KeepAliveInterval, time.Millisecond)
	dur("timers.keepalive_timeout", c.Timers.KeepAliveTimeout, time.Millisecond)
	dur("timers.conn_heartbeat_interval", c.Timers.ConnHeartbeatInterval, time.Millisecond)
	dur("timers.expiry_check_interval", c.Timers.ExpiryCheckInterval, time.Millisecond)
	if c.Timers.ConnectionLossGrace < 0 {
		bad("timers.connection_loss_grace", "must not be negative")
	}
	if c.Timers.ConnHeartbeatMaxMissed < 1 {
		bad("timers.conn_heartbeat_max_missed", "must be at least 1")
	}
	r := c.Registration
	if r.UnreachableThreshold < 1 {
		bad("registration.unreachable_threshold", "must be at least 1")
	}
	if r.MaxResolutionItems < 1 || r.MaxResolutionItems > 1024 {
		bad("registration.max_resolution_items", "%d is outside 1..1024", r.MaxResolutionItems)
	}
	if r.ResolutionItems < 1 || r.ResolutionItems > r.MaxResolutionItems {
		bad("registration.resolution_items", "%d is outside 1..max_resolution_items", r.ResolutionItems)
	}
	for i, s := range r.Allow {
		if _, err := netip.ParsePrefix(s); err != nil {
			bad(fmt.Sprintf("registration.allow[%d]", i), "%v", err)
		}
	}
	pos := func(key string, v int) {
		if v < 1 {
			bad(key, "must be at least 1")
		}
	}
	l := c.Limits
	pos("limits.max_elements", l.MaxElements)
	pos("limits.max_pool_elements", l.MaxPoolElements)
	pos("limits.max_pools", l.MaxPools)
	pos("limits.max_connections", l.MaxConnections)
	pos("limits.max_source_connections", l.MaxSourceConnections)
	pos("limits.max_source_elements", l.MaxSourceElements)
	pos("limits.messages_per_second", l.MessagesPerSecond)
	pos("limits.burst", l.Burst)
	pos("limits.max_errors", l.MaxErrors)
	if l.SendQueueBytes < 4*l.MaxMessageSize {
		bad("limits.send_queue_bytes", "must be at least 4 × max_message_size")
	}
	pos("limits.metric_pools", l.MetricPools)
	if l.MaxHandleLength < 1 || l.MaxHandleLength > 65531 {
		bad("limits.max_handle_length", "%d is outside 1..65531", l.MaxHandleLength)
	}
	if l.MaxMessageSize < 512 || l.MaxMessageSize > 65519 {
		bad("limits.max_message_size", "%d is outside 512..65519", l.MaxMessageSize)
	}
	seen := map[wire.PoolHandle]bool{}
	for i, p := range c.Pools {
		k := fmt.Sprintf("pool[%d]", i)
		if p.Handle == "" {
			bad(k+".handle", "is required")
		} else if len(p.Handle) > l.MaxHandleLength {
			bad(k+".handle", "is longer than limits.max_handle_length")
		}
		if seen[p.Handle] {
			bad(k+".handle", "%q appears twice", p.Handle)
		}
		seen[p.Handle] = true
		for j, s := range p.Allow {
			if _, err := netip.ParsePrefix(s); err != nil {
				bad(fmt.Sprintf("%s.allow[%d]", k, j), "%v", err)
			}
		}
		if p.MaxElements < 0 {
			bad(k+".max_elements", "must not be negative")
		}
		if len(p.TLSIdentities) > 0 && c.TLS.ClientCAFile == "" {
			bad(k+".tls_identities", "needs tls.client_ca_file (client certificates are not requested otherwise)")
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	return errors.Join(errs...)
}

// addrIP returns the IP address of a transport address whose (first)
// host is an IP literal.
func addrIP(a string) (netip.Addr, bool) {
	x, err := transport.ParseAddr(a)
	if err != nil {
		return netip.Addr{}, false
	}
	ips, ok := x.IPs()
	if !ok {
		return netip.Addr{}, false
	}
	return ips[0].Unmap(), true
}

// schemeOf returns the scheme of a configured address, "" if it does not
// parse (Validate reports that).
func schemeOf(a string) transport.Scheme {
	x, err := transport.ParseAddr(a)
	if err != nil {
		return ""
	}
	return x.Scheme()
}

// dialAddr dials a configured or learned address.
func dialAddr(ctx context.Context, a string, cfg *transport.Config) (transport.Conn, error) {
	x, err := transport.ParseAddr(a)
	if err != nil {
		return nil, err
	}
	return transport.Dial(ctx, x, cfg)
}

func randomID() ServerID {
	for {
		var b [4]byte
		_, _ = rand.Read(b[:])
		if id := binary.BigEndian.Uint32(b[:]); id != 0 {
			return ServerID(id)
		}
	}
}
