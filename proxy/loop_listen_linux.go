package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Listening sockets of the event loops: shared by every loop, each
// accepting one connection per readiness.

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
		rawClose(fd)
		l.ended(resultAborted, 0, 0)
		p.loopConns.Add(-1)
		p.wg.Done()
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
