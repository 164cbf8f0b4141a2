//go:build unix

package transport

import "syscall"

// tryReadFD is c.tryFn: one non-blocking read(2).
func (c *mapConn) tryReadFD(fd uintptr) bool {
	n, err := syscall.Read(int(fd), c.tryBuf)
	switch {
	case err == nil && n > 0:
		c.tryN = n
	case err == syscall.EAGAIN || err == syscall.EINTR:
	default:
		c.tryN = -1 // the end of the stream (0 bytes) or an error
	}
	return true // never wait for readiness
}
