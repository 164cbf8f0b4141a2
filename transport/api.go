package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
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
// ReadMessage call (the buffer is reused); copy it to keep it. WriteMessage
// does not keep m.Data after it returns.
//
// Over the TCP mapping, WriteMessage returns once the frame is queued (it
// blocks only while the send queue is full); socket errors surface on later
// calls and on ReadMessage; Close flushes the queue within
// Config.CloseTimeout. Close is idempotent; after it, ReadMessage and
// WriteMessage return net.ErrClosed. A connection that failed (peer gone,
// ErrHeartbeatTimeout, ErrProtocol...) returns its failure from both; io.EOF
// from ReadMessage is the peer's orderly close, after every message it sent.
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

// Abort closes c at once where the transport can (the TCP mapping and TLS:
// no flush, no wait for the peer, the socket reset), and otherwise with
// Close. Use it for connections refused by a limit.
func Abort(c Conn) error {
	if a, ok := c.(interface{ Abort() error }); ok {
		return a.Abort()
	}
	return c.Close()
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
	// The TCP mapping caps it at 65519 (a chunk length is 16 bits and the
	// DATA header takes 16 bytes).
	MaxMessageSize int
	// TLS is required for the tls scheme (server side: certificates and
	// ClientAuth for mutual authentication; client side: roots, ServerName).
	TLS *tls.Config
	// ChunkTimeout bounds how long a partially received TCP-mapping chunk
	// (and a TLS server handshake) may take to complete. Zero means 30 s.
	ChunkTimeout time.Duration
	// CloseTimeout bounds how long Close waits to flush queued frames before
	// it closes the socket anyway. Zero means 2 s.
	CloseTimeout time.Duration
	// LocalAddr (sctp:// only) is the local endpoint, hosts and port, that
	// Dial binds its association to before connecting: a registrar dials
	// its ENRP peers from its own ENRP endpoint, as RSPLIB does, because
	// RSPLIB takes a peer's ENRP address from the association and drops a
	// Presence whose Server Information names another port. When a
	// listener holds that endpoint it must have been opened with
	// ReusePort. While an association between the two endpoints exists
	// (the peer dialed us), Dial fails with EADDRNOTAVAIL: use that one.
	// Zero means the kernel's choice.
	LocalAddr Addr
	// ReusePort (sctp:// listeners) lets associations dialed with
	// LocalAddr use the listening port (SO_REUSEPORT). Listen still fails
	// when another socket holds the port.
	ReusePort bool
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger
}

// Defaults of Config's zero fields.
const (
	DefaultHeartbeatInterval  = 30 * time.Second
	DefaultHeartbeatMaxMissed = 5
	DefaultMaxMessageSize     = 65535
	DefaultChunkTimeout       = 30 * time.Second
	DefaultCloseTimeout       = 2 * time.Second
	// MaxMappingMessageSize is the largest message the TCP mapping carries.
	MaxMappingMessageSize = maxChunkLen - dataHdrFull
)

// resolved is a Config with its defaults applied.
type resolved struct {
	hbInterval   time.Duration // <= 0: no heartbeats
	hbMaxMissed  int
	maxMsg       int // largest message accepted and sent
	maxChunk     int // largest chunk length accepted
	chunkTimeout time.Duration
	closeTimeout time.Duration
	tls          *tls.Config
	logger       *slog.Logger
	local        Addr // sctp:// dials: bind here first
	reusePort    bool // sctp:// listeners: SO_REUSEPORT
}

func resolve(cfg *Config) resolved {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	r := resolved{
		hbInterval:   c.HeartbeatInterval,
		hbMaxMissed:  c.HeartbeatMaxMissed,
		maxMsg:       c.MaxMessageSize,
		chunkTimeout: c.ChunkTimeout,
		closeTimeout: c.CloseTimeout,
		tls:          c.TLS,
		logger:       c.Logger,
		local:        c.LocalAddr,
		reusePort:    c.ReusePort,
	}
	if r.hbInterval == 0 {
		r.hbInterval = DefaultHeartbeatInterval
	}
	if r.hbMaxMissed <= 0 {
		r.hbMaxMissed = DefaultHeartbeatMaxMissed
	}
	if r.maxMsg <= 0 {
		r.maxMsg = DefaultMaxMessageSize
	}
	if r.chunkTimeout <= 0 {
		r.chunkTimeout = DefaultChunkTimeout
	}
	if r.closeTimeout <= 0 {
		r.closeTimeout = DefaultCloseTimeout
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	return r
}

// mapping returns r limited to what the TCP mapping can carry.
func (r resolved) mapping() resolved {
	r.maxMsg = min(r.maxMsg, MaxMappingMessageSize)
	r.maxChunk = min(maxChunkLen, r.maxMsg+dataHdrFull)
	return r
}

// ErrNoSCTP is returned for sctp:// addresses where the kernel has no SCTP.
var ErrNoSCTP = errors.New("transport: kernel has no SCTP support")

// Dial connects a message conn to addr. The context bounds the connection
// set-up: the connect (SCTP included: connect(2) is abandoned at ctx's
// deadline or cancellation) and for tls:// the handshake too.
func Dial(ctx context.Context, addr Addr, cfg *Config) (Conn, error) {
	if addr.IsZero() {
		return nil, errors.New("transport: dial: no address")
	}
	r := resolve(cfg)
	switch addr.Scheme() {
	case SchemeSCTP:
		return dialSCTP(ctx, addr, r)
	case SchemeTLS:
		if r.tls == nil {
			return nil, fmt.Errorf("transport: dial %s: Config.TLS is required", addr)
		}
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr.HostPort())
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	if addr.Scheme() == SchemeTCP {
		return newMapConn(raw, raw, r.mapping(), false), nil
	}
	tc := r.tls.Clone()
	if tc.ServerName == "" {
		tc.ServerName = addr.Hosts()[0]
	}
	conn := tls.Client(raw, tc)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("transport: dial %s: TLS handshake: %w", addr, err)
	}
	return newMapConn(conn, raw, r.mapping(), false), nil
}

// Listen listens on addr (port 0 picks a free port). Accepted tls://
// connections complete their handshake in the background, bounded by
// Config.ChunkTimeout; a failed handshake fails the connection.
func Listen(addr Addr, cfg *Config) (Listener, error) {
	if addr.IsZero() {
		return nil, errors.New("transport: listen: no address")
	}
	r := resolve(cfg)
	switch addr.Scheme() {
	case SchemeSCTP:
		return listenSCTP(addr.hostsPort(), r)
	case SchemeTLS:
		if r.tls == nil {
			return nil, fmt.Errorf("transport: listen %s: Config.TLS is required", addr)
		}
	}
	ln, err := net.Listen("tcp", addr.HostPort())
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", addr, err)
	}
	return &mapListener{ln: ln, cfg: r.mapping(), tls: addr.Scheme() == SchemeTLS}, nil
}

// DialStream connects a byte stream to addr: the data connection to a pool
// element's user transport. tcp:// is plain TCP (not the TCP mapping);
// sctp:// is one SCTP association whose Writes are user messages with
// PPID 0 and whose Reads return the peer's data, with deadlines, Close and
// CloseWrite (SHUTDOWN) as on TCP. ctx bounds the connect; tls:// is
// refused (a pool element's transport has no TLS type).
func DialStream(ctx context.Context, addr Addr) (net.Conn, error) {
	switch addr.Scheme() {
	case SchemeSCTP:
		return dialSCTPStream(ctx, addr)
	case SchemeTCP:
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr.HostPort())
	}
	return nil, fmt.Errorf("transport: cannot dial a stream to %q", addr)
}

// ListenStream listens for byte streams on addr: TCP through lc (nil means
// a zero net.ListenConfig) for tcp://, one-to-one SCTP associations for
// sctp://; tls:// is refused.
func ListenStream(addr Addr, lc *net.ListenConfig) (net.Listener, error) {
	switch addr.Scheme() {
	case SchemeSCTP:
		return listenSCTPStream(addr)
	case SchemeTCP:
		if lc == nil {
			lc = &net.ListenConfig{}
		}
		return lc.Listen(context.Background(), "tcp", addr.HostPort())
	}
	return nil, fmt.Errorf("transport: cannot listen for streams on %q", addr)
}

// mapListener accepts TCP-mapping connections (over TLS if tls is set).
type mapListener struct {
	ln  net.Listener
	cfg resolved
	tls bool
}

// Accept waits for the next connection.
func (l *mapListener) Accept() (Conn, error) {
	raw, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	if !l.tls {
		return newMapConnShared(raw, raw, &l.cfg, false), nil
	}
	return newMapConnShared(tls.Server(raw, l.cfg.tls), raw, &l.cfg, true), nil
}

// Close stops the listener; accepted connections stay open.
func (l *mapListener) Close() error { return l.ln.Close() }

// Addr returns the bound address (a *net.TCPAddr).
func (l *mapListener) Addr() net.Addr { return l.ln.Addr() }
