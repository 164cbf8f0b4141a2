// Package transport carries whole RSerPool messages, each with its SCTP-style
// Payload Protocol Identifier (PPID 11 = ASAP, 12 = ENRP) and stream number,
// over kernel SCTP, over the TCP mapping for RSerPool
// (draft-ietf-rserpool-tcpmapping-03), or over TLS on the TCP mapping; and it
// sends and receives the UDP multicast announces of registrars.
//
// # Usage
//
// Addresses are transport.Addr values, parsed and printed in one place
// (addr.go): "tcp://host:port" (the TCP mapping; also a bare "host:port"),
// "sctp://host:port" (kernel SCTP; "sctp://10.0.0.1/10.0.1.1:3863" binds or
// dials several addresses of a multi-homed host) and "tls://host:port".
// IPv6 hosts are bracketed: "tcp://[::1]:3863". Addr is comparable (a map
// key), implements encoding.TextUnmarshaler (TOML values, flag.TextVar) and
// is built from a wire.Transport (AddrFromTransport) or a net.Addr
// (AddrFromNet).
//
//	ln, err := transport.Listen(transport.MustParseAddr("tcp://127.0.0.1:0"), &transport.Config{Logger: log})
//	addr, err := transport.AddrFromNet(transport.SchemeTCP, ln.Addr()) // tcp://127.0.0.1:40123
//	c, err := transport.Dial(ctx, addr, nil)
//	err = c.WriteMessage(transport.Message{PPID: 11, Data: asapBytes})
//	m, err := c.ReadMessage() // m.Data valid until the next ReadMessage
//
// Ports are the caller's business. The registered ones are ASAP 3863 (SCTP
// and TCP) and 3864 (TLS), ENRP 9901 (SCTP) and 9902 (TLS). ENRP over the TCP
// mapping, on 9901, is this project's extension (no standard covers PE-PR or
// PR-PR over TCP; RSPLIB does not speak it): the same framing, with PPID 12.
//
// For announces, NewMulticastSender("239.0.0.50:3863", "eth0", ttl, loopback)
// and ListenMulticast(group, iface) wrap a UDP socket with the group joined;
// receivers bind the group address and port with SO_REUSEADDR, so several of
// them on one host each get every datagram. On the loopback interface every
// datagram comes back in whatever the loopback flag says.
//
// # The TCP mapping
//
// The draft defines formats but no procedures; this package chooses:
//
//   - INIT from both sides: each end sends INIT (flags 0x00: TSN, SID/SSN and
//     PPID present in its DATA) as its first chunk, and parses the peer's
//     DATA and ACK chunks according to the peer's INIT flags (0x00 until the
//     INIT arrives). An INIT after the first chunk is a protocol error that
//     closes the connection.
//   - Padding: a DATA chunk's length is 4 + header + message length, exactly;
//     zero padding to a multiple of 4 follows and is not counted. A receiver
//     takes the message as the bytes counted by the chunk length (draft §9:
//     the sender does not pad the ASAP message into the chunk).
//   - TSN starts at 0 and must arrive in sequence when the peer sends it; one
//     ACK carrying the TSN (omitted if the peer's INIT set 0x01) is owed per
//     DATA chunk when ReadMessage delivers it, and sent with the next batch
//     written or as soon as the reader has nothing more buffered.
//   - HEARTBEAT after HeartbeatInterval (default 30 s) without sending, or
//     without receiving; its info is a nonce and a send time. After
//     HeartbeatMaxMissed (default 5) unanswered HEARTBEATs in a row, one more
//     interval ends the connection with ErrHeartbeatTimeout, which ReadMessage
//     and WriteMessage then return (the mapping's COMM_LOST). Every HEARTBEAT
//     received is echoed in a HEARTBEAT ACK.
//   - Unknown chunk types are skipped by their length; the first 8 per
//     connection are logged.
//   - A chunk that has started to arrive must complete within ChunkTimeout
//     (default 30 s), else ErrChunkTimeout. A chunk length below 4 or above
//     the largest DATA chunk for MaxMessageSize ends the connection
//     (ErrProtocol, ErrTooLarge) before anything is allocated.
//
// Undelivered-message retrieval (resending unacknowledged DATA elsewhere) is
// not implemented: ACKs are sent as the draft requires, and received ACKs
// are checked for form but otherwise ignored.
//
// TLS (tls://) runs the same mapping inside crypto/tls. Config.TLS is
// required; for mutual authentication set ClientAuth and ClientCAs on the
// server and Certificates on the client. A tls:// Conn has a method
// ConnectionState() (tls.ConnectionState, bool) for the peer's certificates.
//
// # Kernel SCTP
//
// One-to-one style sockets (github.com/ishidawataru/sctp). Each
// WriteMessage is one sendmsg carrying the stream and PPID in an SCTP_SNDRCV
// control message; each ReadMessage one recvmsg. The library converts the
// PPID to network byte order on send and back on receipt, so the host value
// (11) is what appears on the wire. PeerAddrs lists every peer address of the
// association. SCTPAvailable probes socket(AF_INET, SOCK_STREAM,
// IPPROTO_SCTP) once; without kernel SCTP, sctp:// Dial and Listen fail with
// an error wrapping ErrNoSCTP that names the cause.
//
// There is one SCTP connect (sctpdial_linux.go): a non-blocking socket,
// connect(2) (sctp_connectx for a multi-homed address), then a wait on the
// runtime poller that ends at the context's deadline or cancellation (the
// socket is closed; the error is the context's). Dial builds the message
// conn on it; DialStream gives a byte-stream net.Conn (PPID 0, one message
// per Write, deadlines and CloseWrite as on TCP) for relaying to pool
// elements, and ListenStream its server side. TestSCTPDialHonoursContext
// checks the deadline and the cancellation against a black-holed address
// in a network namespace of its own; the interoperability suite runs the
// SCTP tests on a kernel with SCTP.
//
// # Concurrency
//
// A Conn's ReadMessage may be called by one goroutine at a time; WriteMessage
// from any number of goroutines; Close from anywhere, any number of times (it
// unblocks ReadMessage and a WriteMessage blocked on flow control, both then
// returning net.ErrClosed).
//
// A TCP-mapping Conn owns no goroutine while idle. ReadMessage reads the
// socket on the caller's goroutine: it frames chunks, answers HEARTBEATs and
// checks ACKs as it reads, and returns at the next DATA chunk. WriteMessage
// appends the frame to a shared buffer and returns; a flusher goroutine,
// started when the buffer gains bytes and ending when it is empty, sends
// each accumulated batch (with the ACKs owed for delivered messages) in one
// write, so small messages from concurrent writers coalesce. Errors from the
// socket therefore surface on a later WriteMessage and on ReadMessage.
// HEARTBEATs are sent from a timer (time.AfterFunc). Close flushes queued
// frames, half-closes and waits for the peer's end of stream, all within
// CloseTimeout (default 2 s), then closes the socket and waits for the
// flusher and a running timer callback; when no ReadMessage is reading,
// Close reads (and discards) until the peer's end of stream itself.
//
// A server with many idle connections need not keep a goroutine blocked in
// ReadMessage for each: Parker.Park (Linux, epoll) takes a plain TCP-mapping
// connection with nothing to read and calls back, on a new goroutine, when
// input arrives or the connection fails or closes; one goroutine waits for
// all parked connections, itself parked in Go's netpoller on the epoll
// descriptor. TLS connections (whose library may hold decrypted bytes) and
// SCTP are not parked; elsewhere Park reports false and the caller reads.
// ReadMessageWithin(c, d) lets a server wait a little before parking: it
// returns ErrIdle, the connection intact, when no chunk started within d,
// so that a client exchanging messages keeps its reader and one gone quiet
// is parked.
//
// Memory per TCP-mapping connection is bounded whatever the peer does, and
// an idle connection holds no buffer: a chunk's first bytes are read into a
// 4-byte array in the connection; the rest of the chunk, and whatever else
// the read brings, goes into a pooled buffer (4 KiB; 16 or 64 KiB for a
// larger chunk, taken as its bytes arrive, so a buffer is at most twice what
// the peer sent) that is given back once every chunk in it has been handled
// and the last message returned has been superseded by the next ReadMessage
// call.
// The send buffer is pooled too, taken while frames are queued; beyond 64
// KiB WriteMessage blocks. A peer that keeps sending HEARTBEATs while not
// reading our answers is cut off at 1 MiB of queued answers. On plain TCP a
// reader that finds its buffer consumed first reads what the socket already
// holds without waiting (one non-blocking read), so a stream of messages is
// read in batches.
//
// # Limitations
//
//   - The application must keep calling ReadMessage (a goroutine blocked in
//     it, as message servers and clients have anyway): chunks, HEARTBEATs
//     and the peer's end of stream included, are read only there. Between
//     calls the kernel's socket buffers hold what arrives and TCP flow
//     control stops the peer; an application that stops reading for
//     HeartbeatMaxMissed+1 intervals loses the connection (on both ends).
//   - All streams share one ordered byte stream: no unordered delivery, and
//     head-of-line blocking remains (the U flag is parsed and ignored).
//   - The SCTP tests run only where the kernel has SCTP (interop/run runs
//     them in a VM); elsewhere they check the ErrNoSCTP path.
//   - A message conn over SCTP reads and writes with blocking system calls on
//     its own descriptor (one goroutine each while blocked); Close unblocks
//     them.
//   - Messages larger than MaxMessageSize are refused (ErrTooLarge); over
//     SCTP a larger incoming message closes the association.
package transport
