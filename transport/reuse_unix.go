//go:build unix

package transport

import "syscall"

// reuseAddr sets SO_REUSEADDR so that several multicast receivers on one
// host can bind the same group and port.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
