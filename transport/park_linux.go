package transport

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Parker watches idle TCP-mapping connections for input without a goroutine
// each: a server with many idle connections parks each one instead of
// leaving a goroutine blocked in ReadMessage, and is called back when there
// is something to read. One goroutine waits for all of them, in Go's
// netpoller, on an epoll descriptor in which each parked connection's socket
// is registered once (level-triggered, one-shot).
//
// A Parker is safe for concurrent use.
type Parker struct {
	epfd int
	epf  *os.File // epfd, polled by the netpoller
	rc   syscall.RawConn
	wg   sync.WaitGroup // the wait loop

	mu     sync.Mutex // guards parked, next and closed
	parked map[uint64]*mapConn
	next   uint64
	closed bool
}

// NewParker starts a Parker. On systems without epoll it returns a Parker
// whose Park always reports false.
func NewParker() (*Parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(epfd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &Parker{epfd: epfd, epf: f, rc: rc, parked: map[uint64]*mapConn{}}
	p.wg.Add(1)
	go p.wait()
	return p, nil
}

// CanPark reports whether c is a connection Park may take (plain TCP
// mapping), so that a caller knows whether waiting for it to go quiet
// (ReadMessageWithin) is of use.
func (p *Parker) CanPark(c Conn) bool {
	mc, ok := c.(*mapConn)
	return ok && mc.rc != nil
}

// Park arranges for resume to run on a new goroutine once c has input
// (bytes, the peer's end of stream or a reset) or fails or is closed, and
// reports true; c holds no goroutine and no buffer meanwhile, and the
// caller's goroutine may end. It reports false, and changes nothing, when c
// cannot be parked or should be read at once: c is not a plain TCP-mapping
// connection (TLS and SCTP are not parked), it is parked already, a
// ReadMessage is running, bytes
// are buffered or arrived already, or c has ended (ReadMessage returns its
// error). resume is the caller's: whatever waits for the caller's goroutine
// must wait for it as well.
func (p *Parker) Park(c Conn, resume func()) bool {
	mc, ok := c.(*mapConn)
	if !ok || mc.rc == nil || !mc.rmu.TryLock() {
		return false
	}
	defer mc.rmu.Unlock()
	if mc.parkedOn.Load() != nil || mc.rerr != nil || mc.handshake || mc.closed.Load() {
		return false
	}
	// Handle the control chunks that arrived (ACKs, HEARTBEATs...); a
	// message or a partial chunk is for ReadMessage.
	switch _, err := mc.readMessage(false, 0); {
	case err == errIdle:
	case err == errPending:
		return false
	default:
		mc.rerr = mc.fail(err)
		mc.rb.release()
		return false
	}
	fd := -1
	mc.rc.Control(func(s uintptr) { fd = int(s) })
	if fd < 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	select {
	case <-mc.done:
		return false
	default:
	}
	p.next++
	key := p.next
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))}
	// The socket stays registered, disabled, after its event: modify it,
	// or add it the first time (a closed socket leaves the set by itself).
	err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	if errors.Is(err, unix.ENOENT) {
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	}
	if err != nil {
		return false
	}
	p.parked[key] = mc
	mc.parkKey, mc.resume = key, resume
	mc.parkedOn.Store(p)
	return true
}

// unpark takes the connection parked under key, if it still is, and starts
// its resume.
func (p *Parker) unpark(key uint64) {
	p.mu.Lock()
	mc := p.parked[key]
	if mc == nil {
		p.mu.Unlock()
		return
	}
	delete(p.parked, key)
	resume := mc.resume
	mc.parkKey, mc.resume = 0, nil
	mc.parkedOn.Store(nil)
	p.mu.Unlock()
	go resume()
}

// wait is the goroutine taking epoll events until Close.
func (p *Parker) wait() {
	defer p.wg.Done()
	events := make([]unix.EpollEvent, 128)
	for {
		var n int
		var err error
		rerr := p.rc.Read(func(fd uintptr) bool {
			n, err = unix.EpollWait(int(fd), events, 0)
			return n > 0 || (err != nil && !errors.Is(err, unix.EINTR))
		})
		if rerr != nil {
			return // closed
		}
		if err != nil {
			continue
		}
		for _, ev := range events[:n] {
			p.unpark(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
		}
	}
}

// Close stops the Parker: it resumes every parked connection and waits for
// its own goroutine. Park reports false afterwards.
func (p *Parker) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	keys := make([]uint64, 0, len(p.parked))
	for k := range p.parked {
		keys = append(keys, k)
	}
	p.mu.Unlock()
	err := p.epf.Close()
	p.wg.Wait()
	for _, k := range keys {
		p.unpark(k)
	}
	return err
}

// unpark resumes c if it is parked: it failed or closed, which its socket
// will not signal (a closed descriptor leaves the epoll set silently).
func (c *mapConn) unpark() {
	p := c.parkedOn.Load()
	if p == nil {
		return
	}
	p.mu.Lock()
	key := c.parkKey
	p.mu.Unlock()
	if key != 0 {
		p.unpark(key)
	}
}
