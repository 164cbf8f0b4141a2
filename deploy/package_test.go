package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	peagent "github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/proxy"
	"github.com/rserpool/rserpool/registrar"
)

// run runs a program and returns its combined output; a failure is fatal.
func run(t *testing.T, dir, prog string, args ...string) string {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebianPackage builds the package as `make deb` does (nfpm as a Go
// tool), checks its files, conffiles and maintainer scripts, and checks
// the unpacked tree: its default configuration loads, and systemd-analyze
// finds nothing to say about its units and rates their exposure as OK.
func TestDebianPackage(t *testing.T) {
	dpkgDeb := need(t, "dpkg-deb", "dpkg")
	bin := rserpoolBin(t)
	dir := t.TempDir()
	cmd := exec.Command("go", "tool", "-modfile=deploy/tools.mod", "nfpm", "package",
		"--config", "deploy/debian/nfpm.yaml", "--packager", "deb", "--target", dir+"/")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "VERSION=0.0.0~test", "RSERPOOL_BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nfpm: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 || filepath.Base(debs[0]) != "rserpool_0.0.0~test_amd64.deb" {
		t.Fatalf("packages: %v", debs)
	}
	deb := debs[0]

	if got := run(t, "", dpkgDeb, "-f", deb, "Package", "Version", "Architecture"); got != "Package: rserpool\nVersion: 0.0.0~test\nArchitecture: amd64\n" {
		t.Errorf("control fields:\n%s", got)
	}
	list := run(t, "", dpkgDeb, "-c", deb)
	for _, f := range []string{"./usr/bin/rserpool", "./lib/systemd/system/rserpool-registrar.service",
		"./lib/systemd/system/rserpool-pe-agent.service", "./lib/systemd/system/rserpool-proxy.service",
		"./usr/lib/sysusers.d/rserpool.conf", "./etc/rserpool/registrar.d/registrar.toml",
		"./etc/rserpool/pe-agent.d/agent.toml", "./etc/rserpool/proxy.d/proxy.toml",
		"./usr/share/rserpool/prometheus/rserpool.rules.yml", "./usr/share/rserpool/grafana/rserpool.json",
		"./usr/share/doc/rserpool/examples/registrar.d/pool-echo.toml", "./usr/share/doc/rserpool/README.md"} {
		if !strings.Contains(list, " "+f+"\n") {
			t.Errorf("the package lacks %s", f)
		}
	}
	if !regexp.MustCompile(`-rwxr-xr-x root/root .* \./usr/bin/rserpool\n`).MatchString(list) {
		t.Errorf("/usr/bin/rserpool is not an executable owned by root:\n%s", list)
	}

	ctl := filepath.Join(dir, "control")
	run(t, "", dpkgDeb, "-e", deb, ctl)
	conf, err := os.ReadFile(filepath.Join(ctl, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(conf))
	slices.Sort(got)
	want := []string{"/etc/default/rserpool-pe-agent", "/etc/default/rserpool-proxy", "/etc/default/rserpool-registrar",
		"/etc/rserpool/pe-agent.d/agent.toml", "/etc/rserpool/proxy.d/proxy.toml", "/etc/rserpool/registrar.d/registrar.toml"}
	if !slices.Equal(got, want) {
		t.Errorf("conffiles %v, want %v", got, want)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		run(t, "", "sh", "-n", filepath.Join(ctl, s))
	}

	root := filepath.Join(dir, "root")
	run(t, "", dpkgDeb, "-x", deb, root)
	t.Run("default configuration", func(t *testing.T) { checkPackagedConfig(t, root) })
	t.Run("systemd units", func(t *testing.T) { checkUnits(t, root) })
}

// checkPackagedConfig: the registrar's directory is ready to run; the
// pe-agent's and the proxy's load and ask for an element or a listener
// (their units are enabled by the operator once one is added).
func checkPackagedConfig(t *testing.T, root string) {
	etc := filepath.Join(root, "etc/rserpool")
	rc, err := registrar.LoadConfig(filepath.Join(etc, "registrar.d"))
	if err != nil {
		t.Fatal(err)
	}
	if rc.Admin.Listen != "127.0.0.1:9464" || len(rc.ASAP.Listen) != 1 || rc.ASAP.Listen[0] != "tcp://127.0.0.1:3863" {
		t.Errorf("registrar configuration: %+v", rc)
	}
	ac, err := peagent.LoadConfig(filepath.Join(etc, "pe-agent.d"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ac.Validate(); err == nil || !strings.Contains(err.Error(), "element") || ac.Admin != "127.0.0.1:9465" {
		t.Errorf("pe-agent configuration %+v: %v", ac, err)
	}
	pc, err := proxy.LoadConfig(filepath.Join(etc, "proxy.d"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.Validate(); err == nil || !strings.Contains(err.Error(), "listener") || pc.Admin != "127.0.0.1:9466" {
		t.Errorf("proxy configuration %+v: %v", pc, err)
	}
}

// checkUnits runs systemd-analyze on the units of the unpacked package,
// in root with the host's own units (targets) and /bin/kill added:
// verify must print nothing (it exits 0 even on unknown keys), security
// must rate each unit at most 2.0 ("OK").
func checkUnits(t *testing.T, root string) {
	sa := need(t, "systemd-analyze", "systemd")
	units := filepath.Join(root, "lib/systemd/system")
	hostUnits, _ := filepath.Glob("/lib/systemd/system/*")
	if len(hostUnits) == 0 {
		t.Fatal("no units in /lib/systemd/system to verify against")
	}
	run(t, "", "cp", append(append([]string{"-a", "-n"}, hostUnits...), units+"/")...)
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "", "cp", "/bin/kill", filepath.Join(root, "bin/kill"))
	exposure := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for _, d := range []string{"registrar", "pe-agent", "proxy"} {
		unit := "rserpool-" + d + ".service"
		text, err := os.ReadFile(filepath.Join(units, unit))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range []string{"Type=notify", "User=rserpool", "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM",
			"ExecStart=/usr/bin/rserpool " + d + " -config /etc/rserpool/" + d + ".d $RSERPOOL_ARGS",
			"NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
			"RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_UNIX"} {
			if !strings.Contains(string(text), "\n"+line+"\n") {
				t.Errorf("%s lacks %q", unit, line)
			}
		}
		if out := run(t, "", sa, "verify", "--root="+root, unit); out != "" {
			t.Errorf("systemd-analyze verify %s:\n%s", unit, out)
		}
		out := run(t, "", sa, "security", "--offline=yes", "--root="+root, "--threshold=20", unit)
		m := exposure.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("systemd-analyze security %s:\n%s", unit, out)
		}
		if v, _ := strconv.ParseFloat(m[1], 64); v > 2.0 {
			t.Errorf("%s: exposure %s, want at most 2.0:\n%s", unit, m[1], out)
		}
		t.Logf("%s: exposure %s", unit, m[1])
	}
}
