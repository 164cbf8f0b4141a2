package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
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
	// HedgeDelay is how long a connect may stay pending before the next PE
	// in policy order is tried alongside it (the first to connect wins).
	// Zero means adaptive: the p99 of the pool's recent connect times,
	// between MinHedgeDelay and MaxHedgeDelay. Negative: no hedging.
	HedgeDelay time.Duration
	// ReplayBuffer enables the replay buffer when > 0: the first
	// ReplayBuffer bytes of the client are kept until the PE answers, and
	// replayed to another PE if the PE closes or resets the connection
	// before sending a byte. Zero (the default) disables it. See DialReplay.
	ReplayBuffer int
	// FirstByteTimeout, with the replay buffer on, abandons a PE that has
	// not sent its first byte this long after the client's first bytes
	// reached it (a hung PE whose kernel still accepts): the PE is reported
	// and the buffered bytes are replayed to another one. Zero: no bound.
	FirstByteTimeout time.Duration
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
	hedge  *hedger
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
	cfg = cfg.withDefaults()
	return &Dialer{Pool: pool, config: cfg, hedge: newHedger(cfg.HedgeDelay, 10*cfg.ConnectTimeout)}
}

// Config returns the effective budget (defaults applied).
func (d *Dialer) Config() Config { return d.config }

// Tried is the set of PEs a client connection has already failed on, and
// the owner of the attempts its hedged connects left behind. The zero value
// is empty; it holds 8 IDs without allocating. Call Wait before dropping a
// Tried that Dial used.
type Tried struct {
	buf [8]uint32
	ids []uint32
	wg  sync.WaitGroup // overtaken attempts still finishing
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

// Wait waits for the attempts that hedged connects overtook: each ends
// within ConnectTimeout (or when Dial's context ends), closing its
// connection or reporting its PE.
func (t *Tried) Wait() { t.wg.Wait() }

// doneCtx is an ended context: Pool.Pick with it never waits.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// Pick selects the next PE for a client connection without waiting: in
// policy order, skipping the PEs in tried and in pending (attempts in
// flight), and a suspect PE (see Overtaken) while another one is left. It
// fails when the cache would have to ask a registrar (use Next).
func (d *Dialer) Pick(tried *Tried, pending []uint32, now time.Time) (pucache.Element, error) {
	return d.pick(doneCtx, exclude(tried, pending), now)
}

func exclude(tried *Tried, pending []uint32) []uint32 {
	if len(pending) == 0 {
		return tried.ids
	}
	return append(slices.Clip(tried.ids), pending...)
}

func (d *Dialer) pick(ctx context.Context, ex []uint32, now time.Time) (pucache.Element, error) {
	e, err := d.Pool.Pick(ctx, ex)
	for range 4 {
		if err != nil || !d.hedge.isSuspect(e.ID, now) {
			return e, err
		}
		e2, err2 := d.Pool.Pick(ctx, append(slices.Clip(ex), e.ID))
		if err2 != nil {
			return e, nil // only suspects left: try one
		}
		ex = append(slices.Clip(ex), e.ID)
		e = e2
	}
	return e, err
}

// Next selects the next PE like Pick, waiting when it must: for the first
// resolution of the pool, or, when every PE the cache knows has failed for
// this client, for a backoff (*backoff, doubled per call up to 1 s) and a
// new resolution. PEs without a TCP or SCTP user transport are skipped (and
// added to tried). It fails when deadline passes or ctx ends.
func (d *Dialer) Next(ctx context.Context, tried *Tried, pending []uint32, deadline time.Time, backoff *time.Duration) (pucache.Element, transport.Addr, error) {
	for range 64 {
		e, err := d.pick(ctx, exclude(tried, pending), time.Now())
		if err != nil && errors.Is(err, pucache.ErrNoElements) && len(tried.ids) > 0 && len(pending) == 0 {
			// Every PE this cache knows has failed for this client: wait,
			// ask the registrar again and continue with new PEs, if any.
			if !sleep(ctx, *backoff, deadline) {
				return pucache.Element{}, transport.Addr{}, err
			}
			*backoff = min(2**backoff, time.Second)
			rctx, cancel := context.WithDeadline(ctx, deadline)
			_ = d.Pool.Refresh(rctx)
			cancel()
			e, err = d.pick(ctx, tried.ids, time.Now())
		}
		if err != nil {
			return pucache.Element{}, transport.Addr{}, err
		}
		addr, aerr := e.TransportAddr()
		if aerr == nil {
			return e, addr, nil
		}
		// Not reachable from this relay: skip it without blaming the PE.
		tried.Add(e.ID)
	}
	return pucache.Element{}, transport.Addr{}, fmt.Errorf("%w: no PE with a usable transport", pucache.ErrNoElements)
}

// Dial connects to a PE of the pool in policy order, skipping the PEs in
// tried. It writes prelude (for example a PROXY protocol header) before
// returning; a PE that fails the write counts as failed. Each failed PE is
// reported unreachable and added to tried. When a connect is still pending
// after the hedge delay (Config.HedgeDelay), the next PE is tried alongside
// it and the first to connect wins; the overtaken attempt becomes a
// suspect and finishes in the background (the caller's tried.Wait waits
// for it), reported only if it fails. When every known PE has failed it
// backs off, resolves the pool again and continues with PEs it has not
// tried, within Attempts and Deadline. A cancelled ctx is not a PE failure.
func (d *Dialer) Dial(ctx context.Context, prelude []byte, tried *Tried) (net.Conn, pucache.Element, error) {
	return d.dial(ctx, prelude, tried, time.Now().Add(d.config.Deadline), d.config.Attempts)
}

// attempt is the outcome of one connection attempt.
type attempt struct {
	e    pucache.Element
	conn net.Conn
	err  error
	took time.Duration
}

// race is the set of attempts of one dial: once decided, late attempts
// clean up after themselves instead of reporting to the dial.
type race struct {
	mu      sync.Mutex // guards decided
	decided bool
	res     chan attempt // buffered for every attempt
}

func (d *Dialer) dial(ctx context.Context, prelude []byte, tried *Tried, deadline time.Time, attempts int) (net.Conn, pucache.Element, error) {
	backoff := d.config.Backoff
	var lastErr error
	rc := &race{res: make(chan attempt, attempts)}
	var pending []uint32
	started := 0
	hedge := time.NewTimer(time.Hour)
	hedge.Stop()
	defer hedge.Stop()
	start := func(hedged bool) error {
		var e pucache.Element
		var addr transport.Addr
		var err error
		if hedged {
			// A hedge never waits for a registrar or a backoff.
			if e, err = d.Pick(tried, pending, time.Now()); err == nil {
				addr, err = e.TransportAddr()
			}
		} else {
			e, addr, err = d.Next(ctx, tried, pending, deadline, &backoff)
		}
		if err != nil {
			return err
		}
		timeout := min(d.config.ConnectTimeout, time.Until(deadline))
		if timeout <= 0 {
			return context.DeadlineExceeded
		}
		started++
		pending = append(pending, e.ID)
		tried.wg.Add(1)
		go d.try(ctx, rc, tried, e, addr, timeout, prelude)
		if delay, ok := d.HedgeDelay(e.ID, time.Now()); ok && started < attempts {
			hedge.Reset(delay)
		}
		return nil
	}
	fail := func(err error) (net.Conn, pucache.Element, error) {
		d.settle(rc)
		if ctx.Err() != nil {
			return nil, pucache.Element{}, ctx.Err()
		}
		if lastErr == nil {
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return nil, pucache.Element{}, err
			}
			lastErr = context.DeadlineExceeded
		}
		return nil, pucache.Element{}, fmt.Errorf("%w: %w", ErrBudget, lastErr)
	}
	if err := start(false); err != nil {
		return fail(err)
	}
	for {
		select {
		case a := <-rc.res:
			pending = slices.DeleteFunc(pending, func(id uint32) bool { return id == a.e.ID })
			if a.err == nil {
				d.Connected(a.e.ID, a.took)
				if d.OnConnect != nil {
					d.OnConnect(a.e)
				}
				now := time.Now()
				for _, id := range pending {
					d.Overtaken(id, now)
				}
				d.settle(rc)
				return a.conn, a.e, nil
			}
			if ctx.Err() != nil {
				return fail(nil)
			}
			lastErr = fmt.Errorf("PE 0x%08x at %s: %w", a.e.ID, a.e.Addr, a.err)
			d.Fail(tried, a.e, a.err)
			if len(pending) > 0 {
				continue
			}
			if started >= attempts {
				return fail(nil)
			}
			if err := start(false); err != nil {
				return fail(err)
			}
		case <-hedge.C:
			if started < attempts && len(pending) > 0 {
				_ = start(true) // nothing to hedge with: wait on
			}
		case <-ctx.Done():
			return fail(nil)
		}
	}
}

// try runs one connection attempt and hands its outcome to the dial, or,
// when the dial was decided without it, closes its connection (clearing
// the suspicion) or reports its PE.
func (d *Dialer) try(ctx context.Context, rc *race, tried *Tried, e pucache.Element, addr transport.Addr, timeout time.Duration, prelude []byte) {
	defer tried.wg.Done()
	begin := time.Now()
	// RSPLIB PEs register SCTP user transports: DialStream reaches them
	// as well as TCP ones, within the connect timeout.
	dctx, cancel := context.WithTimeout(ctx, timeout)
	conn, err := transport.DialStream(dctx, addr)
	cancel()
	took := time.Since(begin)
	if err == nil && len(prelude) > 0 {
		if _, err = conn.Write(prelude); err != nil {
			conn.Close()
		}
	}
	rc.mu.Lock()
	if !rc.decided {
		rc.res <- attempt{e: e, conn: conn, err: err, took: took}
		rc.mu.Unlock()
		return
	}
	rc.mu.Unlock()
	d.late(ctx, attempt{e: e, conn: conn, err: err, took: took})
}

// late handles an attempt that finished after its dial was decided.
func (d *Dialer) late(ctx context.Context, a attempt) {
	switch {
	case a.err == nil:
		a.conn.Close()
		d.Connected(a.e.ID, a.took)
	case ctx.Err() == nil:
		d.Fail(nil, a.e, a.err)
	}
}

// settle decides rc: attempts that finish from now on clean up after
// themselves, and those already queued are cleaned up here.
func (d *Dialer) settle(rc *race) {
	rc.mu.Lock()
	rc.decided = true
	rc.mu.Unlock()
	for {
		select {
		case a := <-rc.res:
			d.late(context.Background(), a)
		default:
			return
		}
	}
}

// Fail reports the PE e unreachable (pucache: removed from the cache at
// once, ASAP Endpoint Unreachable sent), adds it to tried (if not nil),
// clears its suspicion and calls OnFailure.
func (d *Dialer) Fail(tried *Tried, e pucache.Element, err error) {
	if tried != nil {
		tried.Add(e.ID)
	}
	d.hedge.clear(e.ID)
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
