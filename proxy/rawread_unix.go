//go:build unix

package proxy

import "syscall"

// rawReads: the goroutine relay may wait for readability without a buffer
// (pollReader) and read the descriptor itself.
const rawReads = true

func sysRead(fd uintptr, b []byte) (int, error) { return syscall.Read(int(fd), b) }
