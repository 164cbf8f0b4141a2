//go:build !unix

package proxy

import "syscall"

// rawReads: the goroutine relay reads with Read into a pooled buffer.
const rawReads = false

func sysRead(fd uintptr, b []byte) (int, error) { return 0, syscall.EINVAL }
