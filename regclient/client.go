package regclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// sendQueueLen bounds the messages queued for one connection's writer; a
// registrar that stops reading is given up when it fills.
const sendQueueLen = 256

// Client is a registrar client: it keeps the registrar set, hunts for a
// home registrar, carries requests to it and reconnects. All its protocol
// state belongs to one goroutine (the loop); the exported methods post to
// it and are safe for concurrent use.
type Client struct {
	cfg  Config
	log  *slog.Logger
	core *core
	link *Link

	ops    chan func(now time.Time)
	events chan any
	quit   chan struct{}
	done   chan struct{} // closed when the loop has returned

	mu    sync.Mutex     // guards state
	state int            // stateNew, stateRunning, stateClosed
	wg    sync.WaitGroup // every goroutine but the loop

	// Owned by the loop.
	attempts map[uint64]*attempt
	cur      *liveConn
	prev     *liveConn // the connection before a move, open until its effClose
}

const (
	stateNew = iota
	stateRunning
	stateClosed
)

type attempt struct {
	cancel context.CancelFunc
	conn   transport.Conn // set when the dial succeeded
}

// liveConn is the connection in use, with its writer's queue.
type liveConn struct {
	gen  uint64
	conn transport.Conn
	out  chan transport.Message
	stop chan struct{} // closed to end the writer
}

type (
	// evDialed ends a hunt attempt, or with probe a check of the
	// preferred registrar (Config.Rebalance).
	evDialed struct {
		id    uint64
		conn  transport.Conn
		err   error
		probe bool
	}
	evRecv struct {
		gen uint64
		msg wire.Message
	}
	evLost struct {
		gen uint64
		err error
	}
)

// New builds a Client; it starts nothing until Start.
func New(cfg Config) *Client {
	cfg = cfg.withDefaults()
	c := &Client{
		cfg: cfg, log: cfg.Logger,
		ops: make(chan func(time.Time)), events: make(chan any),
		quit: make(chan struct{}), done: make(chan struct{}),
		attempts: map[uint64]*attempt{},
	}
	c.core = newCore(cfg, cfg.Handler, cfg.Logger)
	c.link = &Link{c: c.core}
	return c
}

// Link returns the Handler's side of the client (see Link: only for use
// on the client's goroutine).
func (c *Client) Link() *Link { return c.link }

// Start starts the client's goroutine and, if configured, joins the
// announce group. It does not connect: a request or Link.Want does.
func (c *Client) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateNew {
		return errors.New("regclient: already started or closed")
	}
	if c.cfg.AnnounceGroup != "" {
		rx, err := transport.ListenMulticast(c.cfg.AnnounceGroup, c.cfg.AnnounceInterface)
		if err != nil {
			return fmt.Errorf("regclient: announces: %w", err)
		}
		c.wg.Add(2)
		go c.announceLoop(rx)
		go func() { defer c.wg.Done(); <-c.quit; rx.Close() }()
	}
	c.state = stateRunning
	go c.loop()
	return nil
}

// Close stops the client: pending requests fail with ErrClosed, the
// connection and the hunt end, and every goroutine has returned when
// Close returns. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	prev := c.state
	c.state = stateClosed
	c.mu.Unlock()
	switch prev {
	case stateClosed:
		return nil
	case stateNew:
		close(c.quit)
		c.core.shutdown(time.Now(), ErrClosed)
		close(c.done)
		return nil
	}
	close(c.quit)
	<-c.done
	c.wg.Wait()
	return nil
}

// Do runs f on the client's goroutine (with the Link usable) and waits for
// it; ErrClosed after Close. Before Start, f runs on the caller's
// goroutine (nothing else runs yet).
func (c *Client) Do(f func(now time.Time)) error {
	c.mu.Lock()
	switch c.state {
	case stateNew:
		defer c.mu.Unlock()
		f(time.Now())
		return nil
	case stateClosed:
		c.mu.Unlock()
		return ErrClosed
	}
	c.mu.Unlock()
	ran := make(chan struct{})
	select {
	case c.ops <- func(now time.Time) { f(now); close(ran) }:
	case <-c.quit:
		return ErrClosed
	}
	select {
	case <-ran:
		return nil
	case <-c.done:
		select {
		case <-ran:
			return nil
		default:
		}
		return ErrClosed
	}
}

// Request sends m to the home registrar (hunting for one if needed) and
// waits for its response, within ctx: T1 re-sends at another registrar
// up to MaxRetransmit times. An ASAP_ERROR or ENRP_ERROR answer is an
// *ErrorReply.
func (c *Client) Request(ctx context.Context, m wire.Message) (wire.Message, error) {
	return c.roundTrip(ctx, m, false)
}

// Send queues m (no response expected, e.g. Endpoint Unreachable) for the
// home registrar, hunting for one if needed, and waits until it was
// handed to the connection.
func (c *Client) Send(ctx context.Context, m wire.Message) error {
	_, err := c.roundTrip(ctx, m, true)
	return err
}

type result struct {
	msg wire.Message
	err error
}

func (c *Client) roundTrip(ctx context.Context, m wire.Message, oneway bool) (wire.Message, error) {
	res := make(chan result, 1)
	var r *request
	err := c.Do(func(now time.Time) {
		r = c.core.request(now, m, oneway, func(_ time.Time, resp wire.Message, err error) { res <- result{resp, err} })
	})
	if err != nil {
		return nil, err
	}
	select {
	case x := <-res:
		return x.msg, x.err
	case <-ctx.Done():
		if r != nil {
			c.Do(func(now time.Time) { c.core.cancel(now, r, ctx.Err()) })
		}
		select {
		case x := <-res:
			return x.msg, x.err
		default:
			return nil, ctx.Err()
		}
	}
}

// Learn adds a registrar address (as from an announce), forgotten after
// T7 unless learned again.
func (c *Client) Learn(a transport.Addr) {
	c.Do(func(now time.Time) { c.core.learn(now, a) })
}

// HandleAnnounce learns the registrars of an ASAP Server Announce
// received from src (AnnounceAddrs).
func (c *Client) HandleAnnounce(a *wire.ServerAnnounce, src netip.AddrPort) {
	addrs := AnnounceAddrs(a, src)
	if len(addrs) == 0 {
		return
	}
	c.Do(func(now time.Time) {
		for _, x := range addrs {
			c.core.learn(now, x)
		}
	})
}

// SetRegistrars replaces the static registrars (a reload). A connection
// to a registrar no longer listed or learned is closed.
func (c *Client) SetRegistrars(list []transport.Addr) {
	c.Do(func(now time.Time) { c.core.setStatic(now, list) })
}

// LocalAddr returns the local address of the current connection, nil
// while there is none.
func (c *Client) LocalAddr() net.Addr {
	var a net.Addr
	c.Do(func(time.Time) {
		if c.cur != nil {
			a = c.cur.conn.LocalAddr()
		}
	})
	return a
}

// Registrars returns the registrars a hunt would try, static ones first.
func (c *Client) Registrars() []transport.Addr {
	var out []transport.Addr
	c.Do(func(now time.Time) { out = c.core.set.Candidates(now) })
	return out
}

// ---- the loop ----

func (c *Client) loop() {
	defer close(c.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		c.core.advance(now)
		c.exec(now)
		wait := time.Hour
		if w := c.core.wake(); !w.IsZero() {
			wait = max(w.Sub(now), 0)
		}
		timer.Reset(wait)
		select {
		case <-c.quit:
			c.core.shutdown(time.Now(), ErrClosed)
			c.exec(time.Now())
			for id, a := range c.attempts {
				a.cancel()
				if a.conn != nil {
					c.closeConn(a.conn)
				}
				delete(c.attempts, id)
			}
			return
		case op := <-c.ops:
			op(time.Now())
		case ev := <-c.events:
			c.event(time.Now(), ev)
		case <-timer.C:
		}
		c.exec(time.Now())
	}
}

func (c *Client) event(now time.Time, ev any) {
	switch ev := ev.(type) {
	case evDialed:
		if a := c.attempts[ev.id]; a != nil {
			a.conn = ev.conn
		} else if ev.conn != nil {
			c.closeConn(ev.conn)
			return
		}
		if ev.probe {
			c.core.probed(now, ev.id, ev.err)
		} else {
			c.core.dialed(now, ev.id, ev.err)
		}
		if a := c.attempts[ev.id]; a != nil && ev.err != nil {
			a.cancel()
			delete(c.attempts, ev.id)
		}
	case evRecv:
		c.core.receive(now, ev.gen, ev.msg)
	case evLost:
		c.core.lost(now, ev.gen, ev.err)
	case transport.Addr:
		c.core.learn(now, ev)
	}
}

// exec carries out the core's effects.
func (c *Client) exec(now time.Time) {
	for _, e := range c.core.effects() {
		switch e.kind {
		case effDial:
			ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
			c.attempts[e.id] = &attempt{cancel: cancel}
			c.wg.Add(1)
			go c.dial(ctx, e.id, e.addr)
		case effProbe:
			ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
			c.attempts[e.id] = &attempt{cancel: cancel}
			c.wg.Add(1)
			go c.probe(ctx, e.id, e.addr, transport.Message{PPID: e.ppid, Data: e.data})
		case effCancel, effDrop:
			// An attempt still dialing is forgotten too: its result finds
			// no attempt and closes the connection (event).
			if a := c.attempts[e.id]; a != nil {
				a.cancel()
				if a.conn != nil {
					c.closeConn(a.conn)
				}
				delete(c.attempts, e.id)
			}
		case effAdopt:
			a := c.attempts[e.id]
			delete(c.attempts, e.id)
			if a == nil || a.conn == nil {
				c.core.lost(now, e.gen, errors.New("connection vanished"))
				continue
			}
			a.cancel()
			c.adopt(e.gen, e.addr, a.conn, e.keep)
		case effWrite:
			if c.cur == nil || c.cur.gen != e.gen {
				continue
			}
			select {
			case c.cur.out <- transport.Message{PPID: e.ppid, Data: e.data}:
			default:
				// The registrar does not read: give it up. The reader
				// reports the closed connection.
				c.log.Warn("registrar connection send queue full; closing it")
				c.closeCur()
			}
		case effClose:
			if c.cur != nil && c.cur.gen == e.gen {
				c.closeCur()
			}
			if c.prev != nil && c.prev.gen == e.gen {
				c.closeLive(c.prev)
				c.prev = nil
			}
		}
	}
}

func (c *Client) closeCur() {
	c.closeLive(c.cur)
	c.cur = nil
}

func (c *Client) closeLive(lc *liveConn) {
	close(lc.stop)
	c.closeConn(lc.conn)
}

// closeConn closes a connection without blocking the loop: a graceful
// close waits for the peer (up to the transport's CloseTimeout), and a
// hostile registrar would stall every other event meanwhile.
func (c *Client) closeConn(conn transport.Conn) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		conn.Close()
	}()
}

// adopt makes conn the connection gen and starts its reader and writer.
// The current connection is closed, or with keep left open as prev.
func (c *Client) adopt(gen uint64, addr transport.Addr, conn transport.Conn, keep bool) {
	if c.prev != nil {
		c.closeLive(c.prev)
		c.prev = nil
	}
	if c.cur != nil && keep {
		c.prev = c.cur
		c.cur = nil
	}
	if c.cur != nil {
		c.closeCur()
	}
	lc := &liveConn{gen: gen, conn: conn, out: make(chan transport.Message, sendQueueLen), stop: make(chan struct{})}
	c.cur = lc
	c.wg.Add(2)
	go c.read(lc, addr)
	go c.write(lc)
}

// dial runs one hunt attempt and reports it to the loop.
func (c *Client) dial(ctx context.Context, id uint64, a transport.Addr) {
	defer c.wg.Done()
	conn, err := c.connect(ctx, a)
	c.report(evDialed{id: id, conn: conn, err: err})
}

// connect dials a with Config.Dial.
func (c *Client) connect(ctx context.Context, a transport.Addr) (transport.Conn, error) {
	conn, err := c.cfg.Dial(ctx, a)
	if err == nil && conn == nil {
		err = errors.New("dial returned no connection")
	}
	return conn, err
}

// probe runs one check of the preferred registrar (Config.Rebalance):
// connect, send the Handle Resolution m and wait for an ASAP answer, all
// within ctx. It reports the connection (kept for a move) or the failure.
func (c *Client) probe(ctx context.Context, id uint64, a transport.Addr, m transport.Message) {
	defer c.wg.Done()
	conn, err := c.connect(ctx, a)
	if err == nil {
		if err = c.awaitAnswer(ctx, conn, m); err != nil {
			transport.Abort(conn)
			conn = nil
		}
	}
	c.report(evDialed{id: id, conn: conn, err: err, probe: true})
}

// report hands the end of an attempt to the loop; its connection is closed
// when the client is closing.
func (c *Client) report(ev evDialed) {
	select {
	case c.events <- ev:
	case <-c.quit:
		if ev.conn != nil {
			transport.Abort(ev.conn)
		}
	}
}

// awaitAnswer writes m on conn and reads until an ASAP Handle Resolution
// Response or ASAP Error arrives (at most a few messages), or ctx ends.
func (c *Client) awaitAnswer(ctx context.Context, conn transport.Conn, m transport.Message) error {
	if err := conn.WriteMessage(m); err != nil {
		return err
	}
	read := make(chan struct{})
	c.wg.Add(1)
	go func() { // a read does not take a context: end it by closing
		defer c.wg.Done()
		select {
		case <-ctx.Done():
			transport.Abort(conn)
		case <-read:
		}
	}()
	defer close(read)
	for range 16 {
		rm, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if rm.PPID != wire.PPIDASAP && rm.PPID != 0 {
			continue
		}
		switch msg, _ := wire.ParseASAP(rm.Data); msg.(type) {
		case *wire.HandleResolutionResponse, *wire.ASAPError:
			if ctx.Err() != nil {
				return ctx.Err() // the watcher may be closing the connection
			}
			return nil
		}
	}
	return errors.New("no answer to the Handle Resolution")
}

// post hands an event to the loop; false once the client is closing.
func (c *Client) post(ev any) bool {
	select {
	case c.events <- ev:
		return true
	case <-c.quit:
		return false
	}
}

// read decodes messages from one connection until it fails: PPID 11 (and
// 0, which some peers send on ASAP associations) as ASAP, 12 as ENRP.
func (c *Client) read(lc *liveConn, addr transport.Addr) {
	defer c.wg.Done()
	bad := 0
	for {
		m, err := lc.conn.ReadMessage()
		if err != nil {
			c.post(evLost{lc.gen, err})
			return
		}
		var msg wire.Message
		switch m.PPID {
		case wire.PPIDASAP, 0:
			msg, err = wire.ParseASAP(m.Data)
		case wire.PPIDENRP:
			msg, err = wire.ParseENRP(m.Data)
		default:
			continue
		}
		if err != nil {
			if bad++; bad == 1 || bad%1000 == 0 { // a hostile registrar must not flood the log
				c.log.Warn("undecodable message from registrar", "registrar", addr, "err", err, "count", bad)
			}
			continue
		}
		if !c.post(evRecv{lc.gen, msg}) {
			return
		}
	}
}

// write sends the queued messages of one connection until it is dropped.
func (c *Client) write(lc *liveConn) {
	defer c.wg.Done()
	for {
		select {
		case m := <-lc.out:
			if err := lc.conn.WriteMessage(m); err != nil {
				lc.conn.Close() // the reader reports the loss
				return
			}
		case <-lc.stop:
			return
		case <-c.quit:
			return
		}
	}
}

// announceLoop learns the registrars of the ASAP Server Announces heard
// on the group until the receiver is closed.
func (c *Client) announceLoop(rx *transport.MulticastReceiver) {
	defer c.wg.Done()
	buf := make([]byte, 65536)
	bad := 0
	for {
		n, src, err := rx.ReadFrom(buf)
		if err != nil {
			return
		}
		m, err := wire.ParseASAP(buf[:n])
		sa, ok := m.(*wire.ServerAnnounce)
		if err != nil || !ok {
			if bad++; bad == 1 || bad%1000 == 0 { // announces are unauthenticated: rate-limited
				c.log.Debug("ignoring datagram on the announce group", "from", src.String(), "err", err, "count", bad)
			}
			continue
		}
		for _, a := range AnnounceAddrs(sa, src) {
			if !c.post(a) {
				return
			}
		}
	}
}
