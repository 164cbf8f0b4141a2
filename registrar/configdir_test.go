package registrar

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigDir(t *testing.T) {
	cfg, err := LoadConfig("../configs/registrar.d")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pools) != 2 || cfg.Pools[0].Handle != "EchoPool" || cfg.Pools[1].Handle != "WebPool" ||
		cfg.Admin.Listen != "127.0.0.1:9464" || cfg.Limits != DefaultConfig().Limits {
		t.Errorf("unexpected example config: %+v", cfg)
	}
}

func TestConfigDirErrorsNameFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"key twice", map[string]string{"a.toml": "[limits]\nmax_pools = 5\n", "b.toml": "[limits]\nmax_pools = 6\n"},
			[]string{"key limits.max_pools is defined in both", "a.toml", "b.toml"}},
		{"bad value", map[string]string{"a.toml": "[limits]\nmax_pools = 0\n", "b.toml": "[[pool]]\nhandle = \"P\"\n"},
			[]string{"a.toml: limits.max_pools: must be at least 1"}},
		{"bad pool in the second file", map[string]string{"a.toml": "[[pool]]\nhandle = \"P\"\n", "b.toml": "[[pool]]\nhandle = \"Q\"\nallow = [\"x\"]\n"},
			[]string{"b.toml: pool[0].allow[0]"}},
		{"same pool in two files", map[string]string{"a.toml": "[[pool]]\nhandle = \"P\"\n", "b.toml": "[[pool]]\nhandle = \"P\"\n"},
			[]string{"b.toml: pool[0].handle", "appears twice"}},
		{"bad duration", map[string]string{"a.toml": "[timers]\nkeepalive_interval = 5\n"},
			[]string{"a.toml: ", "timers.keepalive_interval"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadConfig(dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
