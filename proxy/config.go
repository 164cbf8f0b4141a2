package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/rserpool/rserpool/internal/confdir"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Duration is a time.Duration read from a TOML string such as "1s" or "250ms".
type Duration = time.Duration

// Config is the proxy's configuration, the proxy.toml file. Every field
// documents its unit, default and what zero means.
type Config struct {
	// Registrars are the registrar ASAP addresses ("tcp://h:p", "sctp://h:p",
	// "tls://h:p"; no scheme = tcp), tried in order. Empty: only registrars
	// learned from announces are used.
	Registrars []transport.Addr `toml:"registrars"`
	// AnnounceGroup is the ASAP announce multicast group ("239.0.0.50:3863"
	// is RSPLIB's) whose Server Announces add registrars. Empty: the
	// default group when Registrars is empty, else none.
	AnnounceGroup string `toml:"announce_group"`
	// AnnounceInterface is the interface joining AnnounceGroup. Empty:
	// chosen by the routing table.
	AnnounceInterface string `toml:"announce_interface"`
	// Admin is the admin HTTP address (/metrics, /healthz, /debug/pprof/).
	// Empty: no admin endpoint.
	Admin string `toml:"admin"`
	// DrainTimeout is how long Shutdown (SIGTERM) waits for established
	// connections before closing them. Zero means 30 s.
	DrainTimeout Duration `toml:"drain_timeout"`
	// Cache tunes the pool-user cache.
	Cache CacheConfig `toml:"cache"`
	// Listeners are the [[listener]] tables.
	Listeners []ListenerConfig `toml:"listener"`
}

// CacheConfig is the [cache] table.
type CacheConfig struct {
	// StaleTimeout: a resolution result is fresh this long; refreshed in the
	// background after half of it. Zero means 5 s.
	StaleTimeout Duration `toml:"stale_timeout"`
	// RequestTimeout: wait for a registrar's answer before trying the next
	// registrar. Zero means 3 s.
	RequestTimeout Duration `toml:"request_timeout"`
	// Items: PEs asked for per handle resolution. Zero means 128.
	Items uint32 `toml:"items"`
}

// ListenerConfig is one [[listener]] table.
type ListenerConfig struct {
	// Name labels the listener's metrics and logs. Empty: the listen address.
	Name string `toml:"name"`
	// Listen is "host:port" (TCP) or "sctp://host:port" (kernel SCTP).
	// Required.
	Listen transport.Addr `toml:"listen"`
	// Pool is the pool handle connections go to, in the escaped text form
	// of wire.PoolHandle. Required.
	Pool wire.PoolHandle `toml:"pool"`
	// Retries is how many other PEs are tried after the first one failed
	// (per client connection). Zero means no retry; omitted means 3.
	Retries *int `toml:"retries"`
	// ConnectTimeout bounds one connection attempt to a PE. Zero means 1 s.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// FailoverTimeout bounds all attempts of one client connection. Zero
	// means (Retries+1) × ConnectTimeout.
	FailoverTimeout Duration `toml:"failover_timeout"`
	// IdleTimeout closes a connection without traffic in either direction
	// for this long (measured per direction, so it fires between 1× and 2×
	// the value). Zero: no idle timeout.
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxConnections limits established connections; excess connections
	// are reset at once. Zero means 10000; negative: no limit.
	MaxConnections int `toml:"max_connections"`
	// ProxyProtocol sends a PROXY protocol header to the PE: "", "v1" or "v2".
	ProxyProtocol string `toml:"proxy_protocol"`
	// ReplayBuffer, in bytes, enables the replay buffer (see docs/proxy.md).
	// Zero: off.
	ReplayBuffer int `toml:"replay_buffer"`
	// FirstByteTimeout, with the replay buffer on, abandons a PE that has
	// not answered this long after the client's first bytes reached it
	// (a hung PE) and replays the buffered bytes to another PE. Zero: none.
	FirstByteTimeout Duration `toml:"first_byte_timeout"`
	// HedgeDelay: a connect to a PE still pending after this long starts
	// one to the next PE alongside it; the first to connect wins. Zero
	// means adaptive (the p99 of the pool's recent connect times, 5 to
	// 50 ms); negative: no hedging.
	HedgeDelay Duration `toml:"hedge_delay"`
	// Engine is the relay: "loop" (event loops over epoll; the default
	// where available: TCP listeners on Linux) or "goroutine" (the
	// portable relay, two goroutines per connection).
	Engine string `toml:"engine"`
	// Intercept is the service address ("192.0.2.10:80", "[2001:db8::1]:80")
	// whose connections an nftables rule redirects to this listener; they
	// go to Pool. Connections with an original destination that neither
	// Intercept nor InterceptPools names are reset. Empty: every
	// connection goes to Pool.
	Intercept string `toml:"intercept"`
	// InterceptPools maps more original destinations to pools
	// ("192.0.2.11:443" = "TLSPool").
	InterceptPools map[string]wire.PoolHandle `toml:"intercept_pools"`
	// TProxy sets IP_TRANSPARENT on the listening socket, for nftables
	// TPROXY rules (the listener then accepts connections to addresses it
	// does not own). Linux only; needs CAP_NET_ADMIN.
	TProxy bool `toml:"tproxy"`
	// TransparentSource connects to the PE from the client's address
	// (IP_TRANSPARENT), as HAProxy's "usesrc clientip": the PE sees the
	// client, and its answers must be routed back through the proxy
	// (docs/proxy.md). Linux, the loop engine, TCP PEs of the client's
	// address family; not with the replay buffer. Needs CAP_NET_ADMIN.
	TransparentSource bool `toml:"transparent_source"`
}

// Relay engines (ListenerConfig.Engine).
const (
	EngineLoop      = "loop"
	EngineGoroutine = "goroutine"
)

// DefaultDrainTimeout is the drain time of a zero DrainTimeout.
const DefaultDrainTimeout = 30 * time.Second

// DefaultAnnounceGroup is the ASAP announce group used when neither
// registrars nor announce_group are configured (RSPLIB's default).
const DefaultAnnounceGroup = "239.0.0.50:3863"

// Announces returns the group to listen on for Server Announces, or "".
func (c *Config) Announces() string {
	if c.AnnounceGroup != "" || len(c.Registrars) > 0 {
		return c.AnnounceGroup
	}
	return DefaultAnnounceGroup
}

// Label returns the listener's metrics label: Name, else the listen
// address in its short form ("127.0.0.1:8080", "sctp://10.0.0.1:8080").
func (l ListenerConfig) Label() string {
	if l.Name != "" {
		return l.Name
	}
	return l.Listen.ShortString()
}

// Attempts returns the connection attempts per client connection.
func (l ListenerConfig) Attempts() int {
	if l.Retries == nil {
		return 4
	}
	return *l.Retries + 1
}

// ParseConfig decodes a proxy.toml strictly: unknown keys are errors naming
// the key. It does not validate (flags may complete the file); call
// Validate, as New does.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("proxy config: unknown key(s): %s", strings.Join(keys, ", "))
	}
	return &c, nil
}

// LoadConfig reads and parses a proxy.toml file, or a directory of *.toml
// files merged as internal/confdir describes (one file per [[listener]],
// say; a key defined in two files is an error naming both). A file is not
// validated (flags may complete it); of a directory, the [[listener]]
// tables are validated at once, so that a problem names its file.
func LoadConfig(path string) (*Config, error) {
	src, err := confdir.Read(path, func(b []byte) error { _, err := ParseConfig(b); return err })
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(src.Data)
	if err != nil {
		return nil, src.Annotate(err)
	}
	if src.IsDir() {
		if err := confdir.Only(c.Validate(), "listener"); err != nil {
			return nil, src.Annotate(err)
		}
	}
	return c, nil
}

// cacheConfig is the configuration of the pool-user cache the proxy owns.
func (c *Config) cacheConfig() pucache.Config {
	return pucache.Config{
		Registrars:        c.Registrars,
		StaleTimeout:      c.Cache.StaleTimeout,
		RequestTimeout:    c.Cache.RequestTimeout,
		Items:             c.Cache.Items,
		AnnounceGroup:     c.Announces(),
		AnnounceInterface: c.AnnounceInterface,
	}
}

// Validate reports every problem of the configuration at once, each naming
// its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for i, r := range c.Registrars {
		if r.IsZero() {
			bad("registrars[%d]: empty address", i)
		}
	}
	if c.AnnounceGroup != "" {
		if _, _, err := net.SplitHostPort(c.AnnounceGroup); err != nil {
			bad("announce_group: %v", err)
		}
	}
	if c.Admin != "" {
		if _, _, err := net.SplitHostPort(c.Admin); err != nil {
			bad("admin: %v", err)
		}
	}
	if c.DrainTimeout < 0 {
		bad("drain_timeout: negative")
	}
	if c.Cache.StaleTimeout < 0 {
		bad("cache.stale_timeout: negative")
	}
	if c.Cache.RequestTimeout < 0 {
		bad("cache.request_timeout: negative")
	}
	if len(c.Listeners) == 0 {
		bad("listener: at least one [[listener]] is required")
	}
	seen := map[transport.Addr]int{}
	names := map[string]int{}
	for i, l := range c.Listeners {
		key := func(k string) string { return fmt.Sprintf("listener[%d].%s", i, k) }
		if l.Listen.IsZero() {
			bad("%s: required", key("listen"))
		} else if l.Listen.Scheme() == transport.SchemeTLS {
			bad("%s: %s: the proxy listens on tcp or sctp, not tls", key("listen"), l.Listen)
		} else if j, dup := seen[l.Listen]; dup {
			bad("%s: %q already used by listener[%d]", key("listen"), l.Listen.ShortString(), j)
		} else {
			seen[l.Listen] = i
		}
		if j, dup := names[l.Label()]; dup {
			bad("%s: %q already used by listener[%d]", key("name"), l.Label(), j)
		} else {
			names[l.Label()] = i
		}
		if l.Pool == "" {
			bad("%s: required", key("pool"))
		} else if len(l.Pool) > wire.MaxConfigPoolHandleLen {
			bad("%s: longer than %d bytes", key("pool"), wire.MaxConfigPoolHandleLen)
		}
		if l.Retries != nil && (*l.Retries < 0 || *l.Retries > 100) {
			bad("%s: %d not in 0..100", key("retries"), *l.Retries)
		}
		if l.ConnectTimeout < 0 {
			bad("%s: negative", key("connect_timeout"))
		}
		if l.FailoverTimeout < 0 {
			bad("%s: negative", key("failover_timeout"))
		}
		if l.IdleTimeout < 0 {
			bad("%s: negative", key("idle_timeout"))
		}
		switch l.ProxyProtocol {
		case "", "v1", "v2":
		default:
			bad("%s: %q is not \"\", \"v1\" or \"v2\"", key("proxy_protocol"), l.ProxyProtocol)
		}
		if l.ReplayBuffer < 0 || l.ReplayBuffer > 16<<20 {
			bad("%s: %d not in 0..16777216", key("replay_buffer"), l.ReplayBuffer)
		}
		if l.FirstByteTimeout < 0 {
			bad("%s: negative", key("first_byte_timeout"))
		} else if l.FirstByteTimeout > 0 && l.ReplayBuffer == 0 {
			bad("%s: needs replay_buffer (the request is replayed to another PE)", key("first_byte_timeout"))
		}
		switch l.Engine {
		case "", EngineLoop, EngineGoroutine:
		default:
			bad("%s: %q is not \"loop\" or \"goroutine\"", key("engine"), l.Engine)
		}
		if l.Intercept != "" {
			if _, err := netip.ParseAddrPort(l.Intercept); err != nil {
				bad("%s: %v", key("intercept"), err)
			}
		}
		for a, pool := range l.InterceptPools {
			if _, err := netip.ParseAddrPort(a); err != nil {
				bad("%s: %v", key("intercept_pools"), err)
			}
			if pool == "" || len(pool) > wire.MaxConfigPoolHandleLen {
				bad("%s: %q: pool handle empty or longer than %d bytes", key("intercept_pools"), a, wire.MaxConfigPoolHandleLen)
			}
		}
		if l.TProxy && l.Listen.Scheme() != transport.SchemeTCP {
			bad("%s: TPROXY needs a TCP listener", key("tproxy"))
		}
		if l.TransparentSource && (l.Listen.Scheme() != transport.SchemeTCP || l.Engine == EngineGoroutine || l.ReplayBuffer > 0) {
			bad("%s: needs a TCP listener on the loop engine, without replay_buffer", key("transparent_source"))
		}
	}
	return errors.Join(errs...)
}
