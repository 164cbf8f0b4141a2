package proxy

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// pipePool keeps up to maxIdlePipes empty splice pipes: one per event loop
// and one for the goroutine relay. A direction takes a pipe only while
// bytes move and gives it back, empty, once its source is drained, so an
// idle connection holds none.
type pipePool struct {
	mu   sync.Mutex // guards free
	free [][2]int
}

// get returns an empty pipe of the pool, or a new one.
func (pp *pipePool) get() ([2]int, error) {
	pp.mu.Lock()
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	pp.mu.Unlock()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return p, os.NewSyscallError("pipe2", err)
	}
	unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, pipeSize)
	return p, nil
}

// put takes back an empty pipe, or closes it when the pool keeps enough.
func (pp *pipePool) put(p [2]int) {
	pp.mu.Lock()
	if len(pp.free) < maxIdlePipes {
		pp.free = append(pp.free, p)
		p = [2]int{}
	}
	pp.mu.Unlock()
	if p[0] > 0 {
		unix.Close(p[0])
		unix.Close(p[1])
	}
}

// close closes the pipes the pool keeps.
func (pp *pipePool) close() {
	pp.mu.Lock()
	free := pp.free
	pp.free = nil
	pp.mu.Unlock()
	for _, p := range free {
		unix.Close(p[0])
		unix.Close(p[1])
	}
}
