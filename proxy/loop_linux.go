package proxy

import (
	"container/heap"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rserpool/rserpool/failover"
	"github.com/rserpool/rserpool/pucache"
)

// The event-loop engine (HAProxy's model): one loop per core over
// non-blocking sockets and epoll, each accepting from the shared listening
// sockets (EPOLLEXCLUSIVE), connecting to PEs without blocking and relaying
// in the same loop. A readiness event is answered by one read (a short read
// means the socket is drained) and the bytes are written at once; they are
// kept in a buffer only while the destination cannot take them. A read
// that fills the buffer switches the direction to splice through a pipe
// of its loop. No goroutine runs per connection, except to wait for a
// registrar (the pool cache is empty or every PE failed) and for listeners
// with the replay buffer, whose connections are handed to the goroutine
// relay.

// loopsAvailable: TCP listeners use the event loops unless configured
// otherwise (engine = "goroutine").
const loopsAvailable = true

const (
	scratchSize = 16 << 10 // read buffer of a loop; a full read means bulk
	pipeSize    = 1 << 20  // splice pipe (F_SETPIPE_SZ; the default 1 MiB limit)
	maxEvents   = 256
)

// loops is the set of event loops of a Proxy.
type loops struct {
	p  *Proxy
	ls []*evloop
	wg sync.WaitGroup // the loops and their helper goroutines
	rr atomic.Uint32  // next loop for a handed-in connection
}

func newLoops(p *Proxy) (*loops, error) {
	ls := &loops{p: p}
	n := loopCount()
	for range n {
		lp, err := newEvloop(ls)
		if err != nil {
			ls.stop()
			return nil, err
		}
		ls.ls = append(ls.ls, lp)
	}
	for _, lp := range ls.ls {
		ls.wg.Add(1)
		go lp.run()
	}
	return ls, nil
}

var loopCount = sync.OnceValue(func() int {
	// One loop per P the process was given (a core each by default), and
	// one more P for the rest of the process (cache, admin, helpers): a
	// loop keeps its P while it waits.
	n := max(1, runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(n + 1)
	return n
})

// stop ends every loop (closing what they still hold) and waits for them
// and for their helper goroutines.
func (ls *loops) stop() {
	for _, lp := range ls.ls {
		lp.post(func() { lp.quit = true })
	}
	ls.wg.Wait()
}

// closeConns closes every connection of every loop.
func (ls *loops) closeConns() {
	for _, lp := range ls.ls {
		lp.call(func() {
			for c := range lp.conns {
				c.finish(resultAborted, false)
			}
		})
	}
}

// listen binds l's address and starts accepting on every loop.
func (ls *loops) listen(l *listener) (acceptor, error) {
	fd, addr, err := listenSocket(l.cfg)
	if err != nil {
		return nil, err
	}
	s := &lsock{ls: ls, l: l, fd: fd, addr: addr, slots: make([]int32, len(ls.ls))}
	for i, lp := range ls.ls {
		var rerr error
		lp.call(func() { s.slots[i], rerr = lp.register(fd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE, s) })
		if rerr != nil {
			s.Close()
			return nil, rerr
		}
	}
	return s, nil
}

// acceptor is a bound listener of either engine.
type acceptor interface {
	Addr() net.Addr
	Close() error
}

// lsock is a listening socket shared by the loops.
type lsock struct {
	ls    *loops
	l     *listener
	fd    int
	addr  net.Addr
	slots []int32 // per loop; -1 when not registered
	once  sync.Once
}

func (s *lsock) Addr() net.Addr { return s.addr }

// Close stops accepting on every loop, then closes the socket.
func (s *lsock) Close() error {
	s.once.Do(func() {
		for i, lp := range s.ls.ls {
			lp.call(func() {
				if s.slots[i] > 0 {
					lp.unregister(s.slots[i], s.fd)
				}
				s.slots[i] = -1 // also ends a pause
			})
		}
		unix.Close(s.fd)
	})
	return nil
}

// listenSocket creates, binds and listens on a non-blocking TCP socket with
// the options accepted connections inherit (keep-alive, no Nagle).
func listenSocket(lc ListenerConfig) (int, net.Addr, error) {
	ap, err := netip.ParseAddrPort(lc.Listen.HostPort())
	if err != nil {
		return -1, nil, fmt.Errorf("proxy: listener %s: %w", lc.Label(), err)
	}
	sa, family := sockaddr(ap)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("proxy: listener %s: %w", lc.Label(), err)
	}
	fail := func(what string, err error) (int, net.Addr, error) {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("proxy: listener %s: %s: %w", lc.Label(), what, os.NewSyscallError(what, err))
	}
	opts := []struct{ level, opt, v int }{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
	}
	if family == unix.AF_INET6 {
		opts = append(opts, struct{ level, opt, v int }{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1})
	}
	opts = append(opts, interceptOpts(lc, family)...)
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			return fail("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		return fail("listen", err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, tcpAddr(bound), nil
}

func sockaddr(ap netip.AddrPort) (unix.Sockaddr, int) {
	a := ap.Addr().Unmap()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}, unix.AF_INET
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	return sa, unix.AF_INET6
}

func addrPortOf(sa any) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

func tcpAddr(sa unix.Sockaddr) *net.TCPAddr { return net.TCPAddrFromAddrPort(addrPortOf(sa)) }

// handler receives the events of a registered descriptor.
type handler interface {
	event(lp *evloop, slot int32, ev uint32)
}

type slot struct {
	gen int32
	h   handler
}

// evloop is one event loop: its epoll set, the descriptors registered in
// it and the connections it owns. Only its goroutine touches its state,
// except posted (see post).
type evloop struct {
	ls     *loops
	epfd   int
	wakefd int
	quit   bool
	now    time.Time
	buf    []byte
	events []unix.EpollEvent
	slots  []slot
	free   []int32
	timers timerHeap
	conns  map[*lconn]struct{}
	probes map[*latt]struct{} // overtaken connects finishing on their own
	pipes  [][2]int           // idle splice pipes

	mu      sync.Mutex // guards posted and stopped
	posted  []func()
	stopped bool
	woken   atomic.Bool
}

func newEvloop(ls *loops) (*evloop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	lp := &evloop{
		ls: ls, epfd: epfd, wakefd: wakefd, buf: make([]byte, scratchSize),
		events: make([]unix.EpollEvent, maxEvents), slots: make([]slot, 1),
		conns: map[*lconn]struct{}{}, probes: map[*latt]struct{}{},
	}
	if _, err := lp.register(wakefd, unix.EPOLLIN, wakeHandler{}); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, err
	}
	return lp, nil
}

type wakeHandler struct{}

func (wakeHandler) event(lp *evloop, _ int32, _ uint32) {
	var b [8]byte
	unix.Read(lp.wakefd, b[:])
	lp.woken.Store(false)
	lp.mu.Lock()
	fs := lp.posted
	lp.posted = nil
	lp.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// post runs f on the loop's goroutine; it returns false (and f never runs)
// when the loop has stopped. Safe for concurrent use.
func (lp *evloop) post(f func()) bool {
	lp.mu.Lock()
	if lp.stopped {
		lp.mu.Unlock()
		return false
	}
	lp.posted = append(lp.posted, f)
	lp.mu.Unlock()
	if !lp.woken.Swap(true) {
		one := [8]byte{1}
		unix.Write(lp.wakefd, one[:])
	}
	return true
}

// call runs f on the loop's goroutine and waits for it (or returns at once
// when the loop has stopped).
func (lp *evloop) call(f func()) {
	done := make(chan struct{})
	if lp.post(func() { f(); close(done) }) {
		<-done
	}
}

// register adds fd to the epoll set with events; the returned slot names
// it in later events.
func (lp *evloop) register(fd int, events uint32, h handler) (int32, error) {
	var s int32
	if n := len(lp.free); n > 0 {
		s, lp.free = lp.free[n-1], lp.free[:n-1]
	} else {
		s = int32(len(lp.slots))
		lp.slots = append(lp.slots, slot{})
	}
	lp.slots[s].h = h
	ev := unix.EpollEvent{Events: events, Fd: s, Pad: lp.slots[s].gen}
	if err := rawEpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		lp.release(s)
		return 0, os.NewSyscallError("epoll_ctl", err)
	}
	return s, nil
}

// unregister removes fd from the epoll set (needed only for a descriptor
// that stays open) and frees its slot.
func (lp *evloop) unregister(s int32, fd int) {
	rawEpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	lp.release(s)
}

// release frees a slot; events already returned for it are dropped.
func (lp *evloop) release(s int32) {
	lp.slots[s].h = nil
	lp.slots[s].gen++
	lp.free = append(lp.free, s)
}

func (lp *evloop) run() {
	defer lp.ls.wg.Done()
	lp.now = time.Now()
	for !lp.quit {
		timeout := -1
		if len(lp.timers) > 0 {
			d := time.Duration(lp.timers[0].at - lp.now.UnixNano())
			timeout = max(0, int((d+time.Millisecond-1)/time.Millisecond))
		}
		// Wait up to a millisecond without the scheduler; a loop with
		// nothing to do for longer waits through it, so that an idle
		// proxy neither holds its P nor gets preempted every 10 ms.
		short := timeout
		if short < 0 || short > 1 {
			short = 1
		}
		n, err := epollWait(lp.epfd, lp.events, short)
		if n == 0 && err == nil && timeout != short {
			if timeout > 0 {
				timeout -= short
			}
			n, err = unix.EpollWait(lp.epfd, lp.events, timeout)
		}
		lp.now = time.Now()
		if err != nil && err != unix.EINTR {
			lp.ls.p.log.Error("epoll_wait failed", "err", err)
		}
		for i := range max(n, 0) {
			ev := &lp.events[i]
			if s := ev.Fd; s < int32(len(lp.slots)) && lp.slots[s].gen == ev.Pad && lp.slots[s].h != nil {
				lp.slots[s].h.event(lp, s, ev.Events)
			}
		}
		// I/O first, so that a connect and its timer due at once count as
		// connected.
		now := lp.now.UnixNano()
		for len(lp.timers) > 0 && lp.timers[0].at <= now {
			t := heap.Pop(&lp.timers).(*ltimer)
			t.fire(lp)
		}
	}
	lp.shutdown()
}

// shutdown closes what the loop still holds, once it has quit.
func (lp *evloop) shutdown() {
	lp.mu.Lock()
	lp.stopped = true
	fs := lp.posted
	lp.posted = nil
	lp.mu.Unlock()
	for _, f := range fs {
		f()
	}
	for c := range lp.conns {
		c.finish(resultAborted, false)
	}
	for a := range lp.probes {
		a.close(lp)
	}
	for _, p := range lp.pipes {
		unix.Close(p[0])
		unix.Close(p[1])
	}
	unix.Close(lp.wakefd)
	unix.Close(lp.epfd)
}

// event of a listening socket: accept one connection. The socket is
// level-triggered, so the next epoll_wait returns at once while more are
// queued, together with the other events: no accept ends in EAGAIN.
func (s *lsock) event(lp *evloop, _ int32, _ uint32) {
	st := s.l.st.Load()
	fd, remote, err := rawAccept(s.fd, st.ppv != "" || st.pools != nil || st.srcIP)
	if err != nil {
		switch err {
		case syscall.EAGAIN, syscall.ECONNABORTED, syscall.EINTR:
		default:
			// Out of descriptors or memory: the queued connection stays
			// readable and would spin the loop; pause accepting here.
			s.l.p.log.Error("accept failed", "listener", s.l.label, "err", err, "retry_in", acceptPause)
			s.pause(lp)
		}
		return
	}
	s.l.accepted(lp, fd, remote)
}

// acceptPause is how long a loop stops accepting after accept failed for
// want of resources.
const acceptPause = 100 * time.Millisecond

// pause stops accepting on lp for acceptPause.
func (s *lsock) pause(lp *evloop) {
	i := slices.Index(s.ls.ls, lp)
	if s.slots[i] <= 0 {
		return
	}
	lp.unregister(s.slots[i], s.fd)
	s.slots[i] = 0
	t := &ltimer{kind: tResume, s: s, i: -1}
	lp.arm(t, lp.now.Add(acceptPause))
}

// resume accepts on lp again after a pause (unless the socket was closed).
func (s *lsock) resume(lp *evloop) {
	i := slices.Index(s.ls.ls, lp)
	if s.slots[i] != 0 {
		return
	}
	slot, err := lp.register(s.fd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE, s)
	if err != nil {
		s.l.p.log.Error("accept resume failed", "listener", s.l.label, "err", err)
		return
	}
	s.slots[i] = slot
}

// accepted takes a new client connection on lp.
func (l *listener) accepted(lp *evloop, fd int, remote netip.AddrPort) {
	p := l.p
	st := l.st.Load()
	if st.max > 0 && l.active.Load() >= st.max {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
		rawClose(fd)
		l.refused(st.max)
		return
	}
	l.active.Add(1)
	l.lm.active.Inc()
	p.wg.Add(1)
	if st.replay {
		// The goroutine relay runs the replay phase.
		go l.handOff(fd, st)
		return
	}
	p.loopConns.Add(1)
	c := &lconn{lp: lp, l: l, st: st, cfd: fd, bfd: -1, backoff: st.dialer.Config().Backoff}
	c.deadline = lp.now.Add(st.dialer.Config().Deadline)
	c.t[tIdle].c, c.t[tHedge].c = c, c
	c.t[tIdle].kind, c.t[tHedge].kind = tIdle, tHedge
	c.t[tIdle].i, c.t[tHedge].i = -1, -1
	var err error
	if c.cslot, err = lp.register(fd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET, c); err != nil {
		unix.Close(fd)
		c.cfd = -1
		l.ended(resultAborted, 0, 0)
		p.loopConns.Add(-1)
		return
	}
	lp.conns[c] = struct{}{}
	if st.ppv != "" || st.pools != nil || st.srcIP {
		local, _ := unix.Getsockname(fd)
		c.local, c.remote = addrPortOf(local), remote
		if st.pools != nil {
			c.dst = originalDst(fd, c.local)
			if c.dialer = st.pools.dialer(c.dst); c.dialer == nil {
				c.finish(resultNoBackend, true)
				return
			}
		}
		if st.ppv != "" {
			dst := c.dst
			if !dst.IsValid() {
				dst = c.local
			}
			c.prelude = proxyHeaderAddrs(st.ppv, c.remote, dst)
		}
	}
	if c.dialer == nil {
		c.dialer = st.dialer
	}
	c.connect(nil)
}

// handOff serves a connection accepted by a loop on the goroutine relay.
func (l *listener) handOff(fd int, st *settings) {
	f := os.NewFile(uintptr(fd), "client")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		l.p.log.Error("hand-off to the goroutine relay failed", "listener", l.label, "err", err)
		l.ended(resultAborted, 0, 0)
		l.p.wg.Done()
		return
	}
	l.handle(conn, st)
}

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
	pipe   [2]int // splice mode when pipe[0] > 0
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
			c.passEOF(dir, dst)
			return
		}
		var n int
		var err error
		if d.pipe[0] > 0 {
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
			full := n == len(lp.buf) && d.pipe[0] == 0
			if !c.flush(dir, dst) {
				if d.pipe[0] == 0 && len(d.pend) > 0 {
					d.pend = append(make([]byte, 0, len(d.pend)), d.pend...)
				}
				return
			}
			if full {
				c.toSplice(d)
				continue
			}
			if !drain && d.pipe[0] == 0 {
				return // a short read drained the socket
			}
		case err == nil: // EOF
			d.eof = true
		case err == unix.EAGAIN:
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
	lp := c.lp
	if n := len(lp.pipes); n > 0 {
		d.pipe, lp.pipes = lp.pipes[n-1], lp.pipes[:n-1]
		return
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return
	}
	unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, pipeSize)
	d.pipe = p
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
	a.done(lp, err)
}

// done ends an attempt: connected (err nil) or failed.
func (a *latt) done(lp *evloop, err error) {
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
	if len(c.prelude) > 0 {
		c.d[0].pend = c.prelude
		if !c.flush(0, c.bfd) {
			return
		}
	}
	c.pump(0, false)
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
		if d.pipe[0] > 0 {
			if d.inPipe == 0 {
				lp.pipes = append(lp.pipes, d.pipe)
			} else {
				unix.Close(d.pipe[0])
				unix.Close(d.pipe[1])
			}
		}
		d.pend = nil
	}
	delete(lp.conns, c)
	l.p.loopConns.Add(-1)
	if !wasRelay {
		switch {
		case result == resultNoBackend && c.dialer == nil:
			l.p.log.Warn("no pool for the original destination", "listener", l.label, "dst", c.dst.String(), "client", c.remoteString())
		case result == resultNoBackend:
			l.p.log.Warn("no pool element reachable", "listener", l.label, "pool", c.dialer.Pool.Handle(),
				"client", c.remoteString(), "err", c.noBackendErr())
		}
		if result == resultOK {
			result = resultAborted
		}
		l.ended(result, c.d[0].n, c.d[1].n)
	} else {
		l.ended("", c.d[0].n, c.d[1].n)
	}
	l.p.wg.Done()
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

// epollWait is epoll_wait as a raw system call: the loop keeps its P
// while it waits, as a HAProxy thread keeps its core. Through the
// scheduler (syscall.Syscall), every wait let the system monitor take the
// P away and wake another thread for it, and every wake-up took one back:
// 15 % of the proxy's CPU under connect/request/close load went to that.
// The loops use it for waits of up to a millisecond (and the runtime
// preempts a loop that runs 10 ms without a pause: its signal ends
// epoll_wait with EINTR); other goroutines run on the spare P.
func epollWait(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
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

// rawRead and rawWrite are read(2) and write(2) on non-blocking sockets,
// without the scheduler's bookkeeping for calls that may block.
func rawRead(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawWrite(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// ltimer is a deadline in a loop's timer heap.
type ltimer struct {
	at   int64 // UnixNano
	i    int   // heap index, -1 when not armed
	kind uint8
	c    *lconn
	a    *latt
	s    *lsock
}

func (t *ltimer) fire(lp *evloop) {
	switch t.kind {
	case tConnect:
		a := t.a
		if a.c == nil {
			// A probe that never connected: the PE is unreachable.
			if lp.ls.p.ctx.Err() == nil {
				a.dialer.Fail(nil, a.e, errConnectTimeout)
			}
			a.close(lp)
			return
		}
		c := a.c
		c.remove(a)
		a.close(lp)
		c.fail(a.e, errConnectTimeout)
		c.connect(nil)
	case tHedge:
		t.c.hedge()
	case tResume:
		t.s.resume(lp)
	case tIdle:
		c := t.c
		if c.state != stRelay {
			return
		}
		if at := c.active.Add(c.st.idle); at.After(lp.now) {
			lp.arm(t, at)
			return
		}
		c.finish(resultOK, false)
	}
}

var errConnectTimeout = errors.New("connect timeout")

func (lp *evloop) arm(t *ltimer, at time.Time) {
	t.at = at.UnixNano()
	if t.i >= 0 {
		heap.Fix(&lp.timers, t.i)
		return
	}
	heap.Push(&lp.timers, t)
}

func (lp *evloop) disarm(t *ltimer) {
	if t.i >= 0 {
		heap.Remove(&lp.timers, t.i)
	}
}

type timerHeap []*ltimer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].i, h[j].i = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*ltimer)
	t.i = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.i = -1
	return t
}
