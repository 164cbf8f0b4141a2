package transport

import (
	"fmt"
	"net"
	"time"
)

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

// enqueue appends a frame built by add to the send buffer and makes sure a
// flusher runs. data frames respect the send-queue bound (blocking);
// control frames only the hard limit.
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
	if c.wbuf == nil {
		c.wbuf = getWriteBuf()
	}
	c.wbuf = add(c.wbuf)
	c.kickLocked()
	c.wmu.Unlock()
	return nil
}

// kickLocked starts a flusher unless one runs or the send side failed.
// The caller holds wmu.
func (c *mapConn) kickLocked() {
	if c.flushing || c.werr != nil {
		return
	}
	c.flushing = true
	c.flushers.Add(1)
	go c.flush()
}

// flush writes the queued frames and owed ACKs, one write per batch, until
// nothing is left; then it ends, giving its buffers back, so that an idle
// connection has no flusher. Frames queued while a batch is being written
// go out with the next batch.
func (c *mapConn) flush() {
	defer c.flushers.Done()
	var batch []byte
	c.wmu.Lock()
	for {
		if c.werr != nil || (len(c.wbuf) == 0 && c.acks == 0) {
			if c.wbuf != nil && (len(c.wbuf) == 0 || c.werr != nil) {
				putWriteBuf(c.wbuf)
				c.wbuf = nil
			}
			c.flushing = false
			c.wcond.Broadcast()
			c.wmu.Unlock()
			if batch != nil {
				putWriteBuf(batch)
			}
			return
		}
		if c.wbuf == nil {
			c.wbuf = getWriteBuf()
		}
		if batch == nil {
			batch = getWriteBuf()
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
		if cap(batch) > maxPooledWrite {
			batch = nil // do not keep a burst's buffer
		}
		c.wmu.Lock()
		if err != nil {
			// Stop sending but keep reading: the peer's last messages may
			// still be buffered. The read side fails on its own (reset,
			// EOF or missed heartbeats).
			if c.werr == nil {
				c.werr = fmt.Errorf("transport: write: %w", err)
				c.log().Debug("transport: write failed", "err", err)
			}
		}
	}
}

// heartbeat runs from the heartbeat timer, every HeartbeatInterval: it sends
// a HEARTBEAT after a send-idle (or receive-silent) interval and fails the
// connection when HeartbeatMaxMissed of them in a row stay unanswered.
func (c *mapConn) heartbeat() {
	c.hbMu.Lock()
	if c.hbStopped {
		c.hbMu.Unlock()
		return
	}
	c.hbRunning.Add(1)
	c.hbMu.Unlock()
	defer c.hbRunning.Done()
	if n := c.hbOutstanding.Load(); int(n) >= c.cfg.hbMaxMissed {
		c.fail(fmt.Errorf("%w: %d in a row (interval %v)", ErrHeartbeatTimeout, n, c.cfg.hbInterval))
		return
	}
	if sent, recv := c.sent.Swap(false), c.recv.Swap(false); !sent || !recv {
		c.hbNonce++
		nonce, now := c.hbNonce, time.Now().UnixNano()
		c.hbOutstanding.Add(1)
		if err := c.enqueue(false, func(b []byte) []byte { return appendHeartbeat(b, nonce, now) }); err != nil {
			c.fail(err) // cannot send: the connection is dead
			return
		}
	}
	c.hbMu.Lock()
	if !c.hbStopped {
		c.hbTimer.Reset(c.cfg.hbInterval)
	}
	c.hbMu.Unlock()
}
