package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// dialSCTP connects a one-to-one kernel SCTP socket to addr ("host:port",
// numeric) within timeout and returns it as a net.Conn. The socket is
// non-blocking and runs on the runtime poller (net.FileConn), so deadlines,
// Close and CloseWrite (SCTP SHUTDOWN) work as on TCP; each Write is one
// SCTP user message with PPID 0. RSPLIB pool elements register SCTP user
// transports, so a TCP relay reaches them this way.
func dialSCTP(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("sctp dial %s: %w", addr, err)
	}
	var (
		sa     syscall.Sockaddr
		family = syscall.AF_INET
	)
	if a := ap.Addr().Unmap(); a.Is4() {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_SCTP)
	if err != nil {
		return nil, fmt.Errorf("sctp dial %s: socket: %w", addr, err)
	}
	if err := syscall.Connect(fd, sa); err != nil && !errors.Is(err, syscall.EINPROGRESS) {
		syscall.Close(fd)
		return nil, fmt.Errorf("sctp dial %s: %w", addr, err)
	}
	// os.NewFile registers the non-blocking descriptor with the poller;
	// from here on f owns it.
	f := os.NewFile(uintptr(fd), "sctp:"+addr)
	defer f.Close() // net.FileConn keeps its own duplicate
	if err := f.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("sctp dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("sctp dial %s: %w", addr, err)
	}
	var soErr int
	var gerr error
	werr := rc.Write(func(fd uintptr) bool {
		soErr, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
		// Writable: the association is up (SO_ERROR 0) or failed (SO_ERROR set).
		return gerr != nil || soErr != 0 || connected(int(fd))
	})
	switch {
	case werr != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case werr != nil:
		return nil, fmt.Errorf("sctp dial %s: %w", addr, werr)
	case gerr != nil:
		return nil, fmt.Errorf("sctp dial %s: %w", addr, gerr)
	case soErr != 0:
		return nil, fmt.Errorf("sctp dial %s: %w", addr, syscall.Errno(soErr))
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("sctp dial %s: %w", addr, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// connected reports whether the socket has a peer (getpeername succeeds).
// The poller may report a not yet connected socket writable once spuriously.
func connected(fd int) bool {
	_, err := syscall.Getpeername(fd)
	return err == nil
}
