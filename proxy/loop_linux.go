package proxy

import (
	"container/heap"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	// maxIdlePipes bounds the empty splice pipes a pipePool keeps for the
	// next bulk transfer (each loop's and the goroutine relay's); more
	// are closed when they empty.
	maxIdlePipes = 64
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

// loopCount is the number of loops: one per P the process was given (a
// core each by default).
func loopCount() int { return max(1, runtime.GOMAXPROCS(0)) }

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
	ls   *loops
	epfd int
	// epf and rc are the epoll descriptor in Go's netpoller (nil if it
	// cannot be: the loop then waits in epoll_wait); deadline is the read
	// deadline set on it.
	epf      *os.File
	rc       syscall.RawConn
	deadline time.Time
	wakefd   int
	quit     bool
	now      time.Time
	buf      []byte
	events   []unix.EpollEvent
	slots    []slot
	free     []int32
	timers   timerHeap
	conns    map[*lconn]struct{}
	probes   map[*latt]struct{} // overtaken connects finishing on their own
	pipes    pipePool           // empty splice pipes

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
	// The epoll descriptor is readable while events are ready: the loop
	// can park in the netpoller on it (see wait).
	if unix.SetNonblock(epfd, true) == nil {
		f := os.NewFile(uintptr(epfd), "epoll")
		if rc, err := f.SyscallConn(); err == nil && f.SetReadDeadline(time.Time{}) == nil {
			lp.epf, lp.rc = f, rc
		} else {
			// Not pollable here: keep the descriptor, drop the File
			// without closing it.
			lp.epfd, _ = dupClose(f)
		}
	}
	return lp, nil
}

// dupClose takes the descriptor back from a File that is not used: a
// duplicate of it, the File closed.
func dupClose(f *os.File) (int, error) {
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	return fd, err
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
		n, err := lp.wait(timeout)
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

// wait returns the next events, waiting up to timeout ms (-1: no bound).
// It looks with a raw zero-timeout epoll_wait (epollPoll); when there are
// none, the loop's goroutine parks in Go's netpoller on the epoll
// descriptor itself, which is readable while events are ready. So a
// waiting loop holds no P and no thread, and the system monitor has no
// blocked system call to take a P from: waiting in epoll_wait through
// syscall.Syscall made it hand the loop's P to another thread after 20 µs
// and poll every 20 µs, 20 % of the proxy's CPU under
// connect/request/close load; waiting in a raw epoll_wait held the P that
// the process's goroutines need.
func (lp *evloop) wait(timeout int) (int, error) {
	if lp.rc == nil || timeout == 0 {
		n, err := epollPoll(lp.epfd, lp.events)
		if n == 0 && err == nil && timeout != 0 {
			return unix.EpollWait(lp.epfd, lp.events, timeout)
		}
		return n, err
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = lp.now.Add(time.Duration(timeout) * time.Millisecond).Truncate(time.Millisecond)
	}
	if !deadline.Equal(lp.deadline) {
		lp.epf.SetReadDeadline(deadline)
		lp.deadline = deadline
	}
	var n int
	var err error
	rerr := lp.rc.Read(func(uintptr) bool {
		n, err = epollPoll(lp.epfd, lp.events)
		return n != 0 || err != nil
	})
	if rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) {
		return 0, rerr
	}
	return n, err
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
	lp.pipes.close()
	unix.Close(lp.wakefd)
	if lp.epf != nil {
		lp.epf.Close()
	} else {
		unix.Close(lp.epfd)
	}
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
