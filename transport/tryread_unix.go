//go:build unix

package transport

import "syscall"

// tryReadFD is c.tryFn: one non-blocking read(2).
func (c *mapConn) tryReadFD(fd uintptr) bool {
	n, err := syscall.Read(int(fd), c.tryBuf)
	if err == nil && n > 0 {
		c.tryN = n
	}
	return true // never wait for readiness
}
