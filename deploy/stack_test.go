package deploy

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// stack is a small deployment on 127.0.0.1: two registrars peering over
// ENRP, a pe-agent with six backends in three pools (one per file of its
// configuration directory) and a proxy with one listener per pool (one per
// file too).
type stack struct {
	regs      []*registrarProc
	home      *registrarProc // the registrar the pe-agent registered at (its hunt takes the first to answer)
	agent     *proc
	agentAdm  string
	proxy     *proc
	proxyAdm  string
	listeners map[string]string // listener name → bound address
	backends  map[string]*backend
}

type registrarProc struct {
	*proc
	id, asap, enrp, admin string
}

// legacyPool is a pool handle that is not printable (NUL, 0xff).
const legacyPool = `Legacy\x00\xff`

// elements of the pe-agent: file name → pool, policy and fixed load
// (least-used picks echo-1 first: it is the one killed).
var elements = []struct{ name, pool, policy, extra string }{
	{"echo-1", "EchoPool", "least-used", "[element.load]\nsource = \"fixed\"\nvalue = 10\n"},
	{"echo-2", "EchoPool", "least-used", "[element.load]\nsource = \"fixed\"\nvalue = 35\n"},
	{"echo-3", "EchoPool", "least-used", "[element.load]\nsource = \"fixed\"\nvalue = 60\n"},
	{"web-1", "WebPool", "weighted-round-robin", "weight = 2\n"},
	{"web-2", "WebPool", "weighted-round-robin", "weight = 1\n"},
	{"legacy-1", legacyPool, "round-robin", ""},
}

func startStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{listeners: map[string]string{}, backends: map[string]*backend{}}
	dir := t.TempDir()
	for i, id := range []string{"0x1a2b3c4d", "0x2b3c4d5e"} {
		peers := ""
		if i > 0 {
			peers = fmt.Sprintf("peers = [%q]\n", s.regs[0].enrp)
		}
		rdir := fmt.Sprintf("%s/registrar-%d.d", dir, i+1)
		writeFiles(t, rdir, map[string]string{
			"registrar.toml": fmt.Sprintf("id = %q\n[asap]\nlisten = [\"tcp://127.0.0.1:0\"]\n[enrp]\nlisten = [\"tcp://127.0.0.1:0\"]\n%s"+
				"allow = [\"127.0.0.0/8\"]\nmentor_discovery = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n", id, peers),
			"pool-echo.toml": "[[pool]]\nhandle = \"EchoPool\"\nallow = [\"127.0.0.0/8\"]\n",
		})
		p, vars := startDaemon(t, fmt.Sprintf("registrar %d", i+1), "registrar", "-config", rdir, "-log-level", "warn")
		s.regs = append(s.regs, &registrarProc{proc: p, id: vars["ID"], asap: strings.Fields(vars["ASAP"])[0],
			enrp: strings.Fields(vars["ENRP"])[0], admin: vars["ADMIN"]})
	}
	regList := fmt.Sprintf("[%q, %q]", s.regs[0].asap, s.regs[1].asap)

	adir := dir + "/pe-agent.d"
	files := map[string]string{"agent.toml": "registrars = " + regList + "\nreregistration_interval = \"5s\"\n" +
		"drain = \"-1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"}
	for _, e := range elements {
		b := startBackend(t, e.name)
		s.backends[e.name] = b
		// extra is either keys of the element or its [element.load] table:
		// both fit before [element.health].
		files[e.name+".toml"] = fmt.Sprintf("[[element]]\npool = '%s'\nbackend = %q\npolicy = %q\n%s"+
			"[element.health]\ninterval = \"500ms\"\ntimeout = \"2s\"\nrise = 1\nfall = 2\n", e.pool, b.addr(), e.policy, e.extra)
	}
	writeFiles(t, adir, files)
	var vars map[string]string
	s.agent, vars = startDaemon(t, "pe-agent", "pe-agent", "-config", adir, "-log-level", "warn")
	s.agentAdm = vars["ADMIN"]

	// Every PE registered and replicated to both registrars.
	for _, r := range s.regs {
		eventually(t, 30*time.Second, "6 PEs at registrar "+r.id, func() error {
			var hs struct{ Elements int }
			if err := getJSON("http://"+r.admin+"/handlespace", &hs); err != nil {
				return err
			}
			if hs.Elements != len(elements) {
				return fmt.Errorf("%d PEs", hs.Elements)
			}
			return nil
		})
	}

	var status []struct{ Home string }
	eventually(t, 10*time.Second, "home registrar known", func() error {
		if err := getJSON("http://"+s.agentAdm+"/status", &status); err != nil {
			return err
		}
		for _, r := range s.regs {
			if len(status) > 0 && status[0].Home == r.id {
				s.home = r
				return nil
			}
		}
		return fmt.Errorf("status %+v", status)
	})

	pdir := dir + "/proxy.d"
	writeFiles(t, pdir, map[string]string{
		"proxy.toml": "registrars = " + regList + "\nadmin = \"127.0.0.1:0\"\ndrain_timeout = \"2s\"\n" +
			"[cache]\nstale_timeout = \"2s\"\n",
		"echo.toml":   "[[listener]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\npool = \"EchoPool\"\nconnect_timeout = \"500ms\"\n",
		"web.toml":    "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.2:0\"\npool = \"WebPool\"\n",
		"legacy.toml": "[[listener]]\nname = \"legacy\"\nlisten = \"127.0.0.3:0\"\npool = '" + legacyPool + "'\n",
	})
	s.proxy, vars = startDaemon(t, "proxy", "proxy", "-config", pdir, "-log-level", "warn")
	s.proxyAdm = vars["ADMIN"]
	names := map[string]string{"127.0.0.1:0": "echo", "127.0.0.2:0": "web", "127.0.0.3:0": "legacy"}
	for _, pair := range strings.Fields(vars["LISTENERS"]) {
		listen, bound, _ := strings.Cut(pair, "=")
		s.listeners[names[listen]] = bound
	}
	if len(s.listeners) != 3 {
		t.Fatalf("proxy listeners: %q", vars["LISTENERS"])
	}
	return s
}

// traffic makes rounds of one connection per listener, gap apart, and
// returns how many failed (bounded: rounds × 3 connections).
func (s *stack) traffic(rounds int, gap time.Duration) (failed int, last error) {
	for range rounds {
		for _, name := range []string{"echo", "web", "legacy"} {
			if _, err := ask(s.listeners[name], "ping"); err != nil {
				failed++
				last = err
			}
		}
		time.Sleep(gap)
	}
	return failed, last
}

// poolSize returns the PEs of pool at registrar r.
func (r *registrarProc) poolSize(pool string) (int, error) {
	var hs struct {
		Pools []struct {
			Handle   string
			Elements []struct{ ID string }
		}
	}
	if err := getJSON("http://"+r.admin+"/handlespace", &hs); err != nil {
		return 0, err
	}
	for _, p := range hs.Pools {
		if p.Handle == pool {
			return len(p.Elements), nil
		}
	}
	return 0, nil
}

// hold opens a connection through a listener and keeps it open until the
// test ends (an active connection on the proxy's page).
func (s *stack) hold(t *testing.T, listener string) {
	t.Helper()
	c, err := net.Dial("tcp", s.listeners[listener])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("held\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Time{})
}
