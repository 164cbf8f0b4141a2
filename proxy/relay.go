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
	mu      sync.Mutex // guards backend, closed, and the idle timer's Reset
	client  net.Conn
	backend net.Conn
	closed  bool
	// active: a byte moved since the idle timer last looked. idle is
	// the idle_timeout and timer checks it (nil without one); both are
	// set under mu before the directions start.
	active  atomic.Bool
	idle    time.Duration
	timer   *time.Timer
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
		if r.timer != nil {
			r.timer.Stop()
		}
		r.closeBoth()
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
	if st.idle > 0 {
		// Armed here, on the connecting goroutine: the runtime's timer
		// code runs on its stack, not on the directions' small ones.
		r.mu.Lock()
		r.idle = st.idle
		r.timer = time.AfterFunc(st.idle, r.idleCheck)
		r.mu.Unlock()
	}
	if !backEnd {
		go r.run(c, backend, 1)
	}
	if !clientDone {
		go r.run(backend, c, 0)
	}
}

// run relays one direction, counts its bytes, and ends the relay if it is
// the last direction to finish.
func (r *relay) run(dst, src net.Conn, dir int) {
	r.moved[dir].Add(r.copy(dst, src, dir))
	if r.running.Add(-1) == 0 {
		r.end()
	}
}

// idleCheck runs when the idle timer fires: a relay that moved no byte in
// either direction since the last check (so for between 1× and 2× the
// idle timeout) is closed, which ends both directions; else the timer is
// armed again.
func (r *relay) idleCheck() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	if r.active.Swap(false) {
		r.timer.Reset(r.idle)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.closeBoth()
}

// smallBuf is the user-space buffer of one direction. Request/response
// traffic moves through it with read/write (cheaper than splice for small
// messages: splice costs two heavier system calls and a pipe per transfer);
// the first read that fills it switches the direction to the kernel's
// splice path for the rest of the connection.
const smallBuf = 4 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}

// copy moves src to dst until EOF (then half-closes dst) or an error (then
// closes both, which ends the other direction too; so does the idle
// timer). dir is 0 for client→PE and 1 for PE→client.
func (r *relay) copy(dst, src net.Conn, dir int) int64 {
	total, err := r.copySmall(dst, src)
	if err == errBulk {
		var n int64
		n, err = r.copyBulk(dst, src)
		total += n
	}
	if err == nil {
		if r.ended.Add(1) == 2 {
			// The other direction is over too and the relay closes both
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
// the blocking read directly (no closure, no helper frame, no deadline:
// the idle timer is the relay's): a direction's goroutine stays on its
// first 2 KiB stack.
func (r *relay) copySmall(dst, src net.Conn) (int64, error) {
	rd := newPollReader(src, &bufPool)
	defer rd.release()
	var total int64
	for {
		buf, err := rd.read()
		n := len(buf)
		if n > 0 {
			r.active.Store(true)
			_, werr := dst.Write(buf)
			rd.release()
			if werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if n == smallBuf {
			return total, errBulk
		}
	}
}

// pollReader reads a connection into pooled buffers. For a *net.TCPConn it
// waits for readability in Go's netpoller (syscall.RawConn.Read) holding no
// buffer, and takes one from the pool for the read that finds bytes; other
// connections are read with Read into a pooled buffer.
type pollReader struct {
	pool *sync.Pool // of *[]byte
	src  net.Conn
	rc   syscall.RawConn // nil: use src.Read
	bp   *[]byte         // the buffer of the last read, until release
	n    int
	err  error
	wake func(fd uintptr) bool // rawRead bound once: no allocation per read
}

func newPollReader(src net.Conn, pool *sync.Pool) *pollReader {
	pr := &pollReader{src: src, pool: pool}
	if tc, ok := src.(*net.TCPConn); ok && rawReads {
		if rc, err := tc.SyscallConn(); err == nil {
			pr.rc = rc
			pr.wake = pr.rawRead
		}
	}
	return pr
}

// read returns the next bytes (valid until release), or io.EOF, or an
// error.
func (pr *pollReader) read() ([]byte, error) {
	pr.release()
	if pr.rc == nil {
		pr.bp = pr.pool.Get().(*[]byte)
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
	bp := pr.pool.Get().(*[]byte)
	for {
		n, err := sysRead(fd, *bp)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			pr.pool.Put(bp)
			return false
		case err != nil:
			pr.pool.Put(bp)
			pr.err = os.NewSyscallError("read", err)
		case n == 0:
			pr.pool.Put(bp)
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
		pr.pool.Put(pr.bp)
		pr.bp = nil
	}
}

// copyBulk lets the kernel splice src to dst through a pipe held only
// while bytes move where the system allows (spliceBulk); elsewhere it
// copies through pooled 32 KiB buffers, waited for as in copySmall.
func (r *relay) copyBulk(dst, src net.Conn) (int64, error) {
	if n, ok, err := r.spliceBulk(dst, src); ok {
		return n, err
	}
	rd := newPollReader(src, &bulkPool)
	defer rd.release()
	var total int64
	for {
		buf, err := rd.read()
		if n := len(buf); n > 0 {
			r.active.Store(true)
			_, werr := dst.Write(buf)
			rd.release()
			if werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

var bulkPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
