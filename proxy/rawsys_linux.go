package proxy

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls of the event loops on non-blocking sockets, as raw
// system calls: none of them blocks, so the scheduler need not know. Made
// through it (syscall.Syscall), a connect or close that the kernel took
// long over let the system monitor take the loop's P away and wake another
// thread for it, which cost more than the call.

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func rawClose(fd int) {
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
}

func rawShutdown(fd, how int) {
	syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
}

func rawSocket(family int) (int, error) {
	fd, _, e := syscall.RawSyscall(syscall.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	return int(fd), errnoErr(e)
}

func rawSetsockoptInt(fd, level, opt, v int) error {
	iv := int32(v)
	_, _, e := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&iv)), 4, 0)
	return errnoErr(e)
}

func rawEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errnoErr(e)
}

// rawConnect starts connecting fd to ap (EINPROGRESS is the usual answer).
func rawConnect(fd int, ap netip.AddrPort) error {
	var raw unix.RawSockaddrInet6 // the larger of the two
	size := uintptr(unix.SizeofSockaddrInet6)
	a := ap.Addr().Unmap()
	if a.Is4() {
		r4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&raw))
		r4.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&r4.Port))[:], ap.Port())
		r4.Addr = a.As4()
		size = unix.SizeofSockaddrInet4
	} else {
		raw.Family = unix.AF_INET6
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:], ap.Port())
		raw.Addr = a.As16()
	}
	_, _, e := syscall.RawSyscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&raw)), size)
	return errnoErr(e)
}

// rawAccept accepts a connection on the listening socket fd, non-blocking;
// with peer it also returns the client's address (else the kernel need not
// copy it out).
func rawAccept(fd int, peer bool) (int, netip.AddrPort, error) {
	var raw unix.RawSockaddrAny
	size := uint32(unix.SizeofSockaddrAny)
	var rp, sp uintptr
	if peer {
		rp, sp = uintptr(unsafe.Pointer(&raw)), uintptr(unsafe.Pointer(&size))
	}
	nfd, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(fd), rp, sp, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	if !peer {
		return int(nfd), netip.AddrPort{}, nil
	}
	return int(nfd), rawAddrPort(&raw), nil
}

func rawAddrPort(raw *unix.RawSockaddrAny) netip.AddrPort {
	switch raw.Addr.Family {
	case unix.AF_INET:
		r4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&r4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(r4.Addr), port)
	case unix.AF_INET6:
		r6 := (*unix.RawSockaddrInet6)(unsafe.Pointer(raw))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&r6.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(r6.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// epollPoll is epoll_wait with a zero timeout as a raw system call: the
// loop looks for events without telling the scheduler, and waits through
// it (unix.EpollWait) only when there are none. Every wait made through
// the scheduler lets the system monitor take the loop's P away; a loop
// under load mostly finds events at once. (Waiting without the scheduler
// too, up to a millisecond or 50 µs, was tried: it holds the P that the
// process's goroutines need, and a goroutine readied onto it waits with
// it.)
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawRead and rawWrite are read(2) and write(2) on non-blocking sockets,
// without the scheduler's bookkeeping for calls that may block.
func rawRead(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawWrite(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
