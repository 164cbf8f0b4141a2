package failover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/rserpool/rserpool/pucache"
)

// Session is a client connection's backend after the replay phase: from
// here on the caller relays bytes as usual.
type Session struct {
	Backend net.Conn
	Element pucache.Element
	// ClientDone: the client already half-closed; Backend got CloseWrite.
	ClientDone bool
	// BackendDone: the backend already half-closed; the client got CloseWrite.
	BackendDone bool
	// ToBackend and ToClient count the client bytes (including replays) and
	// backend bytes relayed during the replay phase.
	ToBackend, ToClient int64
	// Replays counts how often the recorded bytes were replayed to a new PE.
	Replays int
}

type evSource uint8

const (
	fromClient evSource = iota
	fromBackend
)

type event struct {
	src evSource
	n   int
	err error
}

var aLongTimeAgo = time.Unix(1, 0)

// DialReplay connects client to a PE like Dial, then runs the replay phase:
// it relays the client's bytes to the PE while keeping a copy of them (up
// to Config.ReplayBuffer bytes) until the PE sends its first byte. If the
// PE closes or resets the connection before sending anything, and every
// byte the client sent so far is in the copy, DialReplay reports the PE,
// connects to another one (prelude first) and replays the copy there,
// within the Attempts and Deadline budget. The phase ends (the connection
// is "committed") as soon as the PE sends a byte, or the client has sent
// more than the buffer holds; after that, no replay happens and DialReplay
// returns the Session for the caller's ordinary relay. idle bounds the
// phase without traffic in either direction (zero: no bound).
//
// Replay repeats the client's first request on another PE: use it only for
// protocols where that request is safe to repeat (idempotent reads, or
// requests the server applies at most once by its own means).
func (d *Dialer) DialReplay(ctx context.Context, client net.Conn, prelude []byte, tried *Tried, idle time.Duration) (*Session, error) {
	deadline := time.Now().Add(d.config.Deadline)
	attempts := d.config.Attempts
	backend, e, err := d.dial(ctx, prelude, tried, deadline, attempts)
	if err != nil {
		return nil, err
	}
	attempts-- // attempts left for replays
	r := replay{
		d: d, client: client, backend: backend, s: &Session{Element: e},
		ev: make(chan event), ack: make(chan struct{}),
		cbuf: make([]byte, 16<<10), bbuf: make([]byte, 16<<10),
		limit: d.config.ReplayBuffer,
	}
	r.s.Backend = backend
	go r.readClient()
	r.clientRunning = true
	r.startBackend()
	// fb bounds the wait for the PE's first byte once it has the client's
	// bytes (Config.FirstByteTimeout).
	fb := time.NewTimer(time.Hour)
	fb.Stop()
	defer fb.Stop()
	r.armFirstByte = func() {
		if d.config.FirstByteTimeout > 0 && !r.fbArmed {
			r.fbArmed = true
			fb.Reset(d.config.FirstByteTimeout)
		}
	}
	var idleC <-chan time.Time
	var idleT *time.Timer
	if idle > 0 {
		idleT = time.NewTimer(idle)
		defer idleT.Stop()
		idleC = idleT.C
	}
	for {
		var ev event
		select {
		case ev = <-r.ev:
		case <-fb.C:
			// The PE holds the client's bytes and says nothing: stop
			// waiting for its read; the event below replays elsewhere.
			r.hung = true
			r.backend.SetReadDeadline(aLongTimeAgo)
			continue
		case <-idleC:
			r.abort()
			return nil, fmt.Errorf("failover: idle for %v before the PE answered", idle)
		case <-ctx.Done():
			r.abort()
			return nil, ctx.Err()
		}
		if idleT != nil {
			idleT.Reset(idle)
		}
		switch ev.src {
		case fromClient:
			if err := r.onClient(ev); err != nil {
				r.abort()
				return nil, err
			}
			if r.overflow {
				// No replay is possible any more: hand over.
				if err := r.commit(); err != nil {
					r.abort()
					return nil, err
				}
				return r.s, nil
			}
		case fromBackend:
			r.backendRunning = false
			if ev.n > 0 {
				if _, err := client.Write(r.bbuf[:ev.n]); err != nil {
					r.abort()
					return nil, err
				}
				r.s.ToClient += int64(ev.n)
				if err := r.commit(); err != nil {
					r.abort()
					return nil, err
				}
				return r.s, nil
			}
			// The PE closed or reset before answering.
			failErr := ev.err
			switch {
			case r.hung:
				failErr = fmt.Errorf("no answer within first_byte_timeout %v", d.config.FirstByteTimeout)
				if tc, ok := r.backend.(*net.TCPConn); ok {
					tc.SetLinger(0)
				}
			case failErr == nil || failErr == io.EOF:
				failErr = errors.New("closed before answering")
			}
			r.hung, r.fbArmed = false, false
			fb.Stop()
			r.backend.Close()
			d.Fail(tried, r.s.Element, failErr)
			if attempts <= 0 {
				r.abort()
				return nil, fmt.Errorf("%w: PE 0x%08x %v", ErrBudget, r.s.Element.ID, failErr)
			}
			nb, ne, err := d.dial(ctx, prelude, tried, deadline, attempts)
			if err != nil {
				r.abort()
				return nil, err
			}
			attempts--
			r.backend, r.s.Backend, r.s.Element = nb, nb, ne
			r.s.Replays++
			if len(r.rec) > 0 {
				r.armFirstByte()
				if _, err := nb.Write(r.rec); err != nil {
					// Detected by the next backend read as a failure.
					_ = err
				}
				r.s.ToBackend += int64(len(r.rec))
			}
			if r.s.ClientDone {
				closeWrite(nb)
			}
			r.startBackend()
		}
	}
}

type replay struct {
	d              *Dialer
	client         net.Conn
	backend        net.Conn
	s              *Session
	ev             chan event
	ack            chan struct{}
	cbuf, bbuf     []byte
	rec            []byte
	limit          int
	overflow       bool
	clientRunning  bool
	backendRunning bool
	armFirstByte   func() // starts the first-byte timer unless it runs
	fbArmed        bool   // the first-byte timer runs for this backend
	hung           bool   // the first-byte timer fired for this backend
}

// readClient reads the client until an error (including the deadline set
// by commit), one chunk at a time: it waits for the chunk to be handled
// before reading the next one.
func (r *replay) readClient() {
	for {
		n, err := r.client.Read(r.cbuf)
		r.ev <- event{src: fromClient, n: n, err: err}
		if err != nil {
			return
		}
		<-r.ack
	}
}

// startBackend reads the current backend once: its first bytes or its failure.
func (r *replay) startBackend() {
	r.backendRunning = true
	b := r.backend
	go func() {
		n, err := b.Read(r.bbuf)
		r.ev <- event{src: fromBackend, n: n, err: err}
	}()
}

// onClient handles one client chunk; it acknowledges data chunks.
func (r *replay) onClient(ev event) error {
	if ev.n > 0 {
		chunk := r.cbuf[:ev.n]
		if !r.overflow && len(r.rec)+ev.n <= r.limit {
			r.rec = append(r.rec, chunk...)
		} else {
			r.overflow = true
			r.rec = nil
		}
		r.s.ToBackend += int64(ev.n)
		r.armFirstByte()
		// A write error means the PE is failing; its read side reports it.
		_, _ = r.backend.Write(chunk)
	}
	if ev.err != nil {
		r.clientRunning = false
		if ev.err == io.EOF {
			r.s.ClientDone = true
			closeWrite(r.backend)
			return nil
		}
		return ev.err
	}
	r.ack <- struct{}{}
	return nil
}

// commit stops both phase readers without losing bytes and clears the
// deadlines, leaving both connections ready for the caller's relay.
func (r *replay) commit() error {
	var firstErr error
	if r.clientRunning {
		r.client.SetReadDeadline(aLongTimeAgo)
	}
	if r.backendRunning {
		r.backend.SetReadDeadline(aLongTimeAgo)
	}
	for r.clientRunning || r.backendRunning {
		ev := <-r.ev
		switch ev.src {
		case fromClient:
			if ev.n > 0 {
				r.s.ToBackend += int64(ev.n)
				if _, err := r.backend.Write(r.cbuf[:ev.n]); err != nil && firstErr == nil {
					firstErr = err
				}
			}
			if ev.err == nil {
				r.ack <- struct{}{}
				continue
			}
			r.clientRunning = false
			switch {
			case errors.Is(ev.err, os.ErrDeadlineExceeded):
			case ev.err == io.EOF:
				r.s.ClientDone = true
				closeWrite(r.backend)
			case firstErr == nil:
				firstErr = ev.err
			}
		case fromBackend:
			r.backendRunning = false
			if ev.n > 0 {
				r.s.ToClient += int64(ev.n)
				if _, err := r.client.Write(r.bbuf[:ev.n]); err != nil && firstErr == nil {
					firstErr = err
				}
			}
			switch {
			case ev.err == nil, errors.Is(ev.err, os.ErrDeadlineExceeded):
			case ev.err == io.EOF:
				r.s.BackendDone = true
				closeWrite(r.client)
			case firstErr == nil:
				firstErr = ev.err
			}
		}
	}
	r.client.SetReadDeadline(time.Time{})
	r.backend.SetReadDeadline(time.Time{})
	return firstErr
}

// abort closes the backend and waits for the phase readers to stop. The
// client connection stays open (its read deadline is left in the past);
// the caller closes it.
func (r *replay) abort() {
	if r.clientRunning {
		r.client.SetReadDeadline(aLongTimeAgo)
	}
	r.backend.Close()
	for r.clientRunning || r.backendRunning {
		ev := <-r.ev
		switch ev.src {
		case fromClient:
			if ev.err == nil {
				r.ack <- struct{}{}
				continue
			}
			r.clientRunning = false
		case fromBackend:
			r.backendRunning = false
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		c.Close()
	}
}
