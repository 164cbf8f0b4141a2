package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rserpool/rserpool/failover"
	"github.com/rserpool/rserpool/pucache"
)

// A client connection of the event loops: connecting to a PE (failover,
// hedging) and relaying.

// Connection states.
const (
	stConnecting = iota // attempts in flight (or about to start)
	stWaiting           // a helper goroutine waits for a PE to try
	stRelay
	stClosed
)

// Timer kinds.
const (
	tIdle = iota
	tHedge
	tConnect    // of an attempt
	tResume     // of a paused listener
	nConnTimers = 2
)

// lconn is a client connection owned by one loop.
type lconn struct {
	lp            *evloop
	l             *listener
	st            *settings
	dialer        *failover.Dialer
	cfd           int
	bfd           int
	cslot         int32
	bslot         int32
	state         uint8
	tried         failover.Tried
	backoff       time.Duration
	atts          []*latt // connects in flight
	started       int     // connects started
	pe            pucache.Element
	deadline      time.Time
	lastErr       error // of the last failed attempt
	prelude       []byte
	local, remote netip.AddrPort
	dst           netip.AddrPort // original destination (interception)
	d             [2]ldir        // 0: client → PE, 1: PE → client
	active        time.Time      // last byte relayed
	t             [nConnTimers]ltimer
}

// ldir is one direction of a relayed connection.
type ldir struct {
	pend   []byte // bytes read and not yet written
	hup    bool   // the source's peer ended (RDHUP, HUP or ERR seen)
	eof    bool   // the source ended; passed on once pend is empty
	done   bool   // the end was passed on
	splice bool   // a read filled the buffer: the rest moves through a pipe
	pipe   [2]int // the pipe of splice mode (pipe[0] > 0), held only while bytes move
	inPipe int
	n      int64 // bytes written to the destination
}

// latt is one connect attempt; a probe once its connection no longer
// needs it (overtaken by a hedge).
type latt struct {
	c      *lconn // nil for a probe
	dialer *failover.Dialer
	fd     int
	slot   int32
	e      pucache.Element
	begin  time.Time
	t      ltimer
}

func (c *lconn) fds(dir int) (src, dst int) {
	if dir == 0 {
		return c.cfd, c.bfd
	}
	return c.bfd, c.cfd
}

// event of the client socket or of the connected PE socket.
func (c *lconn) event(lp *evloop, s int32, ev uint32) {
	in := 0 // the direction whose source this socket is
	if s == c.bslot {
		in = 1
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		// The peer ended: its edge comes once, so its source must be
		// read to the end whenever it is read next.
		c.d[in].hup = true
	}
	if c.state != stRelay {
		// The client's bytes wait in its socket until a PE is connected.
		if s == c.cslot && ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			c.finish(resultAborted, false)
		}
		return
	}
	if ev&unix.EPOLLOUT != 0 && c.d[1-in].pending() {
		c.pump(1-in, false)
	}
	if c.state == stRelay && ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.pump(in, false)
	}
}

func (d *ldir) pending() bool { return len(d.pend) > 0 || d.inPipe > 0 }

// pump moves bytes of direction dir: first what is pending, then from the
// source, one read per readiness (until EAGAIN or EOF once the source's
// peer ended: no further event may come for it).
func (c *lconn) pump(dir int, drain bool) {
	d := &c.d[dir]
	if d.done {
		return
	}
	drain = drain || d.hup
	src, dst := c.fds(dir)
	lp := c.lp
	for {
		if !c.flush(dir, dst) {
			return
		}
		if d.eof {
			c.putPipe(d)
			c.passEOF(dir, dst)
			return
		}
		var n int
		var err error
		if d.splice && d.pipe[0] == 0 && !c.takePipe(d) {
			d.splice = false // no pipe to be had: read and write
		}
		if d.splice {
			var n64 int64
			n64, err = unix.Splice(src, nil, d.pipe[1], nil, pipeSize, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
			n = int(n64)
			if n > 0 {
				d.inPipe = n
			}
		} else {
			n, err = rawRead(src, lp.buf)
			if n > 0 {
				d.pend = lp.buf[:n] // written at once below, copied if it must wait
			}
		}
		switch {
		case n > 0:
			c.active = lp.now
			full := n == len(lp.buf) && !d.splice
			if !c.flush(dir, dst) {
				if !d.splice && len(d.pend) > 0 {
					d.pend = append(make([]byte, 0, len(d.pend)), d.pend...)
				}
				return
			}
			if full {
				c.toSplice(d)
				continue
			}
			if !drain && !d.splice {
				return // a short read drained the socket
			}
		case err == nil: // EOF
			d.eof = true
		case err == unix.EAGAIN:
			// Drained, and the pipe (if any) is empty: it goes back to
			// the loop until bytes arrive again.
			c.putPipe(d)
			return
		default:
			c.finish(resultOK, false)
			return
		}
	}
}

// flush writes what is pending towards dst; false while some is left (or
// the connection ended on an error).
func (c *lconn) flush(dir, dst int) bool {
	d := &c.d[dir]
	for len(d.pend) > 0 {
		n, err := rawWrite(dst, d.pend)
		if n > 0 {
			d.pend = d.pend[n:]
			d.n += int64(n)
			continue
		}
		if err != unix.EAGAIN {
			c.finish(resultOK, false)
		}
		return false
	}
	d.pend = nil
	for d.inPipe > 0 {
		n, err := unix.Splice(d.pipe[0], nil, dst, nil, d.inPipe, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		if n > 0 {
			d.inPipe -= int(n)
			d.n += n
			continue
		}
		if err != unix.EAGAIN {
			c.finish(resultOK, false)
		}
		return false
	}
	return true
}

// toSplice switches a direction to splice through a pipe of the loop (if
// one can be had; else it stays on read/write).
func (c *lconn) toSplice(d *ldir) {
	d.splice = c.takePipe(d)
}

// takePipe gives d an empty pipe of the loop (a new one when the loop has
// none); false if none can be had.
func (c *lconn) takePipe(d *ldir) bool {
	p, err := c.lp.pipes.get()
	if err != nil {
		return false
	}
	d.pipe = p
	return true
}

// putPipe gives d's pipe, empty, back to the loop (see pipePool): a
// direction holds a pipe only while bytes move, so an idle connection that
// once carried bulk holds no pipe and no descriptor beyond its two sockets.
func (c *lconn) putPipe(d *ldir) {
	if d.pipe[0] == 0 || d.inPipe > 0 {
		return
	}
	c.lp.pipes.put(d.pipe)
	d.pipe = [2]int{}
}

// passEOF passes the end of dir on: a half-close, or the close of both
// sockets when the other direction has ended too.
func (c *lconn) passEOF(dir, dst int) {
	c.d[dir].done = true
	if c.d[1-dir].done {
		c.finish(resultOK, false)
		return
	}
	rawShutdown(dst, unix.SHUT_WR)
}

// connect starts the next connect attempt (to e when a helper picked it),
// or fails the connection when the budget is spent.
func (c *lconn) connect(e *pucache.Element) {
	lp := c.lp
	d := c.dialer
	attempts := d.Config().Attempts
	for c.state == stConnecting && len(c.atts) == 0 {
		if c.started >= attempts || !lp.now.Before(c.deadline) {
			c.finish(resultNoBackend, true)
			return
		}
		var pe pucache.Element
		if e != nil {
			pe, e = *e, nil
		} else {
			var err error
			if pe, err = d.Pick(&c.tried, nil, lp.now); err != nil {
				c.wait()
				return
			}
		}
		if pe.Network != "tcp" {
			c.handOffConnecting()
			return
		}
		c.start(pe)
	}
}

// hedge starts a second attempt alongside a pending one, if a PE can be
// had without waiting.
func (c *lconn) hedge() {
	if c.state != stConnecting || len(c.atts) == 0 || c.started >= c.dialer.Config().Attempts {
		return
	}
	ids := make([]uint32, len(c.atts))
	for i, a := range c.atts {
		ids[i] = a.e.ID
	}
	if pe, err := c.dialer.Pick(&c.tried, ids, c.lp.now); err == nil && pe.Network == "tcp" {
		c.start(pe)
	}
}

// start connects to pe without blocking; an immediate failure counts as
// the PE's failure.
func (c *lconn) start(pe pucache.Element) {
	lp := c.lp
	d := c.dialer
	c.started++
	var src netip.Addr
	if c.st.srcIP {
		src = c.remote.Addr()
	}
	fd, err := connectSocket(pe.Addr, src)
	var local *localError
	if errors.As(err, &local) {
		// Not the PE's fault: no report, and no other PE would do better.
		c.lastErr = err
		c.finish(resultNoBackend, true)
		return
	}
	if err != nil {
		c.failed(pe, err)
		return
	}
	a := &latt{c: c, dialer: d, fd: fd, e: pe, begin: lp.now}
	a.t = ltimer{kind: tConnect, a: a, i: -1}
	if a.slot, err = lp.register(fd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET, a); err != nil {
		unix.Close(fd)
		c.failed(pe, err)
		return
	}
	c.atts = append(c.atts, a)
	timeout := min(d.Config().ConnectTimeout, c.deadline.Sub(lp.now))
	lp.arm(&a.t, lp.now.Add(timeout))
	if delay, ok := d.HedgeDelay(pe.ID, lp.now); ok && c.started < d.Config().Attempts {
		lp.arm(&c.t[tHedge], lp.now.Add(delay))
	}
}

// failed counts a failed attempt and moves on.
func (c *lconn) failed(pe pucache.Element, err error) {
	c.fail(pe, err)
	c.connect(nil)
}

// fail reports a PE that failed this connection.
func (c *lconn) fail(pe pucache.Element, err error) {
	c.lastErr = fmt.Errorf("PE 0x%08x at %s: %w", pe.ID, pe.Addr, err)
	c.dialer.Fail(&c.tried, pe, err)
}

func (c *lconn) noBackendErr() error {
	if c.lastErr != nil {
		return fmt.Errorf("%w: %w", failover.ErrBudget, c.lastErr)
	}
	return failover.ErrBudget
}

// wait lets a helper goroutine wait for the next PE (first resolution of
// the pool, or backoff and resolution after every PE failed); the client's
// bytes wait in its socket.
func (c *lconn) wait() {
	c.state = stWaiting
	lp, p := c.lp, c.l.p
	lp.ls.wg.Add(1)
	go func() {
		defer lp.ls.wg.Done()
		e, _, err := c.dialer.Next(p.ctx, &c.tried, nil, c.deadline, &c.backoff)
		lp.post(func() {
			if c.state != stWaiting {
				return
			}
			c.state = stConnecting
			lp.now = time.Now()
			if err != nil {
				result := resultNoBackend
				if p.ctx.Err() != nil {
					result = resultAborted
				}
				c.lastErr = err
				c.finish(result, true)
				return
			}
			c.connect(&e)
		})
	}()
}

// handOffConnecting gives a connection whose PE is not reachable over TCP
// from the loop (an SCTP user transport) to the goroutine relay.
func (c *lconn) handOffConnecting() {
	lp := c.lp
	fd := c.cfd
	lp.unregister(c.cslot, fd)
	c.cfd = -1
	c.state = stClosed
	c.stopTimers()
	delete(lp.conns, c)
	c.l.p.loopConns.Add(-1)
	go c.l.handOff(fd, c.st)
}

// event of a connect attempt (or of a probe).
func (a *latt) event(lp *evloop, _ int32, ev uint32) {
	var err error
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		if v, gerr := unix.GetsockoptInt(a.fd, unix.SOL_SOCKET, unix.SO_ERROR); gerr != nil {
			err = gerr
		} else if v != 0 {
			err = syscall.Errno(v)
		} else {
			err = errors.New("connection closed")
		}
	} else if ev&unix.EPOLLOUT == 0 {
		return
	}
	a.done(lp, err, ev)
}

// done ends an attempt: connected (err nil) or failed. ev is the event
// that said so: it may already tell of the PE's first bytes or its end.
func (a *latt) done(lp *evloop, err error, ev uint32) {
	lp.disarm(&a.t)
	c := a.c
	if c == nil { // a probe: learn the PE's fate, then close
		if err == nil {
			a.dialer.Connected(a.e.ID, lp.now.Sub(a.begin))
		} else if lp.ls.p.ctx.Err() == nil {
			a.dialer.Fail(nil, a.e, err)
		}
		a.close(lp)
		return
	}
	c.remove(a)
	if err != nil {
		lp.release(a.slot)
		rawClose(a.fd)
		c.fail(a.e, err)
		c.connect(nil)
		return
	}
	c.dialer.Connected(a.e.ID, lp.now.Sub(a.begin))
	if c.dialer.OnConnect != nil {
		c.dialer.OnConnect(a.e)
	}
	for _, o := range c.atts { // overtaken: they finish as probes
		o.c = nil
		c.dialer.Overtaken(o.e.ID, lp.now)
		lp.probes[o] = struct{}{}
	}
	c.atts = nil
	lp.disarm(&c.t[tHedge])
	c.bfd, c.bslot, c.pe = a.fd, a.slot, a.e
	lp.slots[a.slot].h = c
	c.state = stRelay
	c.l.lm.ok.Inc()
	c.active = lp.now
	if c.st.idle > 0 {
		lp.arm(&c.t[tIdle], lp.now.Add(c.st.idle))
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		c.d[1].hup = true
	}
	if len(c.prelude) > 0 {
		// The PROXY header is not the client's: not counted as relayed.
		c.d[0].pend, c.d[0].n = c.prelude, -int64(len(c.prelude))
		if !c.flush(0, c.bfd) {
			return
		}
	}
	// The client's bytes that arrived while connecting (their edge is
	// gone), and what the PE already sent (a server that speaks first).
	c.pump(0, false)
	if c.state == stRelay && ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		c.pump(1, false)
	}
}

func (c *lconn) remove(a *latt) {
	for i, x := range c.atts {
		if x == a {
			c.atts = append(c.atts[:i], c.atts[i+1:]...)
			return
		}
	}
}

// close abandons an attempt or a probe.
func (a *latt) close(lp *evloop) {
	lp.disarm(&a.t)
	delete(lp.probes, a)
	lp.release(a.slot)
	rawClose(a.fd)
}

// finish closes the connection (reset sends an RST to the client) and
// accounts for it.
func (c *lconn) finish(result string, reset bool) {
	if c.state == stClosed {
		return
	}
	lp, l := c.lp, c.l
	wasRelay := c.state == stRelay
	if result == resultNoBackend && !wasRelay {
		c.logNoBackend() // while the client's socket is open
	}
	c.state = stClosed
	c.stopTimers()
	for _, a := range c.atts {
		a.close(lp)
	}
	c.atts = nil
	if c.cfd >= 0 {
		if reset {
			unix.SetsockoptLinger(c.cfd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
		}
		lp.release(c.cslot)
		rawClose(c.cfd)
	}
	if c.bfd >= 0 {
		lp.release(c.bslot)
		rawClose(c.bfd)
	}
	for i := range c.d {
		d := &c.d[i]
		if d.pipe[0] > 0 && d.inPipe > 0 {
			unix.Close(d.pipe[0])
			unix.Close(d.pipe[1])
			d.pipe = [2]int{}
		}
		c.putPipe(d)
		d.pend = nil
	}
	delete(lp.conns, c)
	l.p.loopConns.Add(-1)
	if !wasRelay {
		if result == resultOK {
			result = resultAborted
		}
		l.ended(result, c.d[0].n, c.d[1].n)
	} else {
		l.ended("", c.d[0].n, c.d[1].n)
	}
	l.p.wg.Done()
}

func (c *lconn) logNoBackend() {
	l := c.l
	if c.dialer == nil {
		l.p.log.Warn("no pool for the original destination", "listener", l.label, "dst", c.dst.String(), "client", c.remoteString())
		return
	}
	l.p.log.Warn("no pool element reachable", "listener", l.label, "pool", c.dialer.Pool.Handle(),
		"client", c.remoteString(), "err", c.noBackendErr())
}

func (c *lconn) stopTimers() {
	for i := range c.t {
		c.lp.disarm(&c.t[i])
	}
}

func (c *lconn) remoteString() string {
	if c.remote.IsValid() {
		return c.remote.String()
	}
	if sa, err := unix.Getpeername(c.cfd); err == nil {
		return addrPortOf(sa).String()
	}
	return "?"
}

// ended accounts for a connection that ends: its result (unless it was
// already counted as ok), its bytes, and the active gauge.
func (l *listener) ended(result string, toB, toC int64) {
	switch result {
	case resultAborted:
		l.lm.aborted.Inc()
	case resultNoBackend:
		l.lm.noBackend.Inc()
	}
	l.lm.toBackend.Add(float64(toB))
	l.lm.toClient.Add(float64(toC))
	l.active.Add(-1)
	l.lm.active.Dec()
}

// connectSocket starts a non-blocking connect to addr ("host:port"); the
// returned socket has TCP_NODELAY and keep-alive with the kernel's timers
// (net.ipv4.tcp_keepalive_*): two system calls, where Go's dialer made
// four to set its own 15 s.
// With src valid, the connection comes from src (transparent_source):
// IP_TRANSPARENT lets it bind to an address the host does not own. A
// failure to set that up is a *localError.
func connectSocket(addr string, src netip.Addr) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return -1, err
	}
	family := unix.AF_INET6
	if ap.Addr().Unmap().Is4() {
		family = unix.AF_INET
	}
	fd, err := rawSocket(family)
	if err != nil {
		return -1, &localError{os.NewSyscallError("socket", err)}
	}
	rawSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	rawSetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	if src.IsValid() {
		if err := bindTransparent(fd, family, src); err != nil {
			unix.Close(fd)
			return -1, &localError{err}
		}
	}
	if err := rawConnect(fd, ap); err != nil && err != unix.EINPROGRESS {
		rawClose(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	return fd, nil
}

// localError is a failure of this host (socket, transparent bind), not of
// the PE.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// bindTransparent binds fd to src (any port) with IP_TRANSPARENT.
func bindTransparent(fd, family int, src netip.Addr) error {
	src = src.Unmap()
	if src.Is4() != (family == unix.AF_INET) {
		return fmt.Errorf("transparent_source: client %s and PE are of different address families", src)
	}
	level, opt := unix.SOL_IP, unix.IP_TRANSPARENT
	if family == unix.AF_INET6 {
		level, opt = unix.SOL_IPV6, unix.IPV6_TRANSPARENT
	}
	if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
		return fmt.Errorf("transparent_source: %w", os.NewSyscallError("setsockopt", err))
	}
	// The port comes with connect: the 4-tuple need only be unique.
	unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	sa, _ := sockaddr(netip.AddrPortFrom(src, 0))
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("transparent_source: %w", os.NewSyscallError("bind", err))
	}
	return nil
}
