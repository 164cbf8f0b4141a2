package peagent

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
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Defaults applied by AgentConfig.Normalize (and so by NewAgent) to zero fields.
const (
	DefaultReregistrationInterval = 30 * time.Second
	DefaultResponseTimeout        = 3 * time.Second
	DefaultConnectTimeout         = 5 * time.Second
	DefaultRetryInterval          = 2 * time.Second
	DefaultHealthInterval         = time.Second
	DefaultRebalanceAfter         = 30 * time.Second
	DefaultHealthTimeout          = time.Second
	DefaultRise                   = 2
	DefaultFall                   = 3
	DefaultLoadFullScale          = 100
	DefaultLoadStep               = 0.05
	DefaultLoadMinInterval        = 5 * time.Second
	DefaultDrain                  = 5 * time.Second
	// DefaultAnnounceTTL is T7-ENRPoutdate: how long an address heard in
	// an ASAP Server Announce stays in the hunt list without being heard
	// again.
	DefaultAnnounceTTL = 5 * time.Second
)

// Duration is a time.Duration that TOML reads from a string such as "1.5s".
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats the duration as Go does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// AgentConfig configures an Agent: the registrars, the elements and the
// shared timers. Load one with LoadConfig or fill it in Go; zero fields take
// the documented defaults (Normalize).
type AgentConfig struct {
	// Registrars is the static registrar list ("tcp://h:p", "sctp://h:p",
	// "tls://h:p", or "h:p" for tcp), tried in order during a server hunt.
	// Required unless Announce.Group is set.
	Registrars []transport.Addr `toml:"registrars"`
	// Announce configures listening for ASAP Server Announces; off unless
	// Group is set. Announced registrars are tried after the static list.
	Announce AnnounceConfig `toml:"-"`
	// ReregistrationInterval is T4: every element re-registers this often and
	// sends Registration Life = 3 × this value in milliseconds. Zero means 30 s.
	ReregistrationInterval time.Duration `toml:"-"`
	// ResponseTimeout is T2/T3: how long to wait for a registrar's answer
	// before hunting for another one. Zero means 3 s.
	ResponseTimeout time.Duration `toml:"-"`
	// ConnectTimeout bounds one connection attempt to a registrar. Zero means 5 s.
	ConnectTimeout time.Duration `toml:"-"`
	// RetryInterval is the pause after a failed server hunt or a rejected
	// registration; it doubles up to 30 s. Zero means 2 s.
	RetryInterval time.Duration `toml:"-"`
	// RebalanceAfter is how long the first registrar of Registrars must
	// have answered the agent's checks, while the agent is connected to
	// another one (it failed or was down at start), before the agent moves
	// back to it and registers its elements there; a random part of up to
	// half of it is added per agent, so that a returning registrar does not
	// get all its PEs back at once. List each agent's nearest registrar
	// first to spread PEs over a registrar set. Zero means 30 s; negative
	// means never (the agent stays where its hunt found a registrar). Set
	// at start (a reload keeps it).
	RebalanceAfter time.Duration `toml:"-"`
	// Drain is how long `rserpool pe-agent` waits after deregistering on
	// SIGTERM before it exits, so that connections in flight finish. Zero
	// means 5 s; negative means no wait.
	Drain time.Duration `toml:"-"`
	// Admin is the listen address of the admin HTTP server (/metrics,
	// /healthz); empty means none.
	Admin string `toml:"-"`
	// Elements are the pool elements, one per pool and backend.
	Elements []ElementConfig `toml:"-"`
}

// AnnounceConfig configures listening for ASAP Server Announces.
type AnnounceConfig struct {
	// Group is the multicast group and port, e.g. "239.0.0.50:3863"
	// (RSPLIB's default). Empty means announces are not heard.
	Group string
	// Interface is the interface to join the group on; "" = default.
	Interface string
	// TTL is T7: an announced address is dropped when not heard again for
	// this long. Zero means 5 s.
	TTL time.Duration
}

// ElementConfig is one backend registered into one pool.
type ElementConfig struct {
	// Pool is the pool handle: any bytes, 1 to wire.MaxConfigPoolHandleLen of
	// them (registrars have their own limit: RSPLIB's and ours by default
	// is 32 bytes). In TOML and on the command line it is written in the
	// escaped form of wire.PoolHandle.
	Pool wire.PoolHandle
	// Backend is the real server's "host:port"; a host name is resolved once
	// when the element is built. Its address and port become the PE's user
	// transport. Required.
	Backend string
	// Transport is the user transport protocol: "tcp" (default) or "sctp".
	Transport string
	// Policy is a policy name (round-robin, weighted-round-robin, random,
	// weighted-random, priority, least-used, least-used-degradation,
	// priority-least-used, randomized-least-used). Empty means round-robin.
	Policy string
	// Weight is the policy weight (weighted policies). Zero means 1.
	Weight uint32
	// Priority is the policy priority (priority policies).
	Priority uint32
	// LoadDegradation is the Load Degradation, a fraction 0..1 of full load.
	LoadDegradation float64
	// ID is the PE identifier; zero means random.
	ID uint32
	// Health configures the backend health check.
	Health HealthConfig
	// Load configures load reporting (Least-Used family only).
	Load LoadReporting
}

// HealthConfig configures the health check of one backend.
type HealthConfig struct {
	// Disable turns the check off: the backend counts as always healthy.
	Disable bool
	// Interval between checks. Zero means 2 s.
	Interval time.Duration
	// Timeout bounds one check (connect, exchange, command). Zero means 1 s.
	Timeout time.Duration
	// Rise is the number of consecutive successes that mark a down backend
	// up. Zero means 2.
	Rise int
	// Fall is the number of consecutive failures that mark an up backend
	// down. Zero means 3.
	Fall int
	// Send is written after connecting (optional).
	Send string
	// Expect must appear in what the backend answers (optional; read until
	// it is seen, the timeout or EOF).
	Expect string
	// Command, if set, replaces the TCP check: it runs through "/bin/sh -c"
	// and exit status 0 means healthy.
	Command string
}

// LoadSource names where the load value comes from.
type LoadSource string

const (
	LoadNone        LoadSource = ""            // no load reporting (load stays 0)
	LoadConnections LoadSource = "connections" // established TCP connections to the backend port
	LoadCommand     LoadSource = "command"     // a program that prints a number
	LoadFixed       LoadSource = "fixed"       // Value
)

// LoadReporting configures load reporting for one element.
type LoadReporting struct {
	// Source is "", "connections", "command" or "fixed".
	Source LoadSource
	// Command is run through "/bin/sh -c" for Source "command"; it prints one number.
	Command string
	// Value is the raw value for Source "fixed".
	Value float64
	// FullScale is the raw value that means 100 % load (0xFFFFFFFF); larger
	// values saturate. Zero means 100.
	FullScale float64
	// Step is the smallest change, as a fraction of full load (0..1), that
	// triggers a re-registration. Zero means 0.05.
	Step float64
	// Interval between load samples. Zero means the health interval.
	Interval time.Duration
	// MinInterval is the shortest time between two load-triggered
	// re-registrations. Zero means 5 s; negative means no limit.
	MinInterval time.Duration
}

// fileConfig mirrors the TOML file layout.
type fileConfig struct {
	Registrars             []transport.Addr `toml:"registrars"`
	ReregistrationInterval Duration         `toml:"reregistration_interval"`
	ResponseTimeout        Duration         `toml:"response_timeout"`
	ConnectTimeout         Duration         `toml:"connect_timeout"`
	RetryInterval          Duration         `toml:"retry_interval"`
	RebalanceAfter         Duration         `toml:"rebalance_after"`
	Drain                  Duration         `toml:"drain"`
	Admin                  fileAdmin        `toml:"admin"`
	Announce               fileAnnounce     `toml:"announce"`
	Element                []fileElement    `toml:"element"`
}

type fileAnnounce struct {
	Group     string   `toml:"group"`
	Interface string   `toml:"interface"`
	TTL       Duration `toml:"ttl"`
}

type fileAdmin struct {
	Listen string `toml:"listen"`
}

type fileElement struct {
	Pool            wire.PoolHandle `toml:"pool"`
	Backend         string          `toml:"backend"`
	Transport       string          `toml:"transport"`
	Policy          string          `toml:"policy"`
	Weight          uint32          `toml:"weight"`
	Priority        uint32          `toml:"priority"`
	LoadDegradation float64         `toml:"load_degradation"`
	ID              uint32          `toml:"id"`
	Health          fileHealth      `toml:"health"`
	Load            fileLoad        `toml:"load"`
}

type fileHealth struct {
	Disable  bool     `toml:"disable"`
	Interval Duration `toml:"interval"`
	Timeout  Duration `toml:"timeout"`
	Rise     int      `toml:"rise"`
	Fall     int      `toml:"fall"`
	Send     string   `toml:"send"`
	Expect   string   `toml:"expect"`
	Command  string   `toml:"command"`
}

type fileLoad struct {
	Source      string   `toml:"source"`
	Command     string   `toml:"command"`
	Value       float64  `toml:"value"`
	FullScale   float64  `toml:"full_scale"`
	Step        float64  `toml:"step"`
	Interval    Duration `toml:"interval"`
	MinInterval Duration `toml:"min_interval"`
}

// LoadConfig reads and strictly decodes a TOML file, or a directory of
// *.toml files merged as internal/confdir describes (one file per
// [[element]], say; a key defined in two files is an error naming both):
// unknown keys and values of the wrong type are errors naming the key and
// the file. A file's result is not validated; call Validate (after
// applying flag overrides). Of a directory, the [[element]] tables are
// validated at once, so that a problem names its file.
func LoadConfig(path string) (AgentConfig, error) {
	src, err := confdir.Read(path, func(b []byte) error { _, err := ParseConfig(b); return err })
	if err != nil {
		return AgentConfig{}, err
	}
	cfg, err := ParseConfig(src.Data)
	if err != nil {
		return AgentConfig{}, src.Annotate(err)
	}
	if src.IsDir() {
		if err := confdir.Only(cfg.Validate(), "element"); err != nil {
			return AgentConfig{}, src.Annotate(err)
		}
	}
	return cfg, nil
}

// ParseConfig decodes TOML text like LoadConfig.
func ParseConfig(b []byte) (AgentConfig, error) {
	var fc fileConfig
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&fc)
	if err != nil {
		return AgentConfig{}, fmt.Errorf("pe-agent config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return AgentConfig{}, fmt.Errorf("pe-agent config: unknown keys: %s", strings.Join(keys, ", "))
	}
	cfg := AgentConfig{
		Registrars:             fc.Registrars,
		ReregistrationInterval: time.Duration(fc.ReregistrationInterval),
		ResponseTimeout:        time.Duration(fc.ResponseTimeout),
		ConnectTimeout:         time.Duration(fc.ConnectTimeout),
		RetryInterval:          time.Duration(fc.RetryInterval),
		RebalanceAfter:         time.Duration(fc.RebalanceAfter),
		Drain:                  time.Duration(fc.Drain),
		Admin:                  fc.Admin.Listen,
		Announce: AnnounceConfig{Group: fc.Announce.Group, Interface: fc.Announce.Interface,
			TTL: time.Duration(fc.Announce.TTL)},
	}
	for _, e := range fc.Element {
		cfg.Elements = append(cfg.Elements, ElementConfig{
			Pool: e.Pool, Backend: e.Backend, Transport: e.Transport, Policy: e.Policy,
			Weight: e.Weight, Priority: e.Priority, LoadDegradation: e.LoadDegradation, ID: e.ID,
			Health: HealthConfig{
				Disable: e.Health.Disable, Interval: time.Duration(e.Health.Interval),
				Timeout: time.Duration(e.Health.Timeout), Rise: e.Health.Rise, Fall: e.Health.Fall,
				Send: e.Health.Send, Expect: e.Health.Expect, Command: e.Health.Command,
			},
			Load: LoadReporting{
				Source: LoadSource(e.Load.Source), Command: e.Load.Command, Value: e.Load.Value,
				FullScale: e.Load.FullScale, Step: e.Load.Step, Interval: time.Duration(e.Load.Interval),
				MinInterval: time.Duration(e.Load.MinInterval),
			},
		})
	}
	return cfg, nil
}

// Normalize returns a copy with every zero field set to its default.
func (c AgentConfig) Normalize() AgentConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ReregistrationInterval, DefaultReregistrationInterval)
	def(&c.ResponseTimeout, DefaultResponseTimeout)
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.RetryInterval, DefaultRetryInterval)
	def(&c.RebalanceAfter, DefaultRebalanceAfter)
	def(&c.Drain, DefaultDrain)
	els := make([]ElementConfig, len(c.Elements))
	for i, e := range c.Elements {
		els[i] = e.Normalize()
	}
	c.Elements = els
	return c
}

// Normalize returns a copy of e with every zero field set to its default.
func (e ElementConfig) Normalize() ElementConfig {
	if e.Transport == "" {
		e.Transport = "tcp"
	}
	if e.Policy == "" {
		e.Policy = "round-robin"
	}
	if e.Weight == 0 {
		e.Weight = 1
	}
	h := &e.Health
	if h.Interval == 0 {
		h.Interval = DefaultHealthInterval
	}
	if h.Timeout == 0 {
		h.Timeout = DefaultHealthTimeout
	}
	if h.Rise == 0 {
		h.Rise = DefaultRise
	}
	if h.Fall == 0 {
		h.Fall = DefaultFall
	}
	l := &e.Load
	if l.FullScale == 0 {
		l.FullScale = DefaultLoadFullScale
	}
	if l.Step == 0 {
		l.Step = DefaultLoadStep
	}
	if l.Interval == 0 {
		l.Interval = h.Interval
	}
	if l.MinInterval == 0 {
		l.MinInterval = DefaultLoadMinInterval
	}
	return e
}

// Validate reports every problem of c (after Normalize) at once, each naming
// its key.
func (c AgentConfig) Validate() error {
	c = c.Normalize()
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(c.Registrars) == 0 && c.Announce.Group == "" {
		bad("registrars: at least one registrar address is required (or announce.group)")
	}
	if c.Announce.Group != "" {
		if _, _, err := net.SplitHostPort(c.Announce.Group); err != nil {
			bad("announce.group: %v", err)
		}
	}
	if c.Announce.TTL < 0 {
		bad("announce.ttl: must be positive, got %v", c.Announce.TTL)
	}
	for i, r := range c.Registrars {
		if r.IsZero() {
			bad("registrars[%d]: empty address", i)
		}
	}
	for name, d := range map[string]time.Duration{
		"reregistration_interval": c.ReregistrationInterval, "response_timeout": c.ResponseTimeout,
		"connect_timeout": c.ConnectTimeout, "retry_interval": c.RetryInterval,
	} {
		if d < 0 {
			bad("%s: must be positive, got %v", name, d)
		}
	}
	if c.ReregistrationInterval > 0 && c.ReregistrationInterval*3 > time.Duration(0xfffffffe)*time.Millisecond {
		bad("reregistration_interval: %v is too long (registration life is 3 × interval in ms, u32)", c.ReregistrationInterval)
	}
	if c.Admin != "" {
		if _, _, err := net.SplitHostPort(c.Admin); err != nil {
			bad("admin.listen: %v", err)
		}
	}
	if len(c.Elements) == 0 {
		bad("element: at least one [[element]] is required")
	}
	type poolBackend struct {
		pool    wire.PoolHandle
		backend string
	}
	seen := map[poolBackend]int{}
	for i, e := range c.Elements {
		for _, err := range e.problems() {
			bad("element[%d].%v", i, err)
		}
		k := poolBackend{e.Pool, e.Backend}
		if j, dup := seen[k]; dup {
			bad("element[%d]: pool %q backend %q repeats element[%d]", i, e.Pool, e.Backend, j)
		}
		seen[k] = i
	}
	return errors.Join(errs...)
}

// problems lists the errors of one normalized element, each starting with its key.
func (e ElementConfig) problems() []error {
	e = e.Normalize()
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if e.Pool == "" {
		bad("pool: required")
	} else if len(e.Pool) > wire.MaxConfigPoolHandleLen {
		bad("pool: %d bytes, at most %d", len(e.Pool), wire.MaxConfigPoolHandleLen)
	}
	if e.Backend == "" {
		bad("backend: required")
	} else if _, err := resolveBackend(e.Backend); err != nil {
		bad("backend: %v", err)
	}
	if e.Transport != "tcp" && e.Transport != "sctp" {
		bad("transport: %q is not tcp or sctp", e.Transport)
	}
	if _, err := ParsePolicyName(e.Policy); err != nil {
		bad("policy: %v", err)
	}
	if e.LoadDegradation < 0 || e.LoadDegradation > 1 {
		bad("load_degradation: %v is not within 0..1", e.LoadDegradation)
	}
	h := e.Health
	if h.Interval < 0 {
		bad("health.interval: must be positive, got %v", h.Interval)
	}
	if h.Timeout < 0 {
		bad("health.timeout: must be positive, got %v", h.Timeout)
	}
	if h.Rise < 0 {
		bad("health.rise: must be positive, got %d", h.Rise)
	}
	if h.Fall < 0 {
		bad("health.fall: must be positive, got %d", h.Fall)
	}
	if h.Expect != "" && h.Command != "" {
		bad("health.expect: not used together with health.command")
	}
	l := e.Load
	switch l.Source {
	case LoadNone, LoadConnections:
	case LoadCommand:
		if l.Command == "" {
			bad("load.command: required when load.source = \"command\"")
		}
	case LoadFixed:
		if l.Value < 0 {
			bad("load.value: must not be negative, got %v", l.Value)
		}
	default:
		bad("load.source: %q is not connections, command or fixed", l.Source)
	}
	if l.FullScale < 0 {
		bad("load.full_scale: must be positive, got %v", l.FullScale)
	}
	if l.Step < 0 || l.Step > 1 {
		bad("load.step: %v is not within 0..1", l.Step)
	}
	if l.Interval < 0 {
		bad("load.interval: must be positive, got %v", l.Interval)
	}
	return errs
}

// resolveBackend parses "host:port" and resolves the host to one address.
func resolveBackend(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", port)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, lerr := net.DefaultResolver.LookupNetIP(contextBackground(), "ip", host)
		if lerr != nil || len(ips) == 0 {
			return netip.AddrPort{}, fmt.Errorf("cannot resolve %q: %v", host, lerr)
		}
		ip = ips[0]
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("%s: an unspecified address cannot be registered", s)
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// ParsePolicyName maps a policy name (DESIGN.md, plus the RSPLIB
// extensions known to wire) to its type; types without a wire encoding are
// refused.
func ParsePolicyName(name string) (wire.PolicyType, error) {
	t, err := wire.ParsePolicyName(name)
	if err != nil {
		return 0, err
	}
	if !t.Known() {
		return 0, fmt.Errorf("policy %q has no wire encoding", name)
	}
	return t, nil
}

// policyValues tells which value fields a policy type carries.
func policyValues(t wire.PolicyType) (weight, priority, load, degradation bool) {
	switch t {
	case wire.PolicyWeightedRoundRobin, wire.PolicyWeightedRandom, wire.PolicyWeightedRandomDPF:
		weight = true
	case wire.PolicyPriority:
		priority = true
	case wire.PolicyLeastUsed, wire.PolicyRandomizedLeastUsed, wire.PolicyLeastUsedDPF:
		load = true
	case wire.PolicyLeastUsedDegradation, wire.PolicyPriorityLeastUsed, wire.PolicyRandomizedPriorityLeastUsed,
		wire.PolicyRandomizedLeastUsedDegr, wire.PolicyPriorityLeastUsedDegr, wire.PolicyRandomizedPriorityLUDegr,
		wire.PolicyLeastUsedDegradationDPF:
		load, degradation = true, true
	}
	return
}

// usesLoad reports whether the policy carries a Load value.
func usesLoad(t wire.PolicyType) bool {
	_, _, load, _ := policyValues(t)
	return load
}

// policyFor builds the wire policy of an element with the given load.
func (e ElementConfig) policyFor(load uint32) (wire.Policy, error) {
	t, err := ParsePolicyName(e.Policy)
	if err != nil {
		return wire.Policy{}, err
	}
	p := wire.Policy{Type: t}
	w, pr, l, d := policyValues(t)
	if w {
		p.Weight = max(e.Weight, 1)
	}
	if pr {
		p.Priority = e.Priority
	}
	if l {
		p.Load = load
	}
	if d {
		p.LoadDegradation = scaleFraction(e.LoadDegradation)
	}
	return p, nil
}
