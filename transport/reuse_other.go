//go:build !unix

package transport

import "syscall"

// reuseAddr is a no-op where SO_REUSEADDR is not set through syscall.
func reuseAddr(_, _ string, _ syscall.RawConn) error { return nil }
