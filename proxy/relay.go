package proxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rserpool/rserpool/failover"
)

// relay is one client connection and, once connected, its PE connection.
type relay struct {
	mu      sync.Mutex // guards backend and closed
	client  net.Conn
	backend net.Conn
	closed  bool
	idle    [2]atomic.Bool  // per direction: the last read window passed without a byte
	ended   atomic.Int32    // directions that finished relaying
	running atomic.Int32    // direction goroutines still running; the last one calls end
	moved   [2]atomic.Int64 // bytes relayed per direction (0: to the PE)
	end     func()          // closes both connections and accounts for the relay
}

func (r *relay) setBackend(b net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backend = b
	return !r.closed
}

func (r *relay) closeBoth() {
	r.mu.Lock()
	r.closed = true
	b := r.backend
	r.mu.Unlock()
	r.client.Close()
	if b != nil {
		b.Close()
	}
}

func (p *Proxy) track(r *relay) {
	p.mu.Lock()
	p.conns[r] = struct{}{}
	p.mu.Unlock()
}

func (p *Proxy) untrack(r *relay) {
	p.mu.Lock()
	delete(p.conns, r)
	p.mu.Unlock()
}

// handle serves one client connection: connect to a PE (with failover),
// then relay both directions until both are done. The relay runs in a
// fresh goroutine per direction, so that the stack grown while connecting
// (failover, logging) is not kept for the life of the connection; the
// last direction to finish closes both connections and accounts for them.
func (l *listener) handle(c net.Conn, st *settings) {
	p := l.p
	r := &relay{client: c}
	p.track(r)
	tried := new(failover.Tried)
	end := func() {
		tried.Wait()
		p.untrack(r)
		l.active.Add(-1)
		l.lm.active.Dec()
		p.wg.Done()
	}

	dialer := st.dialer
	var dst netip.AddrPort
	if st.pools != nil {
		dst = connDst(c)
		if dialer = st.pools.dialer(dst); dialer == nil {
			l.lm.noBackend.Inc()
			p.log.Warn("no pool for the original destination", "listener", l.label, "dst", dst.String(), "client", c.RemoteAddr().String())
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
			end()
			return
		}
	}
	var prelude []byte
	if st.ppv != "" {
		src, _ := addrPort(c.RemoteAddr())
		if !dst.IsValid() {
			dst, _ = addrPort(c.LocalAddr())
		}
		prelude = proxyHeaderAddrs(st.ppv, src, dst)
	}
	var (
		backend             net.Conn
		toB, toC            int64
		clientDone, backEnd bool
		err                 error
	)
	if st.replay {
		var s *failover.Session
		s, err = dialer.DialReplay(p.ctx, c, prelude, tried, st.idle)
		if err == nil {
			backend, toB, toC, clientDone, backEnd = s.Backend, s.ToBackend, s.ToClient, s.ClientDone, s.BackendDone
		}
	} else {
		backend, _, err = dialer.Dial(p.ctx, prelude, tried)
	}
	if err != nil {
		if p.ctx.Err() != nil {
			l.lm.aborted.Inc()
		} else {
			l.lm.noBackend.Inc()
			p.log.Warn("no pool element reachable", "listener", l.label, "pool", st.pool, "client", c.RemoteAddr().String(), "err", err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset: the client sees the failure at once
		}
		c.Close()
		end()
		return
	}
	if !r.setBackend(backend) {
		// Closed by Close while connecting.
		backend.Close()
		c.Close()
		l.lm.aborted.Inc()
		end()
		return
	}
	l.lm.ok.Inc()

	r.moved[0].Store(toB) // bytes of the replay phase
	r.moved[1].Store(toC)
	r.end = func() {
		c.Close()
		backend.Close()
		l.lm.toBackend.Add(float64(r.moved[0].Load()))
		l.lm.toClient.Add(float64(r.moved[1].Load()))
		end()
	}
	n := int32(2)
	if clientDone {
		r.ended.Add(1)
		n--
	}
	if backEnd {
		r.ended.Add(1)
		n--
	}
	if n == 0 {
		r.end()
		return
	}
	r.running.Store(n)
	if !backEnd {
		go r.run(c, backend, st.idle, 1)
	}
	if !clientDone {
		go r.run(backend, c, st.idle, 0)
	}
}

// run relays one direction, counts its bytes, and ends the relay if it is
// the last direction to finish.
func (r *relay) run(dst, src net.Conn, idle time.Duration, dir int) {
	r.moved[dir].Add(r.copy(dst, src, idle, dir))
	if r.running.Add(-1) == 0 {
		r.end()
	}
}

// chunk is how many bytes one deadline window may move with idle timeouts
// on; the kernel splices within it.
const chunk = 8 << 20

// smallBuf is the user-space buffer of one direction. Request/response
// traffic moves through it with read/write (cheaper than splice for small
// messages: splice costs two heavier system calls and a pipe per transfer);
// the first read that fills it switches the direction to the kernel's
// splice path for the rest of the connection.
const smallBuf = 4 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}

var errIdle = errors.New("proxy: idle timeout")

// copy moves src to dst until EOF (then half-closes dst) or an error (then
// closes both, which ends the other direction too). dir is 0 for
// client→PE and 1 for PE→client. With idle > 0, the connection ends when
// both directions saw no byte for an idle window.
func (r *relay) copy(dst, src net.Conn, idle time.Duration, dir int) int64 {
	total, err := r.copySmall(dst, src, idle, dir)
	if err == errBulk {
		var n int64
		n, err = r.copyBulk(dst, src, idle, dir)
		total += n
	}
	if err == nil {
		if r.ended.Add(1) == 2 {
			// The other direction is over too and handle closes both
			// connections now: the close sends the FIN, so a shutdown
			// system call first would be wasted.
			return total
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
			return total
		}
	} else {
		r.ended.Add(1)
	}
	// An error, or a peer without half-close: end both directions.
	src.Close()
	dst.Close()
	return total
}

// errBulk tells copy to continue with copyBulk.
var errBulk = errors.New("bulk")

// copySmall relays through a pooled buffer until EOF (nil), an error, or a
// read that fills the buffer (errBulk). A TCP source is waited on without a
// buffer (see pollReader): an idle direction holds none. The loop calls
// the blocking read directly (no closure, no helper frame): a direction's
// goroutine then stays on its first 2 KiB stack.
func (r *relay) copySmall(dst, src net.Conn, idle time.Duration, dir int) (int64, error) {
	rd := newPollReader(src)
	defer rd.release()
	var total int64
	w := window{idle: idle}
	for {
		w.arm(src)
		buf, err := rd.read()
		n := len(buf)
		if n > 0 {
			w.active = true
			r.idle[dir].Store(false)
			_, werr := dst.Write(buf)
			rd.release()
			if werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		switch {
		case err == io.EOF:
			return total, nil
		case w.passed(err):
			if r.idleEnds(&w, dir) {
				return total, errIdle
			}
			continue
		case err != nil:
			return total, err
		}
		if n == smallBuf {
			return total, errBulk
		}
	}
}

// window is the idle bookkeeping of one direction: with idle > 0, the read
// deadline bounds windows; a window without a byte in either direction
// ends the relay.
type window struct {
	idle   time.Duration
	armed  time.Time // when the read deadline was last moved
	active bool      // a byte arrived since then
}

// arm moves src's read deadline, before a read. Moving it on every read
// would cost a timer update per message; it moves once per quarter window.
func (w *window) arm(src net.Conn) {
	if w.idle <= 0 {
		return
	}
	if now := time.Now(); now.Sub(w.armed) > w.idle/4 {
		src.SetReadDeadline(now.Add(w.idle))
		w.armed, w.active = now, false
	}
}

// passed tells whether err is the read deadline of an idle window.
func (w *window) passed(err error) bool {
	return err != nil && w.idle > 0 && errors.Is(err, os.ErrDeadlineExceeded)
}

// idleEnds accounts for a read deadline that passed: true when both
// directions were idle for a window.
func (r *relay) idleEnds(w *window, dir int) bool {
	if w.active {
		w.armed = time.Time{}
		return false
	}
	r.idle[dir].Store(true)
	if r.idle[1-dir].Load() {
		return true
	}
	w.armed = time.Time{}
	return false
}

// pollReader reads a connection into pooled buffers. For a *net.TCPConn it
// waits for readability in Go's netpoller (syscall.RawConn.Read) holding no
// buffer, and takes one from the pool for the read that finds bytes; other
// connections are read with Read into a pooled buffer.
type pollReader struct {
	src  net.Conn
	rc   syscall.RawConn // nil: use src.Read
	bp   *[]byte         // the buffer of the last read, until release
	n    int
	err  error
	wake func(fd uintptr) bool // rawRead bound once: no allocation per read
}

func newPollReader(src net.Conn) *pollReader {
	pr := &pollReader{src: src}
	if tc, ok := src.(*net.TCPConn); ok && rawReads {
		if rc, err := tc.SyscallConn(); err == nil {
			pr.rc = rc
			pr.wake = pr.rawRead
		}
	}
	return pr
}

// read returns the next bytes (valid until release), or io.EOF, or an
// error (a deadline's is os.ErrDeadlineExceeded).
func (pr *pollReader) read() ([]byte, error) {
	pr.release()
	if pr.rc == nil {
		pr.bp = bufPool.Get().(*[]byte)
		n, err := pr.src.Read(*pr.bp)
		return (*pr.bp)[:n], err
	}
	pr.n, pr.err = 0, nil
	if err := pr.rc.Read(pr.wake); err != nil {
		return nil, err
	}
	if pr.bp == nil {
		return nil, pr.err
	}
	return (*pr.bp)[:pr.n], pr.err
}

// rawRead is the RawConn callback: false (wait for readability) while the
// socket has nothing to read, the buffer back in the pool.
func (pr *pollReader) rawRead(fd uintptr) bool {
	bp := bufPool.Get().(*[]byte)
	for {
		n, err := sysRead(fd, *bp)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			bufPool.Put(bp)
			return false
		case err != nil:
			bufPool.Put(bp)
			pr.err = os.NewSyscallError("read", err)
		case n == 0:
			bufPool.Put(bp)
			pr.err = io.EOF
		default:
			pr.bp, pr.n = bp, n
		}
		return true
	}
}

// release returns the buffer of the last read to the pool.
func (pr *pollReader) release() {
	if pr.bp != nil {
		bufPool.Put(pr.bp)
		pr.bp = nil
	}
}

// copyBulk lets the kernel splice src to dst: through a pipe held only
// while bytes move where the system allows (spliceBulk), else with io.Copy
// between *net.TCPConn, in deadline windows when idle > 0.
func (r *relay) copyBulk(dst, src net.Conn, idle time.Duration, dir int) (int64, error) {
	if n, ok, err := r.spliceBulk(dst, src, idle, dir); ok {
		return n, err
	}
	if idle <= 0 {
		src.SetReadDeadline(time.Time{})
		return io.Copy(dst, src)
	}
	var total int64
	lr := io.LimitedReader{R: src}
	for {
		src.SetReadDeadline(time.Now().Add(idle))
		lr.N = chunk
		n, err := io.Copy(dst, &lr)
		total += n
		if err == nil && lr.N > 0 {
			return total, nil // EOF
		}
		if err == nil || (errors.Is(err, os.ErrDeadlineExceeded) && n > 0) {
			r.idle[dir].Store(false)
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			r.idle[dir].Store(true)
			if r.idle[1-dir].Load() {
				return total, errIdle
			}
			continue
		}
		return total, err
	}
}
