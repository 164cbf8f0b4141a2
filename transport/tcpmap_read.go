package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// readBuf holds received bytes of a connection while a chunk is being read
// or delivered: buf[r:w] are unread. Its buffer is pooled and given back
// whenever it holds nothing unread, so an idle connection has none.
type readBuf struct {
	p    *[]byte // nil while idle
	r, w int
}

func (b *readBuf) unread() []byte { return (*b.p)[b.r:b.w] }

func (b *readBuf) empty() bool { return b.p == nil || b.r == b.w }

// release gives the buffer back to its pool.
func (b *readBuf) release() {
	if b.p != nil {
		putReadBuf(b.p)
		b.p, b.r, b.w = nil, 0, 0
	}
}

// take gives an idle readBuf a small buffer holding b.
func (b *readBuf) take(first []byte) {
	b.p = getReadBuf(smallBuf)
	b.r, b.w = 0, copy(*b.p, first)
}

// makeRoom makes room to read more of a chunk of n bytes starting at r: it
// moves the unread bytes to the front, or moves them into a larger buffer,
// at most twice as large as what has arrived (and no larger than the chunk
// needs), so that a peer announcing a large chunk and stalling holds only
// a small buffer.
func (b *readBuf) makeRoom(n int) {
	switch {
	case b.p == nil:
		b.p = getReadBuf(min(n, smallBuf))
	case b.w < len(*b.p):
	case b.r > 0:
		b.w = copy(*b.p, b.unread())
		b.r = 0
	default:
		p := getReadBuf(min(n, 2*len(*b.p)))
		b.w = copy(*p, b.unread())
		b.r = 0
		putReadBuf(b.p)
		b.p = p
	}
}

// ReadMessage reads the connection until the next message and acknowledges
// it to the peer. HEARTBEATs are answered and other control chunks handled
// as they are read, on the caller's goroutine.
func (c *mapConn) ReadMessage() (Message, error) { return c.readMessageWithin(0) }

// readMessageWithin is ReadMessage, returning ErrIdle if d (> 0) passes
// without the start of a chunk.
func (c *mapConn) readMessageWithin(d time.Duration) (Message, error) {
	if c.closed.Load() {
		return Message{}, net.ErrClosed
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr == nil {
		m, err := c.readMessage(true, d)
		if err == nil {
			c.owe()
			return m, nil
		}
		if err == errIdle {
			return Message{}, ErrIdle
		}
		c.rerr = c.fail(err)
		c.rb.release()
	}
	if c.closed.Load() {
		return Message{}, net.ErrClosed
	}
	return Message{}, c.rerr
}

// owe owes the peer one ACK for a delivered message. The ACKs owed go out
// with the next batch written, or, when the read buffer holds nothing more
// (the reader is about to wait), now: a peer streaming messages gets its
// ACKs once per buffer read rather than one write each. A failed send side
// does not hold back received messages; the failure surfaces on
// WriteMessage and, once the peer's stream ends, here.
func (c *mapConn) owe() {
	c.wmu.Lock()
	if c.werr == nil && !c.wclosing {
		c.acks++
		if c.rb.empty() {
			c.kickLocked()
		}
	}
	c.wmu.Unlock()
	c.sent.Store(true)
}

// ErrIdle is returned by ReadMessageWithin when nothing arrived in time.
var ErrIdle = errors.New("transport: no input within the wait")

// ReadMessageWithin is c.ReadMessage, except that over the TCP mapping it
// returns ErrIdle, with c intact, once d has passed without any input (d
// bounds the wait for the first bytes of a chunk, not the chunk). Servers
// use it to park connections that went quiet (Parker.Park). Transports
// without it wait as ReadMessage does.
func ReadMessageWithin(c Conn, d time.Duration) (Message, error) {
	if mc, ok := c.(*mapConn); ok && d > 0 {
		return mc.readMessageWithin(d)
	}
	return c.ReadMessage()
}

// Results of readMessage(false, 0) (for Parker.Park) instead of waiting.
var (
	errIdle    = errors.New("transport: nothing to read")      // nothing buffered or arrived
	errPending = errors.New("transport: a chunk is under way") // a DATA chunk, or part of a chunk, is buffered
)

// sendAcks makes sure the ACKs owed go out: the reader is about to wait.
func (c *mapConn) sendAcks() {
	c.wmu.Lock()
	if c.acks > 0 {
		c.kickLocked()
	}
	c.wmu.Unlock()
}

// readMessage frames chunks until a DATA chunk, which it returns with its
// payload aliasing the read buffer. With idle > 0 it returns errIdle when
// no chunk starts within idle. With wait false it only handles control
// chunks that have arrived whole: it returns errIdle when there is nothing
// more, and errPending, leaving the chunk buffered, at a DATA chunk or a
// partial chunk.
func (c *mapConn) readMessage(wait bool, idle time.Duration) (Message, error) {
	if c.handshake {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.chunkTimeout)
		err := c.nc.(*tls.Conn).HandshakeContext(ctx)
		cancel()
		if err != nil {
			return Message{}, fmt.Errorf("transport: TLS handshake: %w", err)
		}
		c.handshake = false
	}
	for {
		if c.rb.empty() && c.rb.p != nil {
			// More may have arrived meanwhile: read it into the buffer
			// still held, without waiting.
			c.rb.r, c.rb.w = 0, 0
			c.rb.w = max(c.tryRead(*c.rb.p), 0)
		}
		if c.rb.empty() && wait && idle > 0 {
			// Idle for at most idle (the caller parks us then): keep
			// the buffer and read into it.
			if c.rb.p == nil {
				c.rb.take(nil)
			}
			c.sendAcks()
			if err := c.setReadDeadline(time.Now().Add(idle)); err != nil {
				return Message{}, err
			}
			c.deadline = true
			n, err := c.nc.Read(*c.rb.p)
			c.rb.r, c.rb.w = 0, n
			if n == 0 {
				if err == nil {
					continue
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return Message{}, errIdle
				}
				return Message{}, readErr(err, false)
			}
		}
		if c.rb.empty() {
			// Idle between chunks: no deadline (heartbeats watch the
			// peer) and no buffer: the first bytes land in c.hdr.
			c.rb.release()
			if !wait {
				n := c.tryRead(c.hdr[:])
				if n == 0 {
					c.sendAcks()
					return Message{}, errIdle
				}
				if n < 0 {
					return Message{}, errPending // the end of the stream, or an error: ReadMessage reports it
				}
				c.rb.take(c.hdr[:n])
				continue
			}
			if c.deadline {
				if err := c.setReadDeadline(time.Time{}); err != nil {
					return Message{}, err
				}
				c.deadline = false
			}
			c.sendAcks()
			n, err := c.nc.Read(c.hdr[:])
			if n == 0 {
				if err == nil {
					continue
				}
				return Message{}, readErr(err, false)
			}
			// A read error with bytes is seen again by the next read.
			c.rb.take(c.hdr[:n])
		}
		// A chunk has started: it must complete within chunkTimeout.
		armed := false
		if err := c.fill(chunkHdrLen, &armed, wait); err != nil {
			return Message{}, err
		}
		typ, flags, length, total, err := parseChunkHeader(c.rb.unread(), c.cfg.maxChunk)
		if err != nil {
			return Message{}, err
		}
		if err := c.fill(total, &armed, wait); err != nil {
			return Message{}, err
		}
		if typ == chunkData && !wait {
			return Message{}, errPending
		}
		ch := chunk{typ: typ, flags: flags, value: c.rb.unread()[chunkHdrLen:length]}
		c.rb.r += total
		c.recv.Store(true)
		if ch.typ == chunkInit {
			if c.started {
				return Message{}, fmt.Errorf("%w: INIT after the first chunk", ErrProtocol)
			}
			c.peerFlags = ch.flags & (initNoTSN | initNoStream | initNoPPID)
			c.peerNoTSN.Store(c.peerFlags&initNoTSN != 0)
			c.started = true
			continue
		}
		c.started = true
		switch ch.typ {
		case chunkData:
			d, err := parseData(ch, c.peerFlags)
			if err != nil {
				return Message{}, err
			}
			if d.hasTSN && d.tsn != c.expectTSN {
				return Message{}, fmt.Errorf("%w: DATA TSN %d, expected %d", ErrProtocol, d.tsn, c.expectTSN)
			}
			if len(d.payload) > c.cfg.maxMsg {
				return Message{}, fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, len(d.payload), c.cfg.maxMsg)
			}
			c.expectTSN++
			if c.closed.Load() {
				continue // Close is waiting for the peer's end of stream: discard
			}
			return Message{PPID: d.ppid, Stream: d.stream, Data: d.payload[:len(d.payload):len(d.payload)]}, nil
		case chunkAck:
			if len(ch.value) != 0 && len(ch.value) != 4 {
				return Message{}, fmt.Errorf("%w: ACK length %d", ErrProtocol, length)
			}
		case chunkHB:
			v := ch.value
			// An error here is a failed send side; reading goes on.
			c.enqueue(false, func(b []byte) []byte { return appendHeartbeatAck(b, v) })
		case chunkHBAck:
			c.hbOutstanding.Store(0)
		default:
			c.skipped++
			if c.skipped <= maxLoggedSkips {
				c.log().Warn("transport: skipping unknown chunk", "type", ch.typ, "length", length, "logged", c.skipped, "max_logged", maxLoggedSkips)
			}
		}
	}
}

// fill reads until n bytes of the current chunk are buffered. The first
// read of a chunk that waits arms the chunk deadline (*armed records it);
// with wait false it reads only what has arrived, else errPending.
func (c *mapConn) fill(n int, armed *bool, wait bool) error {
	if c.rb.w-c.rb.r >= n {
		return nil
	}
	c.rb.makeRoom(n)
	c.rb.w += max(c.tryRead((*c.rb.p)[c.rb.w:]), 0)
	if c.rb.w-c.rb.r >= n {
		return nil
	}
	if !wait {
		return errPending
	}
	c.sendAcks()
	if !*armed {
		if err := c.setReadDeadline(time.Now().Add(c.cfg.chunkTimeout)); err != nil {
			return err
		}
		*armed, c.deadline = true, true
	}
	for c.rb.w-c.rb.r < n {
		c.rb.makeRoom(n)
		k, err := c.nc.Read((*c.rb.p)[c.rb.w:])
		c.rb.w += k
		if err != nil && c.rb.w-c.rb.r < n {
			return readErr(err, true)
		}
	}
	return nil
}

// tryRead reads what the socket holds into p without waiting (plain TCP
// only: a TLS record may need more reads) and returns the byte count: 0
// when nothing has arrived (or without a descriptor), -1 at the end of the
// stream or an error, which the next blocking read reports. It saves a
// streaming reader the chunk deadline and the small idle read.
func (c *mapConn) tryRead(p []byte) int {
	if c.rc == nil || len(p) == 0 {
		return 0
	}
	c.tryBuf, c.tryN = p, 0
	c.rc.Read(c.tryFn)
	c.tryBuf = nil
	return c.tryN
}

func (c *mapConn) setReadDeadline(t time.Time) error {
	if err := c.nc.SetReadDeadline(t); err != nil {
		return fmt.Errorf("transport: set read deadline: %w", err)
	}
	return nil
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
	return err
}
