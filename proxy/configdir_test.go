package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rserpool/rserpool/proxy"
)

func TestExampleConfigDirIsValid(t *testing.T) {
	c, err := proxy.LoadConfig("../configs/proxy.d")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Listeners) != 2 || c.Listeners[0].Label() != "echo" || c.Listeners[1].Label() != "web" || c.Admin != "127.0.0.1:9466" {
		t.Fatalf("config = %+v", c)
	}
}

func writeDir(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConfigDirErrorsNameFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"key in two files", map[string]string{"a.toml": "admin = \"127.0.0.1:1\"\n", "b.toml": "admin = \"127.0.0.1:2\"\n"},
			[]string{"key admin is defined in both", "a.toml and ", "b.toml"}},
		{"unknown key", map[string]string{"a.toml": "[[listener]]\nlisten = \"127.0.0.1:1\"\npool = \"P\"\nretires = 3\n"},
			[]string{"a.toml: ", "listener.retires"}},
		{"bad listener in the second file", map[string]string{
			"a.toml": "[[listener]]\nlisten = \"127.0.0.1:1\"\npool = \"P\"\n",
			"b.toml": "[[listener]]\nlisten = \"127.0.0.1:2\"\npool = \"P\"\n[[listener]]\nlisten = \"127.0.0.1:3\"\n"},
			[]string{"b.toml: listener[1].pool: required"}},
		{"same listen address in two files", map[string]string{
			"a.toml": "[[listener]]\nlisten = \"127.0.0.1:1\"\npool = \"P\"\n",
			"b.toml": "[[listener]]\nlisten = \"127.0.0.1:1\"\npool = \"Q\"\n"},
			[]string{"b.toml: listener[0].listen", "listener[0] of ", "a.toml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeDir(t, dir, tc.files)
			_, err := proxy.LoadConfig(dir)
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

// TestConfigDirLeavesGlobalsToFlags: of a directory, only the listeners
// are checked when it is read; what flags may still supply is not.
func TestConfigDirLeavesGlobalsToFlags(t *testing.T) {
	dir := t.TempDir()
	writeDir(t, dir, map[string]string{"a.toml": "admin = \"127.0.0.1:1\"\n"})
	c, err := proxy.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Validate() == nil {
		t.Fatal("a configuration without listeners validates")
	}
}

// TestE2EConfigDirReload: the proxy runs from a directory with one file
// per listener; SIGHUP picks up an added, a changed and a removed file
// while a connection through the removed listener keeps relaying, and a
// directory that does not load leaves the running configuration alone.
func TestE2EConfigDirReload(t *testing.T) {
	reg, _ := startRegistrarProc(t)
	b1, _ := startBackendProc(t, "b1")
	b2, _ := startBackendProc(t, "b2")
	startAgent(t, []string{reg}, "P", b1, "round-robin", 1)
	startAgent(t, []string{reg}, "Q", b2, "round-robin", 1)
	waitPool(t, []string{reg}, "P", 1)
	waitPool(t, []string{reg}, "Q", 1)

	dir := t.TempDir()
	listener := func(listen, pool string) string {
		return fmt.Sprintf("[[listener]]\nlisten = %q\npool = %q\n", listen, pool)
	}
	writeDir(t, dir, map[string]string{
		"00-proxy.toml": fmt.Sprintf("registrars = [%q]\nadmin = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n", reg),
		"a.toml":        listener("127.0.0.1:0", "P"),
		"b.toml":        listener("127.0.0.2:0", "P"),
	})
	readyFile := filepath.Join(t.TempDir(), "ready.json")
	pp := &proxyProc{cfgPath: dir, readyFile: readyFile}
	pp.proc = startProc(t, rserpoolBin(t), []string{"proxy", "-config", dir, "-ready-file", readyFile, "-log-level", "warn"})
	pp.readReady(t)
	addrA, addrB := pp.Listeners["127.0.0.1:0"], pp.Listeners["127.0.0.2:0"]
	if addrA == "" || addrB == "" {
		t.Fatalf("listeners = %v", pp.Listeners)
	}
	if got, err := ask(t, addrB, "x"); err != nil || got != "b1:x" {
		t.Fatalf("listener B before the reload: %q %v", got, err)
	}

	c, err := net.Dial("tcp", addrA)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	exchange := func(what string) {
		t.Helper()
		io.WriteString(c, what+"\n")
		if s, err := r.ReadString('\n'); err != nil || s != "b1:"+what+"\n" {
			t.Fatalf("established connection through A, %s: %q %v", what, s, err)
		}
	}
	exchange("before")

	// Removed a.toml, changed b.toml (pool Q now), added c.toml.
	if err := os.Remove(filepath.Join(dir, "a.toml")); err != nil {
		t.Fatal(err)
	}
	writeDir(t, dir, map[string]string{"b.toml": listener("127.0.0.2:0", "Q"), "c.toml": listener("127.0.0.3:0", "P")})
	pp.Listeners = nil // readReady decodes into the map
	pp.cmd.Process.Signal(syscall.SIGHUP)
	pp.readReady(t)
	if _, ok := pp.Listeners["127.0.0.1:0"]; ok || pp.Listeners["127.0.0.2:0"] != addrB || pp.Listeners["127.0.0.3:0"] == "" {
		t.Fatalf("listeners after the reload = %v", pp.Listeners)
	}
	exchange("after-reload")
	if nc, err := net.Dial("tcp", addrA); err == nil {
		nc.Close()
		t.Fatal("the removed listener still accepts")
	}
	if got, err := ask(t, addrB, "y"); err != nil || got != "b2:y" {
		t.Fatalf("changed listener B: %q %v, want pool Q's b2", got, err)
	}
	if got, err := ask(t, pp.Listeners["127.0.0.3:0"], "z"); err != nil || got != "b1:z" {
		t.Fatalf("added listener C: %q %v", got, err)
	}

	// A file that defines admin again: the reload fails, nothing changes.
	writeDir(t, dir, map[string]string{"d.toml": "admin = \"127.0.0.1:1\"\n" + listener("127.0.0.4:0", "P")})
	pp.Listeners = nil // readReady decodes into the map
	pp.cmd.Process.Signal(syscall.SIGHUP)
	pp.readReady(t)
	if len(pp.Listeners) != 2 || pp.Listeners["127.0.0.4:0"] != "" {
		t.Fatalf("listeners after a failed reload = %v", pp.Listeners)
	}
	exchange("after-failed-reload")
}
