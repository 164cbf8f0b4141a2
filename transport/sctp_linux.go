//go:build linux && !386

package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/ishidawataru/sctp"
	"golang.org/x/sys/unix"
)

// sctpProbe opens and closes one SCTP socket to learn whether the kernel
// supports SCTP (the module may be missing or blacklisted).
var sctpProbe = sync.OnceValues(func() (bool, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_SCTP)
	if err != nil {
		return false, fmt.Errorf("%w: socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): %w", ErrNoSCTP, err)
	}
	syscall.Close(fd)
	return true, nil
})

// SCTPAvailable reports whether the running kernel supports SCTP sockets, and
// if not, why (an error wrapping ErrNoSCTP). The probe runs once per process.
func SCTPAvailable() (bool, error) { return sctpProbe() }

// sctpSocketConfig subscribes to nothing but the per-message SndRcvInfo and
// drops any notification that still arrives, so that it is never taken for
// user data.
func sctpSocketConfig() *sctp.SocketConfig {
	return &sctp.SocketConfig{
		InitMsg:             sctp.InitMsg{NumOstreams: sctp.SCTP_MAX_STREAM, MaxInstreams: sctp.SCTP_MAX_STREAM},
		NotificationHandler: func([]byte) error { return nil },
	}
}

func listenSCTP(hostport string, cfg resolved) (Listener, error) {
	if ok, err := SCTPAvailable(); !ok {
		return nil, fmt.Errorf("transport: listen sctp://%s: %w", hostport, err)
	}
	laddr, err := sctp.ResolveSCTPAddr("sctp", hostport)
	if err != nil {
		return nil, fmt.Errorf("transport: listen sctp://%s: %w", hostport, err)
	}
	sc := sctpSocketConfig()
	if cfg.reusePort {
		if laddr.Port != 0 {
			// SO_REUSEPORT would let this listener share the port with
			// one of another process; take it only if nobody holds it.
			probe, err := sctpSocketConfig().Listen("sctp", laddr)
			if err != nil {
				return nil, fmt.Errorf("transport: listen sctp://%s: %w", hostport, err)
			}
			probe.Close()
		}
		sc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := sc.Listen("sctp", laddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen sctp://%s: %w", hostport, err)
	}
	return &sctpListener{ln: ln, cfg: cfg, addr: ln.Addr()}, nil
}

// sctpListener accepts one-to-one style SCTP associations.
type sctpListener struct {
	ln     *sctp.SCTPListener
	cfg    resolved
	addr   net.Addr
	closed atomic.Bool
	once   sync.Once
}

func (l *sctpListener) Accept() (Conn, error) {
	c, err := l.ln.AcceptSCTP()
	if err != nil {
		if l.closed.Load() {
			return nil, net.ErrClosed
		}
		return nil, fmt.Errorf("transport: sctp accept: %w", err)
	}
	sc, err := newSCTPConn(c, l.cfg)
	if err != nil {
		return nil, err
	}
	return sc, nil
}

func (l *sctpListener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		l.closed.Store(true)
		err = l.ln.Close()
	})
	return err
}

// Addr returns the bound addresses (a *sctp.SCTPAddr).
func (l *sctpListener) Addr() net.Addr { return l.addr }

// sctpConn is a Conn over a kernel SCTP association. Each ReadMessage is one
// recvmsg and each WriteMessage one sendmsg carrying the stream and PPID.
type sctpConn struct {
	c            *sctp.SCTPConn
	maxMsg       int
	buf          []byte // maxMsg+1 bytes, owned by the reading goroutine
	laddr, raddr net.Addr
	closed       atomic.Bool
	once         sync.Once
}

func newSCTPConn(c *sctp.SCTPConn, cfg resolved) (*sctpConn, error) {
	if err := c.SubscribeEvents(sctp.SCTP_EVENT_DATA_IO); err != nil {
		c.Close()
		return nil, fmt.Errorf("transport: sctp subscribe to SndRcvInfo: %w", err)
	}
	laddr, raddr := sctpAddr(c.LocalAddr()), sctpAddr(c.RemoteAddr())
	if laddr == nil || raddr == nil {
		// The association ended between the kernel's accept (or connect)
		// and here, e.g. a peer that gave up while it waited in the
		// backlog: a conn without addresses would crash its users.
		c.Close()
		return nil, errors.New("transport: sctp association gone before it was used (no addresses)")
	}
	return &sctpConn{
		c:      c,
		maxMsg: cfg.maxMsg,
		buf:    make([]byte, cfg.maxMsg+1),
		laddr:  laddr,
		raddr:  raddr,
	}, nil
}

// sctpAddr returns a, or nil when it is nil or a nil *sctp.SCTPAddr (the
// library returns one when the association has no address any more).
func sctpAddr(a net.Addr) net.Addr {
	if sa, ok := a.(*sctp.SCTPAddr); a == nil || (ok && (sa == nil || len(sa.IPAddrs) == 0)) {
		return nil
	}
	return a
}

// ReadMessage returns the next message with its stream and PPID. A message
// longer than MaxMessageSize fails the association (ErrTooLarge).
func (s *sctpConn) ReadMessage() (Message, error) {
	n, info, err := s.c.SCTPRead(s.buf)
	if err != nil {
		if s.closed.Load() {
			return Message{}, net.ErrClosed
		}
		if errors.Is(err, io.EOF) {
			return Message{}, io.EOF
		}
		return Message{}, fmt.Errorf("transport: sctp read: %w", err)
	}
	if n > s.maxMsg {
		s.Close()
		return Message{}, fmt.Errorf("%w: sctp message over %d bytes", ErrTooLarge, s.maxMsg)
	}
	m := Message{Data: s.buf[:n:n]}
	if info != nil {
		// The library converts the PPID from network byte order already.
		m.PPID, m.Stream = info.PPID, info.Stream
	}
	return m, nil
}

// WriteMessage sends m with one sendmsg; it is safe for concurrent use.
func (s *sctpConn) WriteMessage(m Message) error {
	if len(m.Data) > s.maxMsg {
		return fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, len(m.Data), s.maxMsg)
	}
	if s.closed.Load() {
		return net.ErrClosed
	}
	// SCTPWrite converts PPID to network byte order itself (htonl), so the
	// host value goes in and 11/12 appears on the wire. The info must not be
	// shared: SCTPWrite swaps its PPID in place.
	info := &sctp.SndRcvInfo{Stream: m.Stream, PPID: m.PPID}
	if _, err := s.c.SCTPWrite(m.Data, info); err != nil {
		if s.closed.Load() {
			return net.ErrClosed
		}
		return fmt.Errorf("transport: sctp write: %w", err)
	}
	return nil
}

// Close shuts the association down (SCTP_EOF) and unblocks ReadMessage. It
// is idempotent.
func (s *sctpConn) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		s.c.Close()
	})
	return nil
}

func (s *sctpConn) LocalAddr() net.Addr  { return s.laddr }
func (s *sctpConn) RemoteAddr() net.Addr { return s.raddr }

// PeerAddrs returns one *sctp.SCTPAddr per peer address of the association.
func (s *sctpConn) PeerAddrs() []net.Addr {
	a, err := s.c.SCTPRemoteAddr(0)
	if err != nil {
		if s.raddr == nil {
			return nil
		}
		return []net.Addr{s.raddr}
	}
	out := make([]net.Addr, 0, len(a.IPAddrs))
	for _, ip := range a.IPAddrs {
		out = append(out, &sctp.SCTPAddr{IPAddrs: []net.IPAddr{ip}, Port: a.Port})
	}
	return out
}
