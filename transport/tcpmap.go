package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Send bounds of one TCP-mapping connection. WriteMessage blocks while the
// send buffer holds sendQueueBytes or more. ACKs are owed as a counter and
// rendered by the flusher, at most acksPerBatch per write, so they take no
// memory while the socket is blocked. HEARTBEAT ACKs bypass the send limit up
// to sendHardLimit, beyond which the peer is taken to be hostile (sending
// without reading) and the connection fails.
const (
	sendQueueBytes = 64 << 10
	sendHardLimit  = 1 << 20
	maxLoggedSkips = 8 // unknown chunks logged per connection
	acksPerBatch   = 8192
)

// mapConn is a Conn speaking the TCP mapping over a TCP or TLS stream.
//
// It owns no goroutine while idle: ReadMessage reads and frames chunks on
// the caller's goroutine (answering HEARTBEATs there), a flusher goroutine
// exists only while queued frames are being written, and HEARTBEATs are
// sent from a timer. Buffers come from pools while bytes are in flight.
type mapConn struct {
	nc  net.Conn  // TCP or *tls.Conn
	raw net.Conn  // the TCP connection under nc
	cfg *resolved // shared by a listener's connections: read only

	done      chan struct{} // closed by fail
	failOnce  sync.Once
	failErr   error // first failure; read only after failOnce.Do returned
	closeOnce sync.Once
	closed    atomic.Bool

	// rmu is held by the goroutine reading the socket (ReadMessage, or
	// Close waiting for the peer's end of stream); it guards the read
	// state below.
	rmu       sync.Mutex
	handshake bool // TLS server: the handshake is still to be done
	rb        readBuf
	hdr       [chunkHdrLen]byte // an idle connection's next read lands here
	deadline  bool              // a read deadline is armed
	started   bool              // a chunk arrived (so INIT may no longer come)
	peerFlags uint8             // the peer's INIT flags
	expectTSN uint32            // TSN of the next DATA
	skipped   int               // unknown chunks seen
	rerr      error             // the read side's end, returned again
	rc        syscall.RawConn   // plain TCP: for tryRead; nil otherwise
	tryFn     func(fd uintptr) bool
	tryBuf    []byte
	tryN      int

	// wmu guards wbuf, flushing, acks, ackTSN, wclosing, werr, tsn and
	// ssn; wcond waits on them.
	wmu      sync.Mutex
	wcond    sync.Cond
	wbuf     []byte // queued frames; nil (pooled) while empty
	flushing bool   // a flusher goroutine is writing
	acks     uint64 // ACKs owed for delivered DATA, written by the flusher
	ackTSN   uint32 // TSN of the next owed ACK
	wclosing bool
	werr     error
	tsn      uint32
	ssn      []uint16       // next SSN per stream, grown on demand
	flushers sync.WaitGroup // the flusher goroutine, if any

	sent          atomic.Bool  // a chunk was queued since the last heartbeat tick
	recv          atomic.Bool  // a chunk arrived since the last heartbeat tick
	hbOutstanding atomic.Int32 // HEARTBEATs sent since the last HEARTBEAT ACK
	peerNoTSN     atomic.Bool  // peer's INIT flag 0x01: our ACKs omit the TSN

	// parkedOn is the Parker holding the connection, nil when not parked;
	// parkKey and resume are guarded by that Parker's mu.
	parkedOn atomic.Pointer[Parker]
	parkKey  uint64
	resume   func()

	// hbMu guards hbTimer and hbStopped; hbRunning counts running
	// heartbeat callbacks, waited for by Close.
	hbMu      sync.Mutex
	hbTimer   *time.Timer
	hbStopped bool
	hbNonce   uint64 // the callbacks' own: they never overlap
	hbRunning sync.WaitGroup
}

// newMapConn starts the TCP mapping on nc. raw is the TCP connection under nc
// (nc itself without TLS). handshake is set for TLS server connections: the
// first ReadMessage completes it, bounded by ChunkTimeout.
func newMapConn(nc, raw net.Conn, cfg resolved, handshake bool) *mapConn {
	return newMapConnShared(nc, raw, &cfg, handshake)
}

// newMapConnShared is newMapConn with a configuration shared by many
// connections (a listener's), which it does not modify.
func newMapConnShared(nc, raw net.Conn, cfg *resolved, handshake bool) *mapConn {
	c := &mapConn{
		nc:        nc,
		raw:       raw,
		cfg:       cfg,
		handshake: handshake,
		done:      make(chan struct{}),
	}
	c.wcond.L = &c.wmu
	if sc, ok := nc.(syscall.Conn); ok && nc == raw {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc, c.tryFn = rc, c.tryReadFD
		}
	}
	// Our INIT (flags 0x00: every DATA field present) is the first chunk.
	c.wmu.Lock()
	c.wbuf = append(getWriteBuf(), chunkInit, 0, 0, 4)
	c.kickLocked()
	c.wmu.Unlock()
	if cfg.hbInterval > 0 {
		c.hbMu.Lock()
		c.hbTimer = time.AfterFunc(cfg.hbInterval, c.heartbeat)
		c.hbMu.Unlock()
	}
	return c
}

// log returns the connection's logger. It is built when needed (logging is
// rare), so that an idle connection does not hold one.
func (c *mapConn) log() *slog.Logger {
	return c.cfg.logger.With("remote", c.nc.RemoteAddr().String())
}

// fail ends the connection with err (the first failure wins) and returns the
// first failure.
func (c *mapConn) fail(err error) error {
	c.failOnce.Do(func() {
		c.failErr = err
		switch {
		case errors.Is(err, net.ErrClosed):
		case errors.Is(err, io.EOF), c.closed.Load():
			c.log().Debug("transport: connection ended", "err", err)
		default:
			c.log().Info("transport: connection failed", "err", err)
		}
		c.wmu.Lock()
		if c.werr == nil {
			c.werr = err
		}
		c.wcond.Broadcast()
		c.wmu.Unlock()
		close(c.done)
		c.hbMu.Lock()
		c.hbStopped = true
		if c.hbTimer != nil {
			c.hbTimer.Stop()
		}
		c.hbMu.Unlock()
		c.raw.Close()
		c.unpark()
	})
	return c.failErr
}

// Close flushes queued frames, half-closes the connection and waits for the
// peer's end of stream (a graceful close that does not make the kernel reset
// a connection with unread data), all bounded by Config.CloseTimeout; then it
// closes the socket and waits for the connection's goroutines. It is
// idempotent and always returns nil.
//
// The wait for the peer's end of stream reads (and discards) the socket when
// no ReadMessage is doing so.
func (c *mapConn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		// One bound for the flush and the wait for the peer's end of
		// stream together.
		limit, cancel := context.WithTimeout(context.Background(), c.cfg.closeTimeout)
		defer cancel()
		stop := context.AfterFunc(limit, func() {
			c.wmu.Lock()
			c.wcond.Broadcast()
			c.wmu.Unlock()
		})
		defer stop()
		c.nc.SetWriteDeadline(time.Now().Add(c.cfg.closeTimeout))
		c.wmu.Lock()
		c.wclosing = true
		c.wcond.Broadcast() // writers blocked on a full queue give up
		if c.acks > 0 {
			c.kickLocked()
		}
		for (c.flushing || len(c.wbuf) > 0 || c.acks > 0) && c.werr == nil && limit.Err() == nil {
			c.wcond.Wait()
		}
		flushed := c.werr == nil && !c.flushing && len(c.wbuf) == 0
		c.wmu.Unlock()
		if flushed {
			var err error
			if tc, ok := c.nc.(*tls.Conn); ok {
				err = tc.CloseWrite() // close_notify, then FIN
			} else if tcp, ok := c.raw.(*net.TCPConn); ok {
				err = tcp.CloseWrite()
			}
			if err == nil {
				c.awaitPeerEOF(limit)
			}
		}
		c.end()
	})
	return nil
}

// awaitPeerEOF waits until the peer ends its stream or limit expires: by
// reading the socket itself (discarding) if no ReadMessage is reading it,
// else until that reader sees the end (it discards DATA once closed).
func (c *mapConn) awaitPeerEOF(limit context.Context) {
	if !c.rmu.TryLock() {
		select {
		case <-c.done:
		case <-limit.Done():
		}
		return
	}
	defer c.rmu.Unlock()
	c.rb.release()
	if d, ok := limit.Deadline(); ok {
		c.nc.SetReadDeadline(d)
	}
	var b [256]byte
	for {
		if _, err := c.nc.Read(b[:]); err != nil {
			return
		}
	}
}

// end fails the connection with net.ErrClosed and waits for its
// goroutines; buffers go back to their pools.
func (c *mapConn) end() {
	c.fail(net.ErrClosed)
	c.hbRunning.Wait()
	c.flushers.Wait()
	c.wmu.Lock()
	if c.wbuf != nil {
		putWriteBuf(c.wbuf)
		c.wbuf = nil
	}
	c.wmu.Unlock()
	if c.rmu.TryLock() { // else the reader releases its buffer as it returns
		c.rb.release()
		c.rmu.Unlock()
	}
}

func (c *mapConn) LocalAddr() net.Addr   { return c.nc.LocalAddr() }
func (c *mapConn) RemoteAddr() net.Addr  { return c.nc.RemoteAddr() }
func (c *mapConn) PeerAddrs() []net.Addr { return []net.Addr{c.nc.RemoteAddr()} }

// ConnectionState returns the TLS state of a tls:// connection; ok is false
// for plain TCP.
func (c *mapConn) ConnectionState() (cs tls.ConnectionState, ok bool) {
	if tc, isTLS := c.nc.(*tls.Conn); isTLS {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// Abort closes the connection at once, without flushing queued frames or
// waiting for the peer's end of stream: the socket is reset (SO_LINGER 0).
// It is for connections refused by a limit, where Close's graceful wait
// would let a flooder hold resources for CloseTimeout each.
func (c *mapConn) Abort() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if tcp, ok := c.raw.(*net.TCPConn); ok {
			tcp.SetLinger(0)
		}
		c.wmu.Lock()
		c.wclosing = true
		c.wcond.Broadcast()
		c.wmu.Unlock()
		c.end()
	})
	return nil
}
