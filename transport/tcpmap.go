package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Receive and send queue bounds of one TCP-mapping connection. The receive
// queue holds delivered-but-unread messages (at most recvQueueBytes plus one
// message, or recvQueueMsgs messages); WriteMessage blocks while the send
// buffer holds sendQueueBytes or more. ACKs are owed as a counter and
// rendered by the writer, at most acksPerBatch per write, so they take no
// memory while the socket is blocked. HEARTBEAT ACKs bypass the send limit up
// to sendHardLimit, beyond which the peer is taken to be hostile (sending
// without reading) and the connection fails.
const (
	recvQueueBytes = 64 << 10
	recvQueueMsgs  = 1024
	sendQueueBytes = 64 << 10
	sendHardLimit  = 1 << 20
	maxLoggedSkips = 8 // unknown chunks logged per connection
	acksPerBatch   = 8192
)

// inMsg locates one queued message in the receive slab.
type inMsg struct {
	ppid   uint32
	stream uint16
	off, n int
}

// mapConn is a Conn speaking the TCP mapping over a TCP or TLS stream.
type mapConn struct {
	nc   net.Conn // TCP or *tls.Conn
	raw  net.Conn // the TCP connection under nc
	cfg  resolved
	log  *slog.Logger
	br   *bufio.Reader
	done chan struct{} // closed by fail

	failOnce  sync.Once
	failErr   error // first failure; read only after failOnce.Do returned
	closeOnce sync.Once
	closed    atomic.Bool
	wg        sync.WaitGroup // readLoop, writeLoop, heartbeatLoop

	// wmu guards wbuf, acks, ackTSN, wclosing, werr, tsn and ssn; wcond
	// waits on them.
	wmu      sync.Mutex
	wcond    sync.Cond
	wbuf     []byte
	acks     uint64 // ACKs owed for delivered DATA, written by writeLoop
	ackTSN   uint32 // TSN of the next owed ACK
	wclosing bool
	werr     error
	tsn      uint32
	ssn      []uint16 // next SSN per stream, grown on demand
	wdone    chan struct{}

	sent          atomic.Bool  // a chunk was queued since the last heartbeat tick
	recv          atomic.Bool  // a chunk arrived since the last heartbeat tick
	hbOutstanding atomic.Int32 // HEARTBEATs sent since the last HEARTBEAT ACK
	peerNoTSN     atomic.Bool  // peer's INIT flag 0x01: our ACKs omit the TSN

	// qmu guards qmsgs, qdata and qerr (the reader's output).
	qmu    sync.Mutex
	qmsgs  []inMsg
	qdata  []byte
	qerr   error
	qwake  chan struct{} // cap 1: queue gained messages or qerr was set
	qspace chan struct{} // cap 1: the consumer emptied the queue

	// Consumer state, owned by the goroutine calling ReadMessage.
	cur     []inMsg
	curData []byte
	idx     int
}

// newMapConn starts the TCP mapping on nc. raw is the TCP connection under nc
// (nc itself without TLS). handshake is set for TLS server connections.
func newMapConn(nc, raw net.Conn, cfg resolved, handshake bool) *mapConn {
	c := &mapConn{
		nc:     nc,
		raw:    raw,
		cfg:    cfg,
		log:    cfg.logger.With("remote", nc.RemoteAddr().String()),
		br:     bufio.NewReaderSize(nc, chunkBufSize(cfg.maxChunk)),
		done:   make(chan struct{}),
		wdone:  make(chan struct{}),
		qwake:  make(chan struct{}, 1),
		qspace: make(chan struct{}, 1),
	}
	c.wcond.L = &c.wmu
	// Our INIT (flags 0x00: every DATA field present) is the first chunk.
	c.wbuf = append(make([]byte, 0, 4096), chunkInit, 0, 0, 4)
	c.wg.Add(2)
	go c.writeLoop()
	go c.readLoop(handshake)
	if cfg.hbInterval > 0 {
		c.wg.Add(1)
		go c.heartbeatLoop()
	}
	return c
}

// fail ends the connection with err (the first failure wins) and returns the
// first failure.
func (c *mapConn) fail(err error) error {
	c.failOnce.Do(func() {
		c.failErr = err
		switch {
		case errors.Is(err, net.ErrClosed):
		case errors.Is(err, io.EOF), c.closed.Load():
			c.log.Debug("transport: connection ended", "err", err)
		default:
			c.log.Info("transport: connection failed", "err", err)
		}
		c.wmu.Lock()
		if c.werr == nil {
			c.werr = err
		}
		c.wcond.Broadcast()
		c.wmu.Unlock()
		close(c.done)
		c.raw.Close()
	})
	return c.failErr
}

// enqueue appends a frame built by add to the send buffer. data frames
// respect the send-queue bound (blocking); control frames only the hard limit.
func (c *mapConn) enqueue(data bool, add func(b []byte) []byte) error {
	c.wmu.Lock()
	if data {
		for len(c.wbuf) >= sendQueueBytes && c.werr == nil && !c.wclosing {
			c.wcond.Wait()
		}
	}
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	if c.wclosing {
		c.wmu.Unlock()
		return net.ErrClosed
	}
	if len(c.wbuf) >= sendHardLimit {
		c.wmu.Unlock()
		return c.fail(fmt.Errorf("%w: %d bytes of control chunks queued, peer is not reading", ErrProtocol, sendHardLimit))
	}
	wasEmpty := len(c.wbuf) == 0
	c.wbuf = add(c.wbuf)
	if wasEmpty {
		c.wcond.Broadcast()
	}
	c.wmu.Unlock()
	return nil
}

// writeLoop flushes the send buffer with one write per batch.
func (c *mapConn) writeLoop() {
	defer c.wg.Done()
	defer close(c.wdone)
	batch := make([]byte, 0, 4096)
	c.wmu.Lock()
	for {
		for len(c.wbuf) == 0 && c.acks == 0 && !c.wclosing && c.werr == nil {
			c.wcond.Wait()
		}
		if c.werr != nil || (len(c.wbuf) == 0 && c.acks == 0) {
			c.wmu.Unlock()
			return
		}
		batch, c.wbuf = c.wbuf, batch[:0]
		nacks := min(c.acks, acksPerBatch)
		tsn := c.ackTSN
		c.acks -= nacks
		c.ackTSN += uint32(nacks)
		c.wcond.Broadcast() // room for blocked writers
		c.wmu.Unlock()
		withTSN := !c.peerNoTSN.Load()
		for range nacks {
			batch = appendAck(batch, tsn, withTSN)
			tsn++
		}
		_, err := c.nc.Write(batch)
		if err != nil {
			// Stop sending but keep reading: the peer's last messages may
			// still be buffered. The read side fails on its own (reset,
			// EOF or missed heartbeats).
			c.wmu.Lock()
			if c.werr == nil {
				c.werr = fmt.Errorf("transport: write: %w", err)
			}
			c.wcond.Broadcast()
			c.wmu.Unlock()
			c.log.Debug("transport: write failed", "err", err)
			return
		}
		if cap(batch) > 4*sendQueueBytes {
			batch = make([]byte, 0, 4096) // do not keep a burst's buffer
		}
		c.wmu.Lock()
	}
}

// heartbeatLoop sends a HEARTBEAT after a send-idle (or receive-silent)
// interval and fails the connection when HeartbeatMaxMissed of them in a row
// stay unanswered.
func (c *mapConn) heartbeatLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.hbInterval)
	defer t.Stop()
	var nonce uint64
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		if n := c.hbOutstanding.Load(); int(n) >= c.cfg.hbMaxMissed {
			c.fail(fmt.Errorf("%w: %d in a row (interval %v)", ErrHeartbeatTimeout, n, c.cfg.hbInterval))
			return
		}
		sent, recv := c.sent.Swap(false), c.recv.Swap(false)
		if sent && recv {
			continue
		}
		nonce++
		now := time.Now().UnixNano()
		c.hbOutstanding.Add(1)
		if err := c.enqueue(false, func(b []byte) []byte { return appendHeartbeat(b, nonce, now) }); err != nil {
			c.fail(err) // cannot send: the connection is dead
			return
		}
	}
}

// readLoop frames chunks, answers HEARTBEATs and queues DATA for ReadMessage.
func (c *mapConn) readLoop(handshake bool) {
	defer c.wg.Done()
	err := c.readChunks(handshake)
	err = c.fail(err)
	c.qmu.Lock()
	c.qerr = err
	c.qmu.Unlock()
	select {
	case c.qwake <- struct{}{}:
	default:
	}
}

func (c *mapConn) setReadDeadline(t time.Time) error {
	if err := c.nc.SetReadDeadline(t); err != nil {
		return fmt.Errorf("transport: set read deadline: %w", err)
	}
	return nil
}

func (c *mapConn) readChunks(handshake bool) error {
	if handshake {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.chunkTimeout)
		err := c.nc.(*tls.Conn).HandshakeContext(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("transport: TLS handshake: %w", err)
		}
	}
	cr := newChunkReader(c.br, c.cfg.maxChunk)
	var (
		deadline  bool   // a read deadline is armed
		started   bool   // a chunk arrived (so INIT may no longer come)
		peerFlags uint8  // the peer's INIT flags
		expectTSN uint32 // TSN of the next DATA
		skipped   int    // unknown chunks seen
	)
	for {
		cr.discard()
		// Idle between chunks: no deadline (heartbeats watch the peer).
		if c.br.Buffered() == 0 {
			if deadline {
				if err := c.setReadDeadline(time.Time{}); err != nil {
					return err
				}
				deadline = false
			}
			if _, err := c.br.Peek(1); err != nil {
				return readErr(err, false)
			}
		}
		// A chunk has started: it must complete within chunkTimeout.
		if c.br.Buffered() < chunkHdrLen {
			if err := c.setReadDeadline(time.Now().Add(c.cfg.chunkTimeout)); err != nil {
				return err
			}
			deadline = true
		}
		typ, flags, length, total, err := cr.header()
		if err != nil {
			return readErr(err, true)
		}
		if c.br.Buffered() < total {
			if err := c.setReadDeadline(time.Now().Add(c.cfg.chunkTimeout)); err != nil {
				return err
			}
			deadline = true
		}
		ch, err := cr.body(typ, flags, length, total)
		if err != nil {
			return readErr(err, true)
		}
		c.recv.Store(true)
		if ch.typ == chunkInit {
			if started {
				return fmt.Errorf("%w: INIT after the first chunk", ErrProtocol)
			}
			peerFlags = ch.flags & (initNoTSN | initNoStream | initNoPPID)
			c.peerNoTSN.Store(peerFlags&initNoTSN != 0)
			started = true
			continue
		}
		started = true
		switch ch.typ {
		case chunkData:
			d, err := parseData(ch, peerFlags)
			if err != nil {
				return err
			}
			if d.hasTSN && d.tsn != expectTSN {
				return fmt.Errorf("%w: DATA TSN %d, expected %d", ErrProtocol, d.tsn, expectTSN)
			}
			if len(d.payload) > c.cfg.maxMsg {
				return fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, len(d.payload), c.cfg.maxMsg)
			}
			if err := c.deliver(d); err != nil {
				return err
			}
			expectTSN++
		case chunkAck:
			if len(ch.value) != 0 && len(ch.value) != 4 {
				return fmt.Errorf("%w: ACK length %d", ErrProtocol, length)
			}
		case chunkHB:
			v := ch.value
			// An error here is a failed send side; reading goes on.
			c.enqueue(false, func(b []byte) []byte { return appendHeartbeatAck(b, v) })
		case chunkHBAck:
			c.hbOutstanding.Store(0)
		default:
			skipped++
			if skipped <= maxLoggedSkips {
				c.log.Warn("transport: skipping unknown chunk", "type", ch.typ, "length", length, "logged", skipped, "max_logged", maxLoggedSkips)
			}
		}
	}
}

// readErr names a read that stopped at a chunk deadline or, inside a chunk,
// at the end of the stream.
func readErr(err error, inChunk bool) error {
	if inChunk && errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: stream ended inside a chunk", io.ErrUnexpectedEOF)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrChunkTimeout, err)
	}
	if errors.Is(err, bufio.ErrBufferFull) { // cannot happen: the buffer fits the largest chunk
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return err
}

// deliver queues one DATA payload, waiting while the queue is full.
func (c *mapConn) deliver(d dataFields) error {
	c.qmu.Lock()
	for len(c.qdata) >= recvQueueBytes || len(c.qmsgs) >= recvQueueMsgs {
		if c.closed.Load() {
			break // Close is draining until the peer's EOF: discard
		}
		c.qmu.Unlock()
		select {
		case <-c.qspace:
		case <-c.done:
			return net.ErrClosed
		}
		c.qmu.Lock()
	}
	if c.closed.Load() {
		c.qmsgs, c.qdata = c.qmsgs[:0], c.qdata[:0]
	}
	wasEmpty := len(c.qmsgs) == 0
	off := len(c.qdata)
	c.qdata = append(c.qdata, d.payload...)
	c.qmsgs = append(c.qmsgs, inMsg{ppid: d.ppid, stream: d.stream, off: off, n: len(d.payload)})
	c.qmu.Unlock()
	if wasEmpty {
		select {
		case c.qwake <- struct{}{}:
		default:
		}
	}
	return nil
}

// ReadMessage returns the next message and acknowledges it to the peer.
func (c *mapConn) ReadMessage() (Message, error) {
	if c.closed.Load() {
		return Message{}, net.ErrClosed
	}
	for c.idx >= len(c.cur) {
		c.qmu.Lock()
		if len(c.qmsgs) > 0 {
			c.cur, c.qmsgs = c.qmsgs, c.cur[:0]
			c.curData, c.qdata = c.qdata, c.curData[:0]
			if cap(c.qdata) > 4*recvQueueBytes {
				c.qdata = nil // do not keep a burst's buffer
			}
			c.idx = 0
			c.qmu.Unlock()
			select {
			case c.qspace <- struct{}{}:
			default:
			}
			break
		}
		err := c.qerr
		c.qmu.Unlock()
		if err != nil {
			return Message{}, err
		}
		<-c.qwake
		if c.closed.Load() {
			return Message{}, net.ErrClosed
		}
	}
	m := c.cur[c.idx]
	c.idx++
	// Owe the peer one ACK for this delivery. A failed send side does not
	// hold back received messages; the failure surfaces on WriteMessage and,
	// once the queue is empty, here.
	c.wmu.Lock()
	if c.werr == nil && !c.wclosing {
		c.acks++
		if c.acks == 1 && len(c.wbuf) == 0 {
			c.wcond.Broadcast()
		}
	}
	c.wmu.Unlock()
	c.sent.Store(true)
	end := m.off + m.n
	return Message{PPID: m.ppid, Stream: m.stream, Data: c.curData[m.off:end:end]}, nil
}

// WriteMessage queues m as one DATA chunk and returns; socket errors surface
// on later calls and on ReadMessage. It blocks while the send queue is full.
func (c *mapConn) WriteMessage(m Message) error {
	if len(m.Data) > c.cfg.maxMsg {
		return fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, len(m.Data), c.cfg.maxMsg)
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	err := c.enqueue(true, func(b []byte) []byte {
		s := int(m.Stream)
		if s >= len(c.ssn) {
			c.ssn = append(c.ssn, make([]uint16, s+1-len(c.ssn))...)
		}
		b = appendData(b, c.tsn, m.Stream, c.ssn[s], m.PPID, m.Data)
		c.tsn++
		c.ssn[s]++
		return b
	})
	if err == nil && !c.sent.Load() {
		c.sent.Store(true)
	}
	return err
}

// Close flushes queued frames, half-closes the connection and waits for the
// peer's end of stream (a graceful close that does not make the kernel reset
// a connection with unread data), all bounded by Config.CloseTimeout; then it
// closes the socket and waits for the connection's goroutines. It is
// idempotent and always returns nil.
func (c *mapConn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		limit := time.NewTimer(c.cfg.closeTimeout)
		defer limit.Stop()
		c.wmu.Lock()
		c.wclosing = true
		c.wcond.Broadcast()
		c.wmu.Unlock()
		select { // let a reader blocked on a full queue go on (discarding)
		case c.qspace <- struct{}{}:
		default:
		}
		c.nc.SetWriteDeadline(time.Now().Add(c.cfg.closeTimeout))
		select {
		case <-c.wdone:
		case <-c.done:
		case <-limit.C:
		}
		c.wmu.Lock()
		flushed := c.werr == nil
		c.wmu.Unlock()
		if flushed {
			var err error
			if tc, ok := c.nc.(*tls.Conn); ok {
				err = tc.CloseWrite() // close_notify, then FIN
			} else if tcp, ok := c.raw.(*net.TCPConn); ok {
				err = tcp.CloseWrite()
			}
			if err == nil {
				select {
				case <-c.done: // the reader saw the peer's EOF
				case <-limit.C:
				}
			}
		}
		c.fail(net.ErrClosed)
		c.wg.Wait()
	})
	return nil
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
		select { // let a reader blocked on a full queue go on (discarding)
		case c.qspace <- struct{}{}:
		default:
		}
		c.fail(net.ErrClosed)
		c.wg.Wait()
	})
	return nil
}
