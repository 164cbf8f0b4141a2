// Package blackhole gives tests a TCP address on 127.0.0.1 whose SYNs the
// kernel drops, as a firewall that drops a server's packets does: a
// listening socket with a backlog of zero whose accept queue is full.
// Connects to it neither succeed nor fail until they time out. No root
// and no network namespace are needed.
//
// # Usage
//
//	addr := blackhole.Listen(t) // closed at the end of the test
//
// # Limitations
//
// Linux only (other kernels may answer a full queue with a reset).
package blackhole

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
)

// Listen returns the address of a black hole, closed with the test.
func Listen(t testing.TB) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
	// Fill the accept queue: a backlog of 0 holds one connection.
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return addr
}
