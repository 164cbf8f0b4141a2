package proxy

import (
	"context"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rserpool/rserpool/transport"
)

// Accepted connections inherit keep-alive from the listening socket.
func TestAcceptedConnInheritsKeepAlive(t *testing.T) {
	ln, err := listenConfig.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rc, err := a.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][3]int{
		"SO_KEEPALIVE":  {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
		"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
		"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
		"TCP_NODELAY":   {syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
	}
	for name, o := range want {
		var v int
		var gerr error
		if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), o[0], o[1]) }); err != nil {
			t.Fatal(err)
		}
		if gerr != nil {
			t.Fatalf("%s: %v", name, gerr)
		}
		if v != o[2] {
			t.Errorf("%s = %d on the accepted connection, want %d", name, v, o[2])
		}
	}
}

// The event loops' listening socket passes the same options on: an
// accepted socket needs no setsockopt of its own.
func TestLoopAcceptedInheritsOptions(t *testing.T) {
	fd, addr, err := listenSocket(ListenerConfig{Listen: transport.MustParseAddr("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The listening socket is non-blocking: wait until it is readable.
	if _, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 5000); err != nil {
		t.Fatal(err)
	}
	afd, _, err := rawAccept(fd, false)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(afd)
	for name, o := range map[string][3]int{
		"SO_KEEPALIVE":  {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
		"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
		"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
		"TCP_NODELAY":   {syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
	} {
		v, err := syscall.GetsockoptInt(afd, o[0], o[1])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v != o[2] {
			t.Errorf("%s = %d on the accepted socket, want %d", name, v, o[2])
		}
	}
}
