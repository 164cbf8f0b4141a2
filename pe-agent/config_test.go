package peagent

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

func TestExampleConfig(t *testing.T) {
	cfg, err := LoadConfig("../configs/pe-agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Elements) != 2 || cfg.Elements[0].Health.Interval != time.Second || cfg.Elements[0].Load.Source != LoadConnections {
		t.Errorf("unexpected example config: %+v", cfg)
	}
}

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
registrars = ["tcp://127.0.0.1:3863"]
reregistration_interval = "2s"
drain = "1s"
[admin]
listen = "127.0.0.1:0"
[[element]]
pool = "P"
backend = "127.0.0.1:7001"
policy = "least-used"
[element.health]
interval = "1s"
timeout = "500ms"
fall = 2
[element.load]
source = "fixed"
value = 25
`))
	if err != nil {
		t.Fatal(err)
	}
	want := AgentConfig{
		Registrars:             []transport.Addr{transport.MustParseAddr("tcp://127.0.0.1:3863")},
		ReregistrationInterval: 2 * time.Second,
		Drain:                  time.Second,
		Admin:                  "127.0.0.1:0",
		Elements: []ElementConfig{{
			Pool: "P", Backend: "127.0.0.1:7001", Policy: "least-used",
			Health: HealthConfig{Interval: time.Second, Timeout: 500 * time.Millisecond, Fall: 2},
			Load:   LoadReporting{Source: LoadFixed, Value: 25},
		}},
	}
	if d := cmp.Diff(want, cfg); d != "" {
		t.Errorf("config (-want +got):\n%s", d)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
	n := cfg.Normalize()
	if n.Elements[0].Health.Rise != DefaultRise || n.Elements[0].Load.FullScale != DefaultLoadFullScale || n.ResponseTimeout != DefaultResponseTimeout {
		t.Errorf("defaults not applied: %+v", n)
	}
}

func TestParseConfigStrict(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"unknown top key", `registrar = ["x"]`, "registrar"},
		{"bad registrar scheme", `registrars = ["udp://127.0.0.1:1"]`, `registrars`},
		{"registrar without port", `registrars = ["nohostport"]`, `missing port`},
		{"unknown element key", "[[element]]\npool = \"P\"\nbakend = \"x\"", "element.bakend"},
		{"unknown health key", "[[element]]\n[element.health]\nintervall = \"1s\"", "element.health.intervall"},
		{"bad duration", "[[element]]\n[element.health]\ninterval = \"soon\"", "interval"},
		{"wrong type", "[[element]]\nweight = \"heavy\"", "weight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.text))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseConfig error = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsEverything(t *testing.T) {
	cfg := AgentConfig{
		Registrars: []transport.Addr{{}, {}},
		Elements: []ElementConfig{
			{Pool: "", Backend: "0.0.0.0:80", Policy: "fastest"},
			{Pool: "P", Backend: "127.0.0.1:80", Health: HealthConfig{Rise: -1}, Load: LoadReporting{Source: "magic", Step: 2}},
			{Pool: "P", Backend: "127.0.0.1:80", Load: LoadReporting{Source: LoadCommand}},
		},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{
		"registrars[0]", "registrars[1]", "element[0].pool", "element[0].backend", "element[0].policy",
		"element[1].health.rise", "element[1].load.source", "element[1].load.step",
		"element[2].load.command", "element[2]: pool \"P\" backend",
	} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	if err := (AgentConfig{}).Validate(); err == nil || !strings.Contains(err.Error(), "registrars") || !strings.Contains(err.Error(), "element") {
		t.Errorf("empty config: %v", err)
	}
}

func TestPolicyFor(t *testing.T) {
	tests := []struct {
		ec   ElementConfig
		want wire.Policy
	}{
		{ElementConfig{Policy: "round-robin"}, wire.Policy{Type: wire.PolicyRoundRobin}},
		{ElementConfig{Policy: "weighted-round-robin", Weight: 7}, wire.Policy{Type: wire.PolicyWeightedRoundRobin, Weight: 7}},
		{ElementConfig{Policy: "least-used"}, wire.Policy{Type: wire.PolicyLeastUsed, Load: 9}},
		{ElementConfig{Policy: "least-used-degradation", LoadDegradation: 1}, wire.Policy{Type: wire.PolicyLeastUsedDegradation, Load: 9, LoadDegradation: 0xffffffff}},
		{ElementConfig{Policy: "priority", Priority: 3}, wire.Policy{Type: wire.PolicyPriority, Priority: 3}},
	}
	for _, tt := range tests {
		got, err := tt.ec.policyFor(9)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("%s: (-want +got)\n%s", tt.ec.Policy, d)
		}
	}
}

func TestParseConfigPoolHandleEscapes(t *testing.T) {
	cfg, err := ParseConfig([]byte("[[element]]\npool = 'a\\x00\\x7f\\\\'\nbackend = \"127.0.0.1:1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Elements[0].Pool; got != "a\x00\x7f\\" {
		t.Fatalf("pool = %x", string(got))
	}
	if _, err := ParseConfig([]byte("[[element]]\npool = 'a\\x0'\n")); err == nil || !strings.Contains(err.Error(), "bad escape") {
		t.Fatalf("bad escape: %v", err)
	}
}
