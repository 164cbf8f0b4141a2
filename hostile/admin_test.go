package hostile

import (
	"bytes"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

const agentPool = wire.PoolHandle("AgentPool")

// fullWorld is a world with a pe-agent (its element in agentPool, backed by
// the echo server) and a proxy in front of the unrelated pool.
func fullWorld(t *testing.T, sc scale, agentExtra, proxyExtra string) *world {
	t.Helper()
	w := newWorld(t, registrarTOML(sc.MaxConns, ""))
	w.agent = startPEAgent(t, w.asap, string(agentPool), w.echo.addr(), agentExtra)
	eventually(t, 10*time.Second, func() error {
		if v := w.agent.metric(t, "rserpool_pe_registered"); v != 1 {
			return fmt.Errorf("pe-agent not registered yet")
		}
		return nil
	})
	w.proxy = startProxy(t, w.asap, string(w.pool), sc.MaxConns, proxyExtra)
	eventually(t, 10*time.Second, w.proxyProbe)
	return w
}

// agentID returns the PE identifier of the pe-agent's element.
func (w *world) agentID(t *testing.T) uint32 {
	t.Helper()
	_, b := w.agent.get(t, "/status")
	var st []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &st); err != nil || len(st) != 1 {
		t.Fatalf("pe-agent /status %s: %v", b, err)
	}
	id, err := strconv.ParseUint(strings.TrimPrefix(st[0].ID, "0x"), 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(id)
}

// TestAdminHTTP attacks the admin HTTP endpoint of each daemon.
func TestAdminHTTP(t *testing.T) {
	sc := currentScale()
	w := fullWorld(t, sc, "", "")
	agentID := w.agentID(t)
	targets := []struct {
		d     *daemon
		paths []string
		probe func() error
	}{
		{w.reg.daemon, []string{"/metrics", "/healthz", "/handlespace"}, w.resolveProbe},
		{w.agent, []string{"/metrics", "/healthz", "/status"}, func() error { return resolvesTo(w.pu, agentPool, agentID) }},
		{w.proxy.daemon, []string{"/metrics", "/healthz", "/debug/pprof/", "/debug/pprof/goroutine?debug=2"}, w.proxyProbe},
	}
	for _, tg := range targets {
		w.runAttack(t, attack{name: "admin: slowloris, half an HTTP request", unit: "connections", target: tg.d, probe: tg.probe,
			run: func(t *testing.T) (int64, string) {
				return httpHold(t, tg.d, sc.Slowloris/2, sc.Hold, "GET /healthz HTTP/1.1\r\nHost: admin\r\nX-Slow: ")
			}})
		w.runAttack(t, attack{name: "admin: slow request bodies", unit: "connections", target: tg.d, probe: tg.probe,
			run: func(t *testing.T) (int64, string) {
				return httpHold(t, tg.d, sc.Slowloris/2, sc.Hold, "POST /healthz HTTP/1.1\r\nHost: admin\r\nContent-Length: 1000000\r\n\r\nslow")
			}})
		w.runAttack(t, attack{name: "admin: idle keep-alive connections", unit: "connections", target: tg.d, probe: tg.probe,
			run: func(t *testing.T) (int64, string) {
				return httpHold(t, tg.d, sc.Slowloris/2, sc.Hold, "GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
			}})
		w.runAttack(t, attack{name: "admin: garbage, oversized and misdirected requests", unit: "requests", target: tg.d, probe: tg.probe,
			run: func(t *testing.T) (int64, string) {
				return httpGarbage(t, tg.d, tg.paths, sc.HTTPRequests)
			}})
	}
}

// adminConnSlack is the most connections a daemon's admin server may hold at
// once (its listener's cap) plus slack for the daemon's other descriptors.
const adminConnSlack = 256 + 64

// httpHold opens n connections to d's admin server that each send
// request (half a header, a header and the start of a long body, or a
// whole request, after which the connection idles in keep-alive) and
// stall; it holds them for hold and checks that the daemon did not take a
// descriptor for each (which would let the admin port exhaust the process's
// descriptors and stop its protocol ports).
func httpHold(t *testing.T, d *daemon, n int, hold time.Duration, request string) (int64, string) {
	n = min(n, fdLimit()/2-200)
	fdsBefore := d.fds()
	conns := dialMany(t, d.admin, n, func(c net.Conn) { c.Write([]byte(request)) })
	defer closeAll(conns)
	time.Sleep(hold) // the attack is the stall itself
	fds := d.fds()
	open := countOpen(conns)
	if fds-fdsBefore > adminConnSlack {
		t.Errorf("%s holds %d more descriptors with %d admin connections open", d.name, fds-fdsBefore, len(conns))
	}
	return int64(len(conns)), fmt.Sprintf("%d connections: %d still open after %v; the daemon held %d more descriptors", len(conns), open, hold, fds-fdsBefore)
}

// httpGarbage sends n requests that are garbage, oversized or meant for
// another protocol, and counts how the daemon answered.
func httpGarbage(t *testing.T, d *daemon, paths []string, n int) (int64, string) {
	r := mrand.New(mrand.NewPCG(9, 9))
	hr, _ := (&wire.HandleResolution{PoolHandle: unrelatedPool}).AppendBinary(nil)
	big := strings.Repeat("A", 2<<20)
	kinds := []func() []byte{
		func() []byte { // random bytes
			b := make([]byte, 1+r.IntN(2000))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return append(b, "\r\n\r\n"...)
		},
		func() []byte { // ASAP on the admin port
			return append(appendDATA(append([]byte(nil), chunkINIT...), 0, wire.PPIDASAP, hr), "\r\n\r\n"...)
		},
		func() []byte {
			return []byte("GET " + paths[r.IntN(len(paths))] + " HTTP/1.1\r\nHost: a\r\nX-Big: " + big + "\r\n\r\n")
		},
		func() []byte { return []byte("GET /" + big[:1<<20] + " HTTP/1.1\r\nHost: a\r\n\r\n") },
		func() []byte {
			var b bytes.Buffer
			b.WriteString("GET " + paths[r.IntN(len(paths))] + " HTTP/1.1\r\nHost: a\r\n")
			for i := range 20000 {
				fmt.Fprintf(&b, "X-%d: y\r\n", i)
			}
			b.WriteString("\r\n")
			return b.Bytes()
		},
		func() []byte { return []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00") },
		func() []byte {
			return []byte("POST " + paths[r.IntN(len(paths))] + " HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nxx\r\n0\r\n\r\n")
		},
		func() []byte {
			return []byte("GET " + paths[r.IntN(len(paths))] + "?" + strings.Repeat("%ff%00", 2000) + " HTTP/1.1\r\nHost: a\r\n\r\n")
		},
		func() []byte {
			return []byte("GET " + paths[r.IntN(len(paths))] + " HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n")
		},
		func() []byte { return []byte("\r\n\r\n\r\nGET /../../../etc/passwd HTTP/1.0\r\n\r\n") },
	}
	var rmu sync.Mutex // guards r while requests are built
	request := func(i int64) []byte {
		rmu.Lock()
		defer rmu.Unlock()
		return kinds[i%int64(len(kinds))]()
	}
	var (
		mu       sync.Mutex
		statuses = map[string]int{}
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				s := httpOnce(d.admin, request(i)) // built here: 10% of them are 2 MiB
				mu.Lock()
				statuses[s]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	keys := make([]string, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, statuses[k]))
	}
	return int64(n), "answers: " + strings.Join(parts, ", ")
}

// httpOnce sends b on a new connection and returns the status line's code
// ("closed" when the daemon closed without one).
func httpOnce(addr string, b []byte) string {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "dial failed"
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the daemon may answer (and close) before reading it all
		defer wg.Done()
		c.Write(b)
	}()
	defer wg.Wait()
	defer c.Close()
	buf := make([]byte, 12)
	n, _ := c.Read(buf)
	if n >= 12 && bytes.HasPrefix(buf, []byte("HTTP/1.")) {
		return string(buf[9:12])
	}
	return "closed"
}
