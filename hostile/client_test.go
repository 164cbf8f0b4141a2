package hostile

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// asapClient is a well-behaved PE or PU over the real transport. It
// answers keep-alives by itself; every other message goes to msgs.
type asapClient struct {
	c      transport.Conn
	msgs   chan wire.Message
	closed chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex // serialises call
}

var errClosed = errors.New("connection closed by the daemon")

func dialASAP(addr string, tc *tls.Config) (*asapClient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, addr, &transport.Config{HeartbeatInterval: -1, TLS: tc})
	if err != nil {
		return nil, err
	}
	cl := &asapClient{c: c, msgs: make(chan wire.Message, 64), closed: make(chan struct{})}
	cl.wg.Add(1)
	go cl.read()
	return cl, nil
}

func (cl *asapClient) read() {
	defer cl.wg.Done()
	defer close(cl.closed)
	for {
		m, err := cl.c.ReadMessage()
		if err != nil {
			return
		}
		msg, err := wire.ParseASAP(m.Data)
		if err != nil {
			continue
		}
		if ka, ok := msg.(*wire.EndpointKeepAlive); ok {
			cl.send(&wire.EndpointKeepAliveAck{PoolHandle: ka.PoolHandle, ID: ka.ID})
			continue
		}
		select {
		case cl.msgs <- msg:
		default: // nobody asked: drop
		}
	}
}

func (cl *asapClient) send(m wire.Message) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	return cl.c.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b})
}

// call sends m and returns the next message, or fails after d.
func (cl *asapClient) call(m wire.Message, d time.Duration) (wire.Message, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for len(cl.msgs) > 0 { // drop answers that came too late for an earlier call
		<-cl.msgs
	}
	if err := cl.send(m); err != nil {
		return nil, err
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-cl.msgs:
		return r, nil
	case <-cl.closed:
		return nil, errClosed
	case <-timer.C:
		return nil, fmt.Errorf("no answer within %v", d)
	}
}

func (cl *asapClient) close() {
	cl.c.Close()
	cl.wg.Wait()
}

var loopback = netip.MustParseAddr("127.0.0.1")

func registration(handle wire.PoolHandle, id uint32, port uint16) *wire.Registration {
	return &wire.Registration{PoolHandle: handle, Element: wire.PoolElement{
		ID: id, RegistrationLife: 3_600_000,
		User:   wire.Transport{Type: wire.TransportTCP, Port: port, Addrs: []netip.Addr{loopback}},
		Policy: wire.Policy{Type: wire.PolicyRoundRobin},
	}}
}

// registerPE registers one PE over a new connection that stays open (and
// answers keep-alives) until the test ends.
func registerPE(t *testing.T, addr string, tc *tls.Config, handle wire.PoolHandle, id uint32, port uint16) *asapClient {
	t.Helper()
	cl, err := dialASAP(addr, tc)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(cl.close)
	m, err := cl.call(registration(handle, id, port), 5*time.Second)
	if err != nil {
		t.Fatalf("register %s: %v", handle, err)
	}
	if r, ok := m.(*wire.RegistrationResponse); !ok || r.Reject {
		t.Fatalf("register %s: %+v", handle, m)
	}
	return cl
}

// resolveIDs asks for handle's PEs over cl and returns their IDs.
func resolveIDs(cl *asapClient, handle wire.PoolHandle) ([]uint32, error) {
	m, err := cl.call(&wire.HandleResolution{PoolHandle: handle, HasItems: true, Items: 128}, 5*time.Second)
	if err != nil {
		return nil, err
	}
	r, ok := m.(*wire.HandleResolutionResponse)
	if !ok {
		return nil, fmt.Errorf("resolution answered with %T", m)
	}
	if r.PoolHandle != handle {
		return nil, fmt.Errorf("resolution answered for pool %q, want %q", r.PoolHandle, handle)
	}
	var ids []uint32
	for _, e := range r.Elements {
		ids = append(ids, e.ID)
	}
	return ids, nil
}

// resolvesTo checks that handle resolves to a set containing id.
func resolvesTo(cl *asapClient, handle wire.PoolHandle, id uint32) error {
	ids, err := resolveIDs(cl, handle)
	if err != nil {
		return err
	}
	if !slices.Contains(ids, id) {
		return fmt.Errorf("pool %q resolves to %08x, without PE %08x", handle, ids, id)
	}
	return nil
}

// ---- raw TCP mapping ----

// chunkINIT is the TCP mapping's INIT chunk with every DATA field present.
var chunkINIT = []byte{1, 0, 0, 4}

// appendDATA appends a full-form DATA chunk (TSN, stream 0, SSN, PPID)
// carrying msg, padded to 4 bytes. Its length field wraps like the 16-bit
// field it is: a message longer than 65519 bytes makes a lying header.
func appendDATA(b []byte, tsn uint32, ppid uint32, msg []byte) []byte {
	b = binary.BigEndian.AppendUint16(append(b, 0, 0), uint16(16+len(msg)))
	b = binary.BigEndian.AppendUint32(b, tsn)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, ppid)
	b = append(b, msg...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// rawSpray sends frames to addr over fresh TCP connections, batch frames per
// connection, from workers goroutines: each connection sends the INIT
// chunk (unless noInit), its frames, half-closes and reads until the daemon
// closes (so that every frame was read before the next connection starts).
// It returns the number of frames written.
type sprayer struct {
	addr    string
	tls     *tls.Config
	workers int
	batch   int
	noInit  bool
}

func (s sprayer) spray(frames [][]byte) (sent int64, err error) {
	var (
		mu   sync.Mutex
		next int
		wg   sync.WaitGroup
		errs []error
	)
	take := func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		if next >= len(frames) {
			return nil
		}
		end := min(next+s.batch, len(frames))
		b := frames[next:end]
		next = end
		return b
	}
	for range max(s.workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				b := take()
				if b == nil {
					return
				}
				n, err := s.one(b)
				mu.Lock()
				sent += int64(n)
				if err != nil && len(errs) < 5 {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return sent, errors.Join(errs...)
}

// one sends one batch on one connection. A write error after the first
// frame is the daemon closing the connection: not an error.
func (s sprayer) one(frames [][]byte) (int, error) {
	nc, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	var c net.Conn = nc
	if s.tls != nil {
		tc := tls.Client(nc, s.tls)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			return 0, err
		}
		c = tc
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	done := make(chan struct{})
	go func() { // drain what the daemon answers, until it closes
		io.Copy(io.Discard, c)
		close(done)
	}()
	n := 0
	if !s.noInit {
		if _, err := c.Write(chunkINIT); err != nil {
			<-done
			return 0, nil
		}
	}
	for _, f := range frames {
		if _, err := c.Write(f); err != nil {
			break
		}
		n++
	}
	if tc, ok := c.(*tls.Conn); ok {
		tc.CloseWrite()
	} else {
		nc.(*net.TCPConn).CloseWrite()
	}
	<-done
	return n, nil
}

// ---- measuring ----

// prober repeats a legitimate request during an attack and keeps its
// latencies.
type prober struct {
	stop chan struct{}
	done chan struct{}
	lat  []time.Duration
	errs int
	last error
}

func startProber(every time.Duration, probe func() error) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			t0 := time.Now()
			if err := probe(); err != nil {
				p.errs++
				p.last = err
			} else {
				p.lat = append(p.lat, time.Since(t0))
			}
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// finish stops the prober and returns the p99 latency of the successful
// probes, their number and the number of failed ones.
func (p *prober) finish() (p99 time.Duration, ok, failed int, last error) {
	close(p.stop)
	<-p.done
	if len(p.lat) > 0 {
		sort.Slice(p.lat, func(i, j int) bool { return p.lat[i] < p.lat[j] })
		p99 = p.lat[min(len(p.lat)-1, len(p.lat)*99/100)]
	}
	return p99, len(p.lat), p.errs, p.last
}
