package proxy

import (
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// spliceBulk relays src to dst through a pipe for the goroutine relay's
// bulk path (both *net.TCPConn; ok false otherwise). Unlike io.Copy, whose
// splice keeps its pipe while it waits for the next bytes, a direction
// waits for readability in the netpoller without a pipe, takes one from
// relayPipes for the bytes that are there, and gives it back once the
// source is drained: an idle connection holds no pipe.
func (r *relay) spliceBulk(dst, src net.Conn) (int64, bool, error) {
	s, ok := newSplicer(dst, src)
	if !ok {
		return 0, false, nil
	}
	defer s.release()
	var total int64
	for {
		n, err := s.fill()
		if n > 0 {
			r.active.Store(true)
			if werr := s.drain(); werr != nil {
				return total, true, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, true, nil
		}
		if err != nil {
			return total, true, err
		}
	}
}

// splicer moves one direction through a pipe of relayPipes.
type splicer struct {
	src, dst   syscall.RawConn
	p          [2]int // the pipe while bytes move (p[0] > 0)
	inPipe     int
	n          int
	rerr, werr error
	// the RawConn callbacks, bound once: no allocation per transfer
	fillFn, drainFn func(fd uintptr) bool
}

func newSplicer(dst, src net.Conn) (*splicer, bool) {
	sc, ok1 := src.(*net.TCPConn)
	dc, ok2 := dst.(*net.TCPConn)
	if !ok1 || !ok2 {
		return nil, false
	}
	s := &splicer{}
	var err error
	if s.src, err = sc.SyscallConn(); err != nil {
		return nil, false
	}
	if s.dst, err = dc.SyscallConn(); err != nil {
		return nil, false
	}
	s.fillFn, s.drainFn = s.fillCB, s.drainCB
	return s, true
}

// fill waits until src has bytes and splices them into the pipe: the
// bytes in it, or io.EOF, or an error.
func (s *splicer) fill() (int, error) {
	s.n, s.rerr = 0, nil
	if err := s.src.Read(s.fillFn); err != nil {
		return 0, err
	}
	return s.n, s.rerr
}

func (s *splicer) fillCB(fd uintptr) bool {
	if s.p[0] == 0 {
		p, err := relayPipes.get()
		if err != nil {
			s.rerr = err
			return true
		}
		s.p = p
	}
	for {
		n, err := unix.Splice(int(fd), nil, s.p[1], nil, pipeSize, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			s.release() // drained: no pipe while waiting
			return false
		case err != nil:
			s.rerr = os.NewSyscallError("splice", err)
		case n == 0:
			s.rerr = io.EOF
		default:
			s.n, s.inPipe = int(n), int(n)
		}
		return true
	}
}

// drain writes the pipe to dst, waiting while dst cannot take it.
func (s *splicer) drain() error {
	s.werr = nil
	if err := s.dst.Write(s.drainFn); err != nil {
		return err
	}
	return s.werr
}

func (s *splicer) drainCB(fd uintptr) bool {
	for s.inPipe > 0 {
		n, err := unix.Splice(s.p[0], nil, int(fd), nil, s.inPipe, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		switch {
		case n > 0:
			s.inPipe -= int(n)
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return false
		case err != nil:
			s.werr = os.NewSyscallError("splice", err)
			return true
		default:
			s.werr = io.ErrShortWrite
			return true
		}
	}
	return true
}

// release gives the pipe back (closed if bytes are left in it).
func (s *splicer) release() {
	if s.p[0] == 0 {
		return
	}
	if s.inPipe > 0 {
		unix.Close(s.p[0])
		unix.Close(s.p[1])
	} else {
		relayPipes.put(s.p)
	}
	s.p, s.inPipe = [2]int{}, 0
}

// relayPipes are the empty pipes of the goroutine relay's splice path, at
// most maxIdlePipes of them.
var relayPipes pipePool
