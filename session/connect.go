package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// errNoControl marks a TCP PE that registered no control channel: it is a
// plain TCP server, not a peer of the TCP mapping.
var errNoControl = errors.New("the PE's TCP transport has no ASAP control channel (Transport Use data only)")

// connect finds a PE and opens an association to it. Candidates are, in
// order: the PEs of the last business card (card order), then the pool's
// policy through the cache; the failed PE and every PE tried in this round
// are skipped, and each PE that cannot be reached is reported unreachable.
// On the new association it sends the Cookie Echo (if a cookie is kept and
// the PE runs a control channel) and then Config.BusinessCard.
//
// Without failed (the first connection) connect gives up when every PE the
// policy offers has been tried. With failed (a failover) it keeps going
// until ctx ends: when no PE is usable it waits RetryDelay, resolves the
// pool again and starts a new round. echoed tells whether a Cookie Echo
// was sent.
func (s *Session) connect(ctx context.Context, failed *target) (c transport.Conn, t target, echoed bool, err error) {
	s.mu.Lock()
	card, cookie := s.card, s.cookie
	s.mu.Unlock()
	var tried []PE
	if failed != nil {
		tried = append(tried, failed.pe)
	}
	var lastErr error
	for {
		if err := ctx.Err(); err != nil {
			return nil, t, false, noPE(err, lastErr)
		}
		t, err = s.next(ctx, card, tried)
		if err != nil {
			if ctx.Err() != nil {
				return nil, t, false, noPE(ctx.Err(), lastErr)
			}
			if failed == nil {
				return nil, t, false, noPE(err, lastErr)
			}
			if lastErr == nil {
				lastErr = err
			}
			if !s.pause(ctx) {
				return nil, t, false, noPE(ctx.Err(), lastErr)
			}
			rctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
			s.cfg.Cache.Pool(s.handle).Refresh(rctx) // errors show in the next Pick
			cancel()
			tried = tried[:0]
			continue
		}
		tried = append(tried, t.pe)
		if !t.usable() {
			lastErr = fmt.Errorf("PE %v: %w", t.pe, errNoControl)
			continue
		}
		c, err = s.open(ctx, t, cookie)
		if err != nil {
			lastErr = fmt.Errorf("PE %v: %w", t.pe, err)
			s.log.Info("pool element unreachable", "pe", t.pe, "err", err)
			s.cfg.Cache.Pool(t.pe.Pool).ReportUnreachable(t.pe.ID)
			continue
		}
		return c, t, t.control && cookie != nil, nil
	}
}

func noPE(err, last error) error {
	if last != nil {
		return fmt.Errorf("%w: %w (last: %w)", ErrNoPE, err, last)
	}
	return fmt.Errorf("%w: %w", ErrNoPE, err)
}

// next returns the next candidate that is not in tried.
func (s *Session) next(ctx context.Context, card []target, tried []PE) (target, error) {
	for _, t := range card {
		if !hasPE(tried, t.pe) {
			return t, nil
		}
	}
	var exclude []uint32
	for _, p := range tried {
		if p.Pool == s.handle {
			exclude = append(exclude, p.ID)
		}
	}
	e, err := s.cfg.Cache.Pool(s.handle).Pick(ctx, exclude)
	if err != nil {
		return target{}, err
	}
	return targetFromElement(s.handle, e), nil
}

func hasPE(ps []PE, pe PE) bool {
	for _, p := range ps {
		if p.ID == pe.ID && p.Pool == pe.Pool {
			return true
		}
	}
	return false
}

// open connects to t within ConnectTimeout and sends the control messages
// that open a session: the Cookie Echo first, then the business card.
func (s *Session) open(ctx context.Context, t target, cookie []byte) (transport.Conn, error) {
	addr, err := transport.ParseAddr(t.pe.Addr)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	c, err := s.cfg.Dial(cctx, addr)
	cancel()
	if err != nil {
		return nil, err
	}
	if !t.control {
		return c, nil
	}
	var msgs []wire.Message
	if cookie != nil {
		msgs = append(msgs, &wire.CookieEcho{Cookie: cookie})
	}
	if s.cfg.BusinessCard != nil {
		msgs = append(msgs, s.cfg.BusinessCard)
	}
	for _, m := range msgs {
		if err := writeASAP(c, m); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// pause waits RetryDelay; false if ctx ended first.
func (s *Session) pause(ctx context.Context) bool {
	t := time.NewTimer(s.cfg.RetryDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// writeASAP sends one ASAP message on the control channel (PPID 11).
func writeASAP(c transport.Conn, m wire.Message) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	return c.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: b})
}
