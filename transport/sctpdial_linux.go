//go:build linux && !386

package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/ishidawataru/sctp"
	"golang.org/x/sys/unix"
)

// connectSCTP is the one SCTP connect of this project. It opens a
// non-blocking one-to-one SCTP socket, binds it to local when that is not
// zero (SO_REUSEPORT, so that a listener with ReusePort may hold the same
// endpoint), starts the association to every address of a (sctp_connectx
// for a multi-homed peer) and waits on the runtime poller until it is up,
// failed, ctx's deadline passed or ctx was cancelled (then the socket is
// closed and ctx's error returned). The socket is returned as an *os.File
// owned by the caller.
func connectSCTP(ctx context.Context, a Addr, local Addr) (*os.File, error) {
	if ok, err := SCTPAvailable(); !ok {
		return nil, err
	}
	if a.Scheme() != SchemeSCTP {
		return nil, fmt.Errorf("not an sctp:// address")
	}
	ips, err := resolveHosts(ctx, a)
	if err != nil {
		return nil, err
	}
	family := syscall.AF_INET
	for _, ip := range ips {
		if ip.Is6() {
			family = syscall.AF_INET6
		}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_SCTP)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if family == syscall.AF_INET6 {
		// IPv4 peers of a mixed address list are reached as mapped addresses.
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0)
	}
	if !local.IsZero() {
		if err := bindSCTP(ctx, fd, local, family); err != nil {
			syscall.Close(fd)
			return nil, fmt.Errorf("bind %s: %w", local, err)
		}
	}
	im := sctp.InitMsg{NumOstreams: sctp.SCTP_MAX_STREAM, MaxInstreams: sctp.SCTP_MAX_STREAM}
	if _, _, e := syscall.Syscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_SCTP, sctp.SCTP_INITMSG,
		uintptr(unsafe.Pointer(&im)), unsafe.Sizeof(im), 0); e != 0 {
		syscall.Close(fd)
		return nil, fmt.Errorf("setsockopt SCTP_INITMSG: %w", e)
	}
	if len(ips) == 1 {
		err = syscall.Connect(fd, sockaddr(ips[0], a.Port(), family))
	} else {
		sa := &sctp.SCTPAddr{Port: int(a.Port())}
		for _, ip := range ips {
			sa.IPAddrs = append(sa.IPAddrs, net.IPAddr{IP: ip.AsSlice(), Zone: ip.Zone()})
		}
		_, err = sctp.SCTPConnect(fd, sa)
	}
	if err != nil && !errors.Is(err, syscall.EINPROGRESS) {
		syscall.Close(fd)
		return nil, err
	}
	// The descriptor is non-blocking, so os.NewFile registers it with the
	// runtime poller; from here on f owns it.
	f := os.NewFile(uintptr(fd), "sctp:"+a.String())
	if d, ok := ctx.Deadline(); ok {
		if err := f.SetWriteDeadline(d); err != nil {
			f.Close()
			return nil, err
		}
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	var soErr int
	var gerr error
	werr := rc.Write(func(fd uintptr) bool {
		soErr, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
		// Writable: the association is up (SO_ERROR 0) or failed (SO_ERROR
		// set). The poller may report a socket not yet connected writable
		// once, hence the getpeername check.
		return gerr != nil || soErr != 0 || connected(int(fd))
	})
	stop()
	switch {
	case werr != nil && ctx.Err() != nil:
		err = ctx.Err()
	case werr != nil && errors.Is(werr, os.ErrDeadlineExceeded):
		err = context.DeadlineExceeded
	case werr != nil:
		err = werr
	case gerr != nil:
		err = gerr
	case soErr != 0:
		err = syscall.Errno(soErr)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := f.SetWriteDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// bindSCTP binds socket fd (of family) to every address of local and its
// port, with SO_REUSEPORT.
func bindSCTP(ctx context.Context, fd int, local Addr, family int) error {
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fmt.Errorf("setsockopt SO_REUSEPORT: %w", err)
	}
	ips, err := resolveHosts(ctx, local)
	if err != nil {
		return err
	}
	sa := &sctp.SCTPAddr{Port: int(local.Port())}
	for _, ip := range ips {
		if family == syscall.AF_INET && !ip.Is4() {
			return fmt.Errorf("%v: an IPv6 address to reach an IPv4 peer", ip)
		}
		sa.IPAddrs = append(sa.IPAddrs, net.IPAddr{IP: ip.AsSlice(), Zone: ip.Zone()})
	}
	return sctp.SCTPBind(fd, sa, sctp.SCTP_BINDX_ADD_ADDR)
}

// resolveHosts returns the IP addresses of a's hosts (a name gives its
// first address; an empty host means 127.0.0.1, as for TCP), at most
// MaxHosts of them.
func resolveHosts(ctx context.Context, a Addr) ([]netip.Addr, error) {
	var ips []netip.Addr
	for _, h := range a.Hosts() {
		if h == "" {
			ips = append(ips, netip.AddrFrom4([4]byte{127, 0, 0, 1}))
			continue
		}
		if ip, err := netip.ParseAddr(h); err == nil {
			ips = append(ips, ip.Unmap())
			continue
		}
		found, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("no address for %q", h)
		}
		ips = append(ips, found[0].Unmap())
	}
	if len(ips) > MaxHosts {
		ips = ips[:MaxHosts]
	}
	return ips, nil
}

// sockaddr returns ip:port for a socket of the given family.
func sockaddr(ip netip.Addr, port uint16, family int) syscall.Sockaddr {
	if family == syscall.AF_INET {
		return &syscall.SockaddrInet4{Port: int(port), Addr: ip.As4()}
	}
	sa := &syscall.SockaddrInet6{Port: int(port), Addr: ip.As16()}
	if z := ip.Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return sa
}

// connected reports whether the socket has a peer (getpeername succeeds).
func connected(fd int) bool {
	_, err := syscall.Getpeername(fd)
	return err == nil
}

// dialSCTP connects a message conn (PPID per message) to a.
func dialSCTP(ctx context.Context, a Addr, cfg resolved) (Conn, error) {
	f, err := connectSCTP(ctx, a, cfg.local)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", a, err)
	}
	// The message conn does blocking sendmsg/recvmsg on its own
	// descriptor: take a close-on-exec duplicate out of the poller's hands.
	var fd int
	var derr error
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Control(func(s uintptr) {
			r, _, e := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
			if e != 0 {
				derr = e
				return
			}
			fd = int(r)
		})
	}
	f.Close()
	if err == nil {
		err = derr
	}
	if err == nil {
		if err = syscall.SetNonblock(fd, false); err != nil {
			syscall.Close(fd)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", a, err)
	}
	return newSCTPConn(sctp.NewSCTPConn(fd, sctpSocketConfig().NotificationHandler), cfg)
}

// dialSCTPStream connects a byte-stream net.Conn to a: each Write is one
// SCTP user message with PPID 0, reads return the data of the peer's
// messages. The socket stays on the runtime poller, so deadlines, Close
// and CloseWrite (SCTP SHUTDOWN) work as on TCP.
func dialSCTPStream(ctx context.Context, a Addr) (net.Conn, error) {
	f, err := connectSCTP(ctx, a, Addr{})
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", a, err)
	}
	defer f.Close() // net.FileConn keeps its own duplicate
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", a, err)
	}
	return c, nil
}

// listenSCTPStream listens for one-to-one SCTP associations carried as
// byte streams (the proxy's sctp:// listeners).
func listenSCTPStream(a Addr) (net.Listener, error) {
	if ok, err := SCTPAvailable(); !ok {
		return nil, fmt.Errorf("transport: listen %s: %w", a, err)
	}
	laddr, err := sctp.ResolveSCTPAddr("sctp", a.hostsPort())
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", a, err)
	}
	ln, err := sctp.ListenSCTP("sctp", laddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", a, err)
	}
	return ln, nil
}
