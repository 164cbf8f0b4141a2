package hostile

import (
	"bufio"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// world is the set of daemons and legitimate clients under attack.
type world struct {
	reg   *registrarProc
	asap  string      // the registrar's ASAP address used by legitimate clients
	tls   *tls.Config // client TLS for asap, if it is tls://
	pool  wire.PoolHandle
	peID  uint32
	pu    *asapClient // the legitimate pool user of the resolution probe
	echo  *echoServer
	agent *daemon    // pe-agent whose element is peID, if any
	proxy *proxyProc // proxy in front of pool, if any
}

const (
	unrelatedPool = wire.PoolHandle("Unrelated")
	unrelatedID   = 0x0badcafe
)

// newWorld starts a registrar with the given configuration, an echo
// backend and the unrelated PE (a well-behaved in-test PE, registered over
// its own connection), and connects the probing pool user.
func newWorld(t *testing.T, registrarConfig string) *world {
	t.Helper()
	w := &world{reg: startRegistrar(t, registrarConfig), pool: unrelatedPool, peID: unrelatedID, echo: startEcho(t)}
	w.asap = w.reg.addr(w.reg.asap, "tcp")
	registerPE(t, w.asap, nil, w.pool, w.peID, w.echo.port())
	w.connectPU(t)
	return w
}

func (w *world) connectPU(t *testing.T) {
	t.Helper()
	pu, err := dialASAP(w.asap, w.tls)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pu.close)
	w.pu = pu
	if err := resolvesTo(pu, w.pool, w.peID); err != nil {
		t.Fatal(err)
	}
}

// resolveProbe is the legitimate request measured during registrar
// attacks: one handle resolution of the unrelated pool over the pool
// user's established connection.
func (w *world) resolveProbe() error { return resolvesTo(w.pu, w.pool, w.peID) }

// proxyProbe is the legitimate request measured during proxy attacks: a
// new client connection through the proxy that gets one line echoed.
func (w *world) proxyProbe() error {
	c, err := net.DialTimeout("tcp", w.proxy.listen, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("through the proxy: %w", err)
	}
	if line != "ping\n" {
		return fmt.Errorf("through the proxy: got %q", line)
	}
	return nil
}

// intact fails the test unless every daemon of the world is alive, the
// unrelated PE resolves over a new connection, the pe-agent's element is
// registered and the proxy passes a connection. Each check gets a few
// seconds: an attack may leave work queued for a moment.
func (w *world) intact(t *testing.T) {
	t.Helper()
	for _, d := range []*daemon{w.reg.daemon, w.agent, w.proxyDaemon()} {
		if d != nil {
			d.alive(t)
		}
	}
	eventually(t, 10*time.Second, w.freshResolve)
	if w.agent != nil {
		eventually(t, 10*time.Second, func() error {
			if v := w.agent.metric(t, "rserpool_pe_registered"); v != 1 {
				return fmt.Errorf("pe-agent: rserpool_pe_registered = %v", v)
			}
			return nil
		})
	}
	if w.proxy != nil {
		eventually(t, 10*time.Second, w.proxyProbe)
	}
}

// freshResolve resolves the unrelated PE over a new connection.
func (w *world) freshResolve() error {
	cl, err := dialASAP(w.asap, w.tls)
	if err != nil {
		return err
	}
	defer cl.close()
	return resolvesTo(cl, w.pool, w.peID)
}

func (w *world) proxyDaemon() *daemon {
	if w.proxy == nil {
		return nil
	}
	return w.proxy.daemon
}

// eventually retries f until it succeeds or d has passed.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // polling a remote process's state: there is no event to wait for
	}
}

// rssSlackKB is how much a daemon's RSS may grow during one attack: far
// above what a bounded daemon needs (a few MiB), far below what an
// unbounded queue or table reaches under the floods of the suite.
const rssSlackKB = 256 * 1024

// attack is one attack on one daemon.
type attack struct {
	name   string
	unit   string       // what sent counts
	target *daemon      // whose RSS and log are measured
	probe  func() error // the legitimate request; nil: w.resolveProbe
	run    func(t *testing.T) (sent int64, outcome string)
}

// runAttack runs a against w as a subtest, measures it and asserts that
// the world is intact afterwards.
func (w *world) runAttack(t *testing.T, a attack) {
	t.Helper()
	t.Run(a.target.name+" "+a.name, func(t *testing.T) {
		probe := a.probe
		if probe == nil {
			probe = w.resolveProbe
		}
		before := a.target.rssKB(t)
		lw := a.target.logWindow()
		t0 := time.Now()
		p := startProber(20*time.Millisecond, probe)
		sent, outcome := a.run(t)
		p99, ok, failed, last := p.finish()
		secs := time.Since(t0).Seconds()
		w.intact(t)
		after := a.target.rssKB(t)
		lines, suppressed := lw.check(t)
		if after > before+rssSlackKB {
			t.Errorf("%s RSS grew from %d to %d KiB", a.target.name, before, after)
		}
		if ok == 0 {
			t.Errorf("no legitimate request succeeded during the attack (%d failed; last: %v)", failed, last)
		} else if failed > 0 {
			outcome += fmt.Sprintf("; %d legitimate requests failed (last: %v)", failed, last)
		}
		addRecord(record{Daemon: a.target.name, Attack: a.name, Sent: sent, Unit: a.unit,
			RSSBeforeKB: before, RSSAfterKB: after, P99ms: float64(p99.Microseconds()) / 1000,
			Probes: ok + failed, ProbeFails: failed, LogLines: lines, Suppressed: suppressed,
			Seconds: secs, Outcome: outcome})
		t.Logf("%s: %d %s in %.1f s; RSS %d -> %d KiB; p99 %v over %d probes (%d failed); log %d lines (%d held back); %s",
			a.name, sent, a.unit, secs, before, after, p99, ok+failed, failed, lines, suppressed, outcome)
	})
}

// ---- RSPLIB vectors ----

const vectorDir = "../../shared/testdata/rsplib-3.4/vectors"

// vector is one RSPLIB message capture.
type vector struct {
	name string
	ppid uint32 // 11 ASAP, 12 ENRP
	data []byte
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(vectorDir, "*.hex"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no RSPLIB vectors in %s: %v", vectorDir, err)
	}
	sort.Strings(files)
	var vs []vector
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data, err := hex.DecodeString(strings.Join(strings.Fields(string(b)), ""))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		v := vector{name: strings.TrimSuffix(filepath.Base(f), ".hex"), ppid: wire.PPIDASAP, data: data}
		if strings.HasPrefix(v.name, "enrp-") {
			v.ppid = wire.PPIDENRP
		}
		vs = append(vs, v)
	}
	return vs
}
