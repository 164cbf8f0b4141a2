package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/transport"
)

// Config is the failover budget for one client connection. The zero value
// of every field takes its documented default.
type Config struct {
	// Attempts is the number of connection attempts per client connection,
	// each to a different PE. Zero means 4 (one try plus three retries).
	Attempts int
	// ConnectTimeout bounds one connection attempt. Zero means 1 s.
	ConnectTimeout time.Duration
	// Deadline bounds all attempts of one client connection, backoff
	// included. Zero means Attempts × ConnectTimeout.
	Deadline time.Duration
	// Backoff is the first wait after every PE known to the cache has
	// failed, before the pool is resolved again; it doubles per round up to
	// 1 s. Zero means 50 ms.
	Backoff time.Duration
	// ReplayBuffer enables the replay buffer when > 0: the first
	// ReplayBuffer bytes of the client are kept until the PE answers, and
	// replayed to another PE if the PE closes or resets the connection
	// before sending a byte. Zero (the default) disables it. See DialReplay.
	ReplayBuffer int
}

func (c Config) withDefaults() Config {
	if c.Attempts <= 0 {
		c.Attempts = 4
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = time.Second
	}
	if c.Deadline <= 0 {
		c.Deadline = time.Duration(c.Attempts) * c.ConnectTimeout
	}
	if c.Backoff <= 0 {
		c.Backoff = 50 * time.Millisecond
	}
	return c
}

// ErrBudget is wrapped by Dial's error when every attempt failed.
var ErrBudget = errors.New("failover: every attempt failed")

// Dialer connects client connections to the PEs of one pool. Its methods
// are safe for concurrent use; the fields must not change after first use.
type Dialer struct {
	Pool   *pucache.Pool
	config Config
	// OnFailure, if set, is called once for each PE that failed (after it
	// was reported unreachable). It must be cheap and safe for concurrent use.
	OnFailure func(e pucache.Element, err error)
	// OnConnect, if set, is called with each PE a connection was made to
	// (prelude written), replays included. It must be cheap and safe for
	// concurrent use.
	OnConnect func(e pucache.Element)
}

// NewDialer returns a Dialer for pool with cfg's budget.
func NewDialer(pool *pucache.Pool, cfg Config) *Dialer {
	return &Dialer{Pool: pool, config: cfg.withDefaults()}
}

// Config returns the effective budget (defaults applied).
func (d *Dialer) Config() Config { return d.config }

// Tried is the set of PEs a client connection has already failed on. The
// zero value is empty; it holds 8 IDs without allocating.
type Tried struct {
	buf [8]uint32
	ids []uint32
}

// Add records a failed PE.
func (t *Tried) Add(id uint32) {
	if t.ids == nil {
		t.ids = t.buf[:0]
	}
	t.ids = append(t.ids, id)
}

// IDs returns the failed PE IDs; the slice is owned by t.
func (t *Tried) IDs() []uint32 { return t.ids }

// Dial connects to a PE of the pool in policy order, skipping the PEs in
// tried. It writes prelude (for example a PROXY protocol header) before
// returning; a PE that fails the write counts as failed. Each failed PE is
// reported unreachable and added to tried. When every known PE has failed
// it backs off, resolves the pool again and continues with PEs it has not
// tried, within Attempts and Deadline. A cancelled ctx is not a PE failure.
func (d *Dialer) Dial(ctx context.Context, prelude []byte, tried *Tried) (net.Conn, pucache.Element, error) {
	return d.dial(ctx, prelude, tried, time.Now().Add(d.config.Deadline), d.config.Attempts)
}

func (d *Dialer) dial(ctx context.Context, prelude []byte, tried *Tried, deadline time.Time, attempts int) (net.Conn, pucache.Element, error) {
	backoff := d.config.Backoff
	var lastErr error
	for attempt := 0; attempt < attempts; attempt++ {
		e, err := d.Pool.Pick(ctx, tried.ids)
		if err != nil && errors.Is(err, pucache.ErrNoElements) && len(tried.ids) > 0 {
			// Every PE this cache knows has failed for this client: wait,
			// ask the registrar again and continue with new PEs, if any.
			if !sleep(ctx, backoff, deadline) {
				break
			}
			backoff = min(2*backoff, time.Second)
			rctx, cancel := context.WithDeadline(ctx, deadline)
			_ = d.Pool.Refresh(rctx)
			cancel()
			e, err = d.Pool.Pick(ctx, tried.ids)
		}
		if err != nil {
			if lastErr != nil {
				return nil, pucache.Element{}, fmt.Errorf("%w: %w (after %v)", ErrBudget, err, lastErr)
			}
			return nil, pucache.Element{}, err
		}
		addr, aerr := e.TransportAddr()
		if aerr != nil {
			// Not reachable from this relay: skip it without blaming the PE.
			tried.Add(e.ID)
			attempt--
			if len(tried.ids) > 64 {
				break
			}
			continue
		}
		timeout := min(d.config.ConnectTimeout, time.Until(deadline))
		if timeout <= 0 {
			break
		}
		// RSPLIB PEs register SCTP user transports: DialStream reaches them
		// as well as TCP ones, within the connect timeout.
		dctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err := transport.DialStream(dctx, addr)
		cancel()
		if err == nil && len(prelude) > 0 {
			if _, err = conn.Write(prelude); err != nil {
				conn.Close()
			}
		}
		if err == nil {
			if d.OnConnect != nil {
				d.OnConnect(e)
			}
			return conn, e, nil
		}
		if ctx.Err() != nil {
			return nil, pucache.Element{}, ctx.Err()
		}
		lastErr = fmt.Errorf("PE 0x%08x at %s: %w", e.ID, e.Addr, err)
		d.fail(tried, e, err)
	}
	if lastErr == nil {
		lastErr = context.DeadlineExceeded
	}
	return nil, pucache.Element{}, fmt.Errorf("%w: %w", ErrBudget, lastErr)
}

func (d *Dialer) fail(tried *Tried, e pucache.Element, err error) {
	tried.Add(e.ID)
	d.Pool.ReportUnreachable(e.ID)
	if d.OnFailure != nil {
		d.OnFailure(e, err)
	}
}

// sleep waits for d, or returns false if ctx ends or the wait would pass
// deadline.
func sleep(ctx context.Context, d time.Duration, deadline time.Time) bool {
	if time.Now().Add(d).After(deadline) {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
