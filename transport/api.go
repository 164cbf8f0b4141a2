package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"
)

// Message is one whole upper-layer message with its SCTP-style metadata.
type Message struct {
	PPID   uint32 // 11 = ASAP, 12 = ENRP, anything else = application data
	Stream uint16
	Data   []byte
}

// Conn carries whole messages. ReadMessage may be called by one goroutine at a
// time; WriteMessage is safe for concurrent use with itself and ReadMessage;
// Close may be called at any time from any goroutine and unblocks both.
//
// The Data of a message returned by ReadMessage is valid until the next
// ReadMessage call (the buffer is reused); copy it to keep it.
type Conn interface {
	ReadMessage() (Message, error)
	WriteMessage(m Message) error
	Close() error
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// PeerAddrs returns every address of the peer: all SCTP paths, or the one
	// TCP peer address.
	PeerAddrs() []net.Addr
}

// Listener accepts message connections.
type Listener interface {
	Accept() (Conn, error)
	Close() error
	Addr() net.Addr
}

// Scheme names a transport in an address "scheme://host:port".
type Scheme string

const (
	SchemeTCP  Scheme = "tcp"  // TCP mapping for RSerPool (draft-ietf-rserpool-tcpmapping-03)
	SchemeSCTP Scheme = "sctp" // kernel SCTP, PPID per message
	SchemeTLS  Scheme = "tls"  // TLS over the TCP mapping
)

// Config tunes every transport. The zero value is usable: every zero field
// takes its documented default.
type Config struct {
	// HeartbeatInterval is the send-idle time after which the TCP mapping sends
	// a HEARTBEAT. Zero means 30 s (SCTP's HB.interval); negative disables.
	HeartbeatInterval time.Duration
	// HeartbeatMaxMissed is how many consecutive HEARTBEATs may go
	// unanswered before the connection fails. Zero means 5 (Path.Max.Retrans).
	HeartbeatMaxMissed int
	// MaxMessageSize bounds one message (and one chunk). Zero means 65535.
	MaxMessageSize int
	// TLS is required for the tls scheme (server side: certificates and
	// ClientAuth for mutual authentication; client side: roots, ServerName).
	TLS *tls.Config
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger
}

// ErrNoSCTP is returned for sctp:// addresses where the kernel has no SCTP.
var ErrNoSCTP = errors.New("transport: kernel has no SCTP support")

// Dial connects to addr ("tcp://h:p", "sctp://h:p", "tls://h:p"; a bare
// "h:p" means tcp).
func Dial(ctx context.Context, addr string, cfg *Config) (Conn, error) {
	panic("unimplemented")
}

// Listen listens on addr (same forms as Dial; port 0 picks a free port).
func Listen(addr string, cfg *Config) (Listener, error) {
	panic("unimplemented")
}

// SCTPAvailable reports whether the running kernel supports SCTP sockets, and
// if not, why.
func SCTPAvailable() (bool, error) { panic("unimplemented") }

// SplitAddr splits "scheme://host:port" into its scheme (default tcp) and host:port.
func SplitAddr(addr string) (Scheme, string, error) { panic("unimplemented") }
