package registrar

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("../configs/registrar*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs/registrar*.toml: %v", err)
	}
	for _, f := range files {
		cfg, err := LoadConfig(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if cfg.ID != 0x1a2b3c4d || cfg.Timers.KeepAliveInterval != 5*time.Second || len(cfg.Pools) == 0 {
			t.Errorf("%s: unexpected values %+v", f, cfg)
		}
	}
}

func writeConfig(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "r.toml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       []string
	}{
		{"unknown key", "[asap]\nlisten=[\"tcp://127.0.0.1:1\"]\nlisen = 1\n", []string{"asap.lisen"}},
		{"unknown section", "[foo]\nbar=1\n", []string{"foo"}},
		{"bad duration", "[timers]\nkeepalive_interval = \"soon\"\n", []string{"keepalive_interval"}},
		{"unitless duration", "[timers]\nkeepalive_interval = 5\n", []string{"timers.keepalive_interval"}},
		{"bad id", "id = \"xyz\"\n", []string{"id"}},
		{"many problems at once", "[limits]\nmax_pools = 0\nmax_handle_length = 0\n[registration]\nallow=[\"10.0.0.0/33\"]\n",
			[]string{"limits.max_pools", "limits.max_handle_length", "registration.allow[0]"}},
		{"bad listen", "[asap]\nlisten = [\"udp://x:1\"]\n", []string{"asap.listen[0]"}},
		{"pool", "[[pool]]\nhandle=\"\"\nallow=[\"nope\"]\n", []string{"pool[0].handle", "pool[0].allow[0]"}},
		{"announce", "[announce]\nenabled=true\ngroup=\"10.0.0.1:3863\"\n", []string{"announce.group"}},
		{"bad handle escape", "[[pool]]\nhandle='x\\y'\n", []string{"pool", "handle", "bad escape"}},
		{"handle too long once unescaped", "[[pool]]\nhandle='" + strings.Repeat(`\xff`, 33) + "'\n", []string{"pool[0].handle"}},
		{"source caps", "[limits]\nmax_source_connections = 0\nmax_source_elements = -1\n",
			[]string{"limits.max_source_connections", "limits.max_source_elements"}},
		{"enrp allow", "[enrp]\nallow = [\"10.0.0.0/33\"]\n", []string{"enrp.allow[0]"}},
		{"enrp peer outside allow", "[enrp]\nallow = [\"10.0.0.0/8\"]\npeers = [\"tcp://192.0.2.1:9901\"]\n",
			[]string{"enrp.peers[0]", "outside enrp.allow"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, tc.toml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestPoolHandleEscapesInConfig(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "[[pool]]\nhandle = 'nul\\x00\\xff\\\\'\nallow = [\"127.0.0.0/8\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Pools[0].Handle; got != "nul\x00\xff\\" {
		t.Fatalf("handle = %x", string(got))
	}
}

func TestDefaultConfigValid(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Announce.Enabled || !cfg.Registration.RemoveOnConnectionLoss || !cfg.Registration.RequireAddressSubset ||
		cfg.Registration.UnreachableThreshold != 3 || cfg.Registration.ResolutionItems != 3 {
		t.Errorf("defaults differ from the documented ones: %+v", cfg)
	}
}

func TestENRPConfigErrors(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ENRP.Arbitration = "coin-toss"
	cfg.ENRP.PeerHeartbeat = -time.Second
	cfg.ENRP.Multicast.Enabled = true
	cfg.ENRP.Multicast.Group = "10.0.0.1:9901"
	err := cfg.Validate()
	for _, key := range []string{"enrp.arbitration", "enrp.peer_heartbeat", "enrp.multicast.group"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
}
