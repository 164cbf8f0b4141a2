package registrar

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// rawClient speaks just enough of the TCP mapping over a plain TCP
// connection from a chosen loopback source address (transport.Dial cannot
// pick one): INIT with flags 0x03 (no TSN, no stream fields), DATA with
// PPID 11, and reading DATA chunks while skipping the others.
type rawClient struct {
	t     testing.TB
	nc    net.Conn
	br    *bufio.Reader
	reset bool // the registrar reset the connection before the dial returned
}

// rawDial connects from local (an IP on lo, e.g. 127.0.0.2) to addr
// ("tcp://h:p" or "h:p") without sending anything.
func rawDial(t testing.TB, local, addr string) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	nc, err := d.Dial("tcp", strings.TrimPrefix(addr, "tcp://"))
	if errors.Is(err, syscall.ECONNRESET) {
		// A refused connection is reset at once (transport.Abort); the
		// reset can beat connect(2)'s return.
		return &rawClient{t: t, reset: true}
	}
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, local, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (rc *rawClient) write(b []byte) error {
	if rc.reset {
		return syscall.ECONNRESET
	}
	rc.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := rc.nc.Write(b)
	return err
}

// init sends the INIT chunk.
func (rc *rawClient) init() {
	rc.t.Helper()
	if err := rc.write([]byte{1, 0x03, 0, 4}); err != nil {
		rc.t.Fatal(err)
	}
}

// send sends m in a DATA chunk (header: type, flags, length, PPID).
func (rc *rawClient) send(m wire.Message) {
	rc.t.Helper()
	body, err := m.AppendBinary(nil)
	if err != nil {
		rc.t.Fatal(err)
	}
	b := binary.BigEndian.AppendUint16([]byte{0, 0}, uint16(8+len(body)))
	b = binary.BigEndian.AppendUint32(b, wire.PPIDASAP)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	if err := rc.write(b); err != nil {
		rc.t.Fatal(err)
	}
}

// recv returns the next ASAP message (the registrar's DATA chunks carry
// TSN, stream and PPID: a 16-byte header).
func (rc *rawClient) recv() (wire.Message, error) {
	if rc.reset {
		return nil, syscall.ECONNRESET
	}
	rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var h [4]byte
		if _, err := io.ReadFull(rc.br, h[:]); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint16(h[2:]))
		if n < 4 {
			return nil, errors.New("chunk length below 4")
		}
		v := make([]byte, (n+3)&^3-4)
		if _, err := io.ReadFull(rc.br, v); err != nil {
			return nil, err
		}
		if h[0] != 0 {
			continue // INIT, ACK, HEARTBEAT
		}
		if n < 16 {
			return nil, errors.New("short DATA chunk")
		}
		return wire.ParseASAP(v[12 : n-4])
	}
}

// waitClosedByPeer reports whether the registrar ended the connection
// (EOF or reset after whatever it sent) within d.
func (rc *rawClient) waitClosedByPeer(d time.Duration) bool {
	if rc.reset {
		return true
	}
	rc.nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, rc.br)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// waitValue polls a metric of the in-process registrar until it equals
// want (the accept loops and readers run on their own goroutines).
func waitValue(t *testing.T, what string, get func() float64, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for get() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", what, get(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSourceConnectionCap: one source holding connections that stall in
// the middle of a chunk header gets max_source_connections of them; more
// are refused and counted, while another source is served at once (the
// refusals, whose close waits for a peer that never answers, do not hold
// up the accept loop).
func TestSourceConnectionCap(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxSourceConnections = 3
	h := start(t, cfg)
	refused := func() float64 {
		return testutil.ToFloat64(h.r.m.limitRejections.WithLabelValues(limitSourceConnections))
	}
	var stalled []*rawClient
	for i := 0; i < 3; i++ {
		rc := rawDial(t, "127.0.0.1", h.addr)
		if err := rc.write([]byte{1, 0}); err != nil { // half a chunk header
			t.Fatal(err)
		}
		stalled = append(stalled, rc)
	}
	waitValue(t, "connections", func() float64 { return testutil.ToFloat64(h.r.m.connections) }, 3)
	for i := 0; i < 6; i++ {
		rc := rawDial(t, "127.0.0.1", h.addr)
		rc.write([]byte{1, 0})
	}
	waitValue(t, "limit_rejections_total{limit=source_connections}", refused, 6)

	other := rawDial(t, "127.0.0.2", h.addr)
	other.init()
	other.send(&wire.HandleResolution{PoolHandle: "none"})
	m, err := other.recv()
	if err != nil {
		t.Fatalf("client from another source not served: %v", err)
	}
	if hr, ok := m.(*wire.HandleResolutionResponse); !ok || cause(hr.Error) != wire.CauseUnknownPoolHandle {
		t.Fatalf("got %#v", m)
	}

	// A slot freed by the source is available to it again.
	stalled[0].nc.Close()
	waitValue(t, "connections", func() float64 { return testutil.ToFloat64(h.r.m.connections) }, 3) // 2 stalled, other
	again := dial(t, h.addr)
	if hr := again.resolve("none", 0); cause(hr.Error) != wire.CauseUnknownPoolHandle {
		t.Fatalf("after a slot freed: %+v", hr)
	}
	if v := refused(); v != 6 {
		t.Errorf("refusals = %v after a slot freed, want 6", v)
	}
}

// TestSourceElementCap: PEs registered from one source stop at
// max_source_elements (cause 0x6, limit source_elements); re-registering
// one of them still works, a deregistration frees a place, and another
// source is not affected.
func TestSourceElementCap(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxSourceElements = 5
	cfg.Registration.RequireAddressSubset = false
	h := start(t, cfg)
	pe := dial(t, h.addr)
	pe.autoAck.Store(true)
	for i := uint32(1); i <= 5; i++ {
		if r := pe.register(regMsg("P", i, 7000, wire.PolicyRoundRobin)); r.Reject {
			t.Fatalf("PE %d: %+v", i, r.Error)
		}
	}
	r := pe.register(regMsg("Q", 6, 7000, wire.PolicyRoundRobin))
	if !r.Reject || cause(r.Error) != wire.CauseLackOfResources {
		t.Fatalf("sixth PE from one source: %+v", r)
	}
	if r := pe.register(regMsg("P", 3, 7001, wire.PolicyRoundRobin)); r.Reject {
		t.Fatalf("re-registration at the cap: %+v", r.Error)
	}
	// The cap counts the source, not the connection.
	if r := dial(t, h.addr).register(regMsg("P", 7, 7000, wire.PolicyRoundRobin)); !r.Reject {
		t.Fatal("a second connection from the same source passed the cap")
	}
	other := rawDial(t, "127.0.0.2", h.addr)
	other.init()
	other.send(regMsg("P", 8, 7000, wire.PolicyRoundRobin))
	if m, err := other.recv(); err != nil {
		t.Fatal(err)
	} else if rr, ok := m.(*wire.RegistrationResponse); !ok || rr.Reject {
		t.Fatalf("another source refused: %#v", m)
	}
	pe.send(&wire.Deregistration{PoolHandle: "P", ID: 1})
	expect[*wire.DeregistrationResponse](t, pe)
	if r := pe.register(regMsg("Q", 6, 7000, wire.PolicyRoundRobin)); r.Reject {
		t.Fatalf("after a deregistration: %+v", r.Error)
	}
	if v := testutil.ToFloat64(h.r.m.limitRejections.WithLabelValues(limitSourceElements)); v != 2 {
		t.Errorf("limit_rejections_total{limit=source_elements} = %v, want 2", v)
	}
}

// TestDefaultSourceElementCap: with the defaults a pe-agent-like client
// registers 1,000 PEs from one host (several hundred backends fit), and
// the next new one is refused: 10,000 PEs from one host are not possible.
func TestDefaultSourceElementCap(t *testing.T) {
	h := start(t, testConfig())
	pe := dial(t, h.addr)
	const n = 1000
	for i := uint32(1); i <= n; i++ {
		pe.send(regMsg("Agent", i, uint16(1024+i), wire.PolicyRoundRobin))
	}
	for i := 0; i < n; i++ {
		if r := expect[*wire.RegistrationResponse](t, pe); r.Reject {
			t.Fatalf("registration %d of %d refused: %+v", i+1, n, r.Error)
		}
	}
	if r := pe.register(regMsg("Agent", n+1, 7000, wire.PolicyRoundRobin)); !r.Reject || cause(r.Error) != wire.CauseLackOfResources {
		t.Fatalf("PE %d from one host: %+v", n+1, r)
	}
}

// TestCloseDoesNotWaitForThePeer: closing a connection whose peer neither
// reads nor closes (the transport's Close waits up to 2 s for its end of
// stream) returns at once; the Close finishes in the background and is
// waited for through the WaitGroup.
func TestCloseDoesNotWaitForThePeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			peer <- c
		}
	}()
	tc, err := transport.Dial(context.Background(), transport.MustParseAddr("tcp://"+ln.Addr().String()), &transport.Config{HeartbeatInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	p := <-peer
	var wg sync.WaitGroup
	c := newConn(1, tc, transport.SchemeTCP, 1<<20, testLogger(t), &wg)
	c.close() // must not wait for the peer
	closed := make(chan struct{})
	go func() { wg.Wait(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("the transport's Close finished although the peer never closed; the test proves nothing")
	default:
	}
	p.Close() // the peer's end of stream ends the background Close
	<-closed
}

// metricValue returns the value of the sample named series (name and
// labels as in the exposition format) on a registrar's /metrics, or -1.
func metricValue(t *testing.T, admin, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(httpGet(t, "http://"+admin+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// waitMetric polls a registrar process's /metrics until series equals want.
func waitMetric(t *testing.T, admin, series string, want float64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v := metricValue(t, admin, series)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", series, v, want)
		}
		time.Sleep(50 * time.Millisecond) // polling another process
	}
}

// stallAll opens n connections from 127.0.0.1 that each send half a
// chunk header (2 of 4 bytes) and then nothing.
func stallAll(t *testing.T, addr string, n int) {
	for i := 0; i < n; i++ {
		rc := rawDial(t, "127.0.0.1", addr)
		err := rc.write([]byte{0, 0})
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
			continue // refused by a cap: reset at once (the callers count refusals)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestE2EStalledChunkHeaders measures what connections that stall in the
// middle of a TCP-mapping chunk header cost the registrar process (each
// lasts the transport's 30 s chunk timeout), and shows that one source gets
// at most max_source_connections (default 256) of them, and that the
// registrar still stops at once on SIGTERM with them open.
func TestE2EStalledChunkHeaders(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 200
	}
	t.Run("cost", func(t *testing.T) {
		p := startProc(t, "[limits]\nmax_source_connections = 20000\n")
		before := rssKB(t, p.pid)
		stallAll(t, p.asap, n)
		waitMetric(t, p.admin, "rserpool_registrar_connections", float64(n), 30*time.Second)
		after := rssKB(t, p.pid)
		per := float64(after-before) / float64(n)
		t.Logf("registrar RSS: %d KiB before, %d KiB with %d stalled connections (%.1f KiB each; %.1f MiB for the default per-source cap of 256)",
			before, after, n, per, per*256/1024)
		if per > 64 {
			t.Errorf("%.1f KiB RSS per stalled connection", per)
		}
		if code := p.stop(); code != 0 {
			t.Errorf("exit code %d", code)
		}
	})
	t.Run("default cap", func(t *testing.T) {
		p := startProc(t, "")
		stallAll(t, p.asap, 300)
		waitMetric(t, p.admin, "rserpool_registrar_connections", 256, 30*time.Second)
		waitMetric(t, p.admin, `rserpool_registrar_limit_rejections_total{limit="source_connections"}`, 44, 30*time.Second)
		t0 := time.Now()
		if code := p.stop(); code != 0 {
			t.Errorf("exit code %d", code)
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("stopping with 256 stalled connections took %v", d)
		}
	})
}
