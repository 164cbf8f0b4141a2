package hostile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// daemon is a started rserpool process. Cleanup kills it and waits.
type daemon struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // valid after exited is closed
	log    *logBuffer
	admin  string // admin HTTP address, "" when none
}

// logBuffer keeps a daemon's stderr.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func startDaemon(t *testing.T, name string, args ...string) *daemon {
	t.Helper()
	d := &daemon{name: name, cmd: exec.Command(rserpoolBin, args...), exited: make(chan struct{}), log: &logBuffer{}}
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.exited
		if t.Failed() {
			s := d.log.String()
			if len(s) > 20000 {
				s = "...\n" + s[len(s)-20000:]
			}
			t.Logf("%s stderr:\n%s", name, s)
		}
	})
	return d
}

// startConfigured runs `rserpool name` with the configuration toml and
// decodes its ready file into ready.
func startConfigured(t *testing.T, name, toml string, ready any) *daemon {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, name+".toml")
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	rf := filepath.Join(dir, "ready.json")
	d := startDaemon(t, name, name, "-config", cfg, "-ready-file", rf)
	d.readyFile(t, rf, ready)
	return d
}

// readyFile waits for the daemon's ready file and decodes it into v.
func (d *daemon) readyFile(t *testing.T, path string, v any) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatal(err)
			}
			return
		}
		select {
		case <-d.exited:
			t.Fatalf("%s exited before ready: %v\n%s", d.name, d.err, d.log.String())
		case <-time.After(20 * time.Millisecond): // the ready file is the readiness signal; poll for it
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s wrote no ready file", d.name)
		}
	}
}

// alive fails the test when the daemon has exited or its /healthz does not
// answer 200.
func (d *daemon) alive(t *testing.T) {
	t.Helper()
	select {
	case <-d.exited:
		t.Fatalf("%s died: %v\n%s", d.name, d.err, tail(d.log.String(), 4000))
	default:
	}
	if d.admin == "" {
		return
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + d.admin + "/healthz")
	if err != nil {
		t.Fatalf("%s /healthz: %v", d.name, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s /healthz: %s", d.name, resp.Status)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// rssKB returns the daemon's resident set size (VmRSS) in KiB.
func (d *daemon) rssKB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatalf("%s: no VmRSS", d.name)
	return 0
}

// fds returns how many file descriptors the daemon holds.
func (d *daemon) fds() int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
	return len(ents)
}

// get fetches an admin path and returns status and body.
func (d *daemon) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + d.admin + path)
	if err != nil {
		t.Fatalf("%s %s: %v", d.name, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatalf("%s %s: %v", d.name, path, err)
	}
	return resp.StatusCode, b
}

// metric returns the sum of every sample of a metric family in /metrics
// whose line starts with prefix (a name, optionally with labels).
func (d *daemon) metric(t *testing.T, prefix string) float64 {
	t.Helper()
	_, b := d.get(t, "/metrics")
	sum := 0.0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		if rest := line[len(prefix):]; !strings.HasSuffix(prefix, "}") && (rest == "" || (rest[0] != ' ' && rest[0] != '{')) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// logWindow counts what a daemon logged during an attack.
type logWindow struct {
	d     *daemon
	start int
	t0    time.Time
}

func (d *daemon) logWindow() logWindow { return logWindow{d, d.log.Len(), time.Now()} }

var (
	msgRe        = regexp.MustCompile(`msg="([^"]*)"|msg=(\S+)`)
	suppressedRe = regexp.MustCompile(`suppressed(?:_other)?=(\d+)`)
)

// check returns the number of lines logged since the window began and the
// sum of their suppressed counts, and fails when one message text was
// logged more than once per second of the window (plus one): the daemons
// rate-limit their logs (internal/ratelog).
func (w logWindow) check(t *testing.T) (lines, suppressed int) {
	t.Helper()
	s := w.d.log.String()[w.start:]
	secs := time.Since(w.t0).Seconds()
	per := map[string]int{}
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			continue
		}
		lines++
		if m := msgRe.FindStringSubmatch(line); m != nil {
			per[m[1]+m[2]]++
		}
		if m := suppressedRe.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			suppressed += n
		}
	}
	for msg, n := range per {
		if float64(n) > secs+2 {
			t.Errorf("%s logged %q %d times in %.1f s: not rate-limited", w.d.name, msg, n, secs)
		}
	}
	return lines, suppressed
}

// registrarProc is a started registrar.
type registrarProc struct {
	*daemon
	asap []string // with scheme
	enrp []string
	id   uint32 // ENRP server identifier
}

// asapAddr returns the first ASAP address with the given scheme.
func (r *registrarProc) addr(list []string, scheme string) string {
	for _, a := range list {
		if strings.HasPrefix(a, scheme+"://") {
			return a
		}
	}
	return ""
}

// startRegistrar runs a registrar with an ASAP TCP-mapping listener, an
// ENRP listener, an admin server and the given extra TOML, which may
// replace whole sections.
func startRegistrar(t *testing.T, toml string) *registrarProc {
	t.Helper()
	var r struct {
		ID    string   `json:"id"`
		ASAP  []string `json:"asap"`
		ENRP  []string `json:"enrp"`
		Admin string   `json:"admin"`
	}
	d := startConfigured(t, "registrar", toml, &r)
	d.admin = r.Admin
	rp := &registrarProc{daemon: d}
	id, err := strconv.ParseUint(strings.TrimPrefix(r.ID, "0x"), 16, 32)
	if err != nil {
		t.Fatalf("registrar id %q: %v", r.ID, err)
	}
	rp.id = uint32(id)
	for _, a := range r.ASAP {
		if !strings.Contains(a, "://") {
			a = "tcp://" + a
		}
		rp.asap = append(rp.asap, a)
	}
	for _, a := range r.ENRP {
		if !strings.Contains(a, "://") {
			a = "tcp://" + a
		}
		rp.enrp = append(rp.enrp, a)
	}
	return rp
}

// registrarTOML is the base configuration of the registrar under attack.
// Keep-alives are fast so that a PE lost to an attack is noticed within the
// attack; the registrar starts alone without waiting for a mentor.
func registrarTOML(maxConns int, extra string) string {
	return fmt.Sprintf(`
[asap]
listen = ["tcp://127.0.0.1:0"]
[enrp]
listen = ["tcp://127.0.0.1:0"]
mentor_discovery = "100ms"
[admin]
listen = "127.0.0.1:0"
[timers]
keepalive_interval = "1s"
keepalive_timeout = "3s"
[registration]
allow = []
[limits]
max_connections = %d
`, maxConns) + extra
}

// startPEAgent runs a pe-agent that registers backend in pool at the
// registrar; extra TOML is appended to its configuration.
func startPEAgent(t *testing.T, registrar, pool, backend, extra string) *daemon {
	t.Helper()
	toml := fmt.Sprintf(`registrars = [%q]
reregistration_interval = "2s"
response_timeout = "2s"
retry_interval = "200ms"
drain = "0s"
%s
[admin]
listen = "127.0.0.1:0"

[[element]]
pool = %q
backend = %q
[element.health]
interval = "500ms"
timeout = "500ms"
`, registrar, extra, pool, backend)
	var r struct {
		Admin string `json:"admin"`
	}
	d := startConfigured(t, "pe-agent", toml, &r)
	d.admin = r.Admin
	return d
}

// proxyProc is a started proxy.
type proxyProc struct {
	*daemon
	listen string // the listener's bound address
}

// startProxy runs a proxy with one listener for pool; extra TOML goes at
// the top level (before the tables).
func startProxy(t *testing.T, registrar, pool string, maxConns int, extra string) *proxyProc {
	t.Helper()
	toml := fmt.Sprintf(`registrars = [%q]
admin = "127.0.0.1:0"
drain_timeout = "1s"
%s
[cache]
stale_timeout = "2s"
request_timeout = "2s"

[[listener]]
name = "hostile"
listen = "127.0.0.1:0"
pool = %q
retries = 1
connect_timeout = "1s"
max_connections = %d
idle_timeout = "30s"
`, registrar, extra, pool, maxConns)
	var r struct {
		Listeners map[string]string `json:"listeners"`
		Admin     string            `json:"admin"`
	}
	d := startConfigured(t, "proxy", toml, &r)
	d.admin = r.Admin
	p := &proxyProc{daemon: d}
	for _, a := range r.Listeners {
		p.listen = a
	}
	if p.listen == "" {
		t.Fatal("proxy has no listener")
	}
	return p
}

// echoServer is a TCP backend that echoes every line; it stands for the
// legacy server behind a pool element.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go e.serve()
	t.Cleanup(e.close)
	return e
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

func (e *echoServer) port() uint16 { return uint16(e.ln.Addr().(*net.TCPAddr).Port) }

func (e *echoServer) serve() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		e.mu.Lock()
		e.conns[c] = struct{}{}
		e.mu.Unlock()
		e.wg.Add(1)
		go e.echo(c)
	}
}

func (e *echoServer) echo(c net.Conn) {
	defer e.wg.Done()
	io.Copy(c, c)
	c.Close()
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
}

func (e *echoServer) close() {
	e.ln.Close()
	e.mu.Lock()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}
