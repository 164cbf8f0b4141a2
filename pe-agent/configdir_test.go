package peagent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExampleConfigDir(t *testing.T) {
	cfg, err := LoadConfig("../configs/pe-agent.d")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Elements) != 2 || cfg.Elements[0].Backend != "127.0.0.1:7001" || cfg.Elements[1].Backend != "127.0.0.1:7002" ||
		cfg.Admin != "127.0.0.1:9465" || len(cfg.Registrars) != 1 {
		t.Errorf("unexpected example config: %+v", cfg)
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConfigDirErrorsNameFiles(t *testing.T) {
	el := "[[element]]\npool = \"P\"\nbackend = \"127.0.0.1:%d\"\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"registrars twice", map[string]string{"a.toml": "registrars = [\"127.0.0.1:1\"]\n", "b.toml": "registrars = [\"127.0.0.1:2\"]\n"},
			[]string{"key registrars is defined in both", "a.toml", "b.toml"}},
		{"a table's key twice", map[string]string{"a.toml": "[admin]\nlisten = \"127.0.0.1:1\"\n", "b.toml": "[admin]\nlisten = \"127.0.0.1:2\"\n"},
			[]string{"key admin.listen is defined in both", "a.toml", "b.toml"}},
		{"unknown key", map[string]string{"a.toml": fmt.Sprintf(el, 1) + "wieght = 2\n"}, []string{"a.toml: ", "wieght"}},
		{"bad element in the second file", map[string]string{"a.toml": fmt.Sprintf(el, 1), "b.toml": "[[element]]\npool = \"P\"\n"},
			[]string{"b.toml: element[0].backend"}},
		{"same element in two files", map[string]string{"a.toml": fmt.Sprintf(el, 1), "b.toml": fmt.Sprintf(el, 1)},
			[]string{"b.toml: element[0]", "repeats element[0] of ", "a.toml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
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

// TestE2EAgentConfigDirSIGHUP: one file per element; SIGHUP registers an
// added file's element, deregisters a removed file's and leaves the
// others alone.
func TestE2EAgentConfigDirSIGHUP(t *testing.T) {
	needBinary(t, "registrar", "ctl resolve", "pe-agent")
	reg, _ := startRegistrar(t)
	b1, b2 := startBackend(t), startBackend(t)
	dir := t.TempDir()
	element := func(b *backend) string {
		return fmt.Sprintf("[[element]]\npool = \"DirPool\"\nbackend = %q\n%s\n", b.addr, healthTOML)
	}
	writeFiles(t, dir, map[string]string{
		"agent.toml": fmt.Sprintf("registrars = [%q]\ndrain = \"-1s\"\n", reg),
		"b1.toml":    element(b1),
	})
	agent := startProc(t, "pe-agent", "-config", dir)
	p := waitPool(t, reg, "DirPool", "b1", 10*time.Second, func(p []pe) bool { return len(p) == 1 && p[0].Port == b1.port })
	id1 := p[0].ID

	writeFiles(t, dir, map[string]string{"b2.toml": element(b2)})
	agent.cmd.Process.Signal(syscall.SIGHUP)
	p = waitPool(t, reg, "DirPool", "b1 and b2 after adding b2.toml", 10*time.Second, func(p []pe) bool { return len(p) == 2 })
	for _, x := range p {
		if x.Port == b1.port && x.ID != id1 {
			t.Errorf("element of an unchanged file re-created: ID %s → %s", id1, x.ID)
		}
	}
	if err := os.Remove(filepath.Join(dir, "b1.toml")); err != nil {
		t.Fatal(err)
	}
	agent.cmd.Process.Signal(syscall.SIGHUP)
	waitPool(t, reg, "DirPool", "only b2 after removing b1.toml", 10*time.Second, func(p []pe) bool { return len(p) == 1 && p[0].Port == b2.port })
}
