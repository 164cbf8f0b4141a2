package pucache

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/rserpool/rserpool/regclient"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// LearnRegistrar adds a registrar address learned from an ASAP Server
// Announce (or any other discovery); it is forgotten after
// Config.AnnounceLifetime unless learned again. Static addresses are
// always tried first, and learned ones are bounded (regclient.Set).
func (c *Cache) LearnRegistrar(addr transport.Addr) {
	c.rc.Learn(addr)
	c.clearNegative()
}

// HandleAnnounce learns the registrar addresses of an ASAP Server Announce
// received from src, by the rule of regclient.AnnounceAddrs.
func (c *Cache) HandleAnnounce(a *wire.ServerAnnounce, src netip.AddrPort) {
	c.rc.HandleAnnounce(a, src)
	c.clearNegative()
}

// Registrars returns the addresses the cache would try, static ones first.
func (c *Cache) Registrars() []transport.Addr { return c.rc.Registrars() }

// SetRegistrars replaces the static registrar list (for a configuration
// reload). The current registrar connection is kept if its address is still
// listed or learned, and dropped otherwise.
func (c *Cache) SetRegistrars(addrs []transport.Addr) {
	c.rc.SetRegistrars(addrs)
	c.clearNegative()
}

// clearNegative forgets failed resolutions, so that the next selection asks
// again (a registrar was added).
func (c *Cache) clearNegative() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pools {
		p.mu.Lock()
		p.failed = nil
		p.mu.Unlock()
	}
}

// resolve sends one Handle Resolution (with RSPLIB's Handle Resolution
// Option for Config.Items PEs) through the registrar client.
func (c *Cache) resolve(ctx context.Context, handle wire.PoolHandle) (*wire.HandleResolutionResponse, error) {
	m, err := c.rc.Request(ctx, &wire.HandleResolution{PoolHandle: handle, HasItems: true, Items: c.cfg.Items})
	if err != nil {
		switch {
		case errors.Is(err, regclient.ErrClosed):
			return nil, ErrClosed
		case ctx.Err() != nil:
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrNoRegistrar, err)
	}
	resp, ok := m.(*wire.HandleResolutionResponse)
	if !ok {
		return nil, fmt.Errorf("%w: unexpected answer %T", ErrNoRegistrar, m)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("%w %q (%s)", ErrUnknownPool, handle, causes(resp.Error))
	}
	return resp, nil
}

func causes(e *wire.OperationError) string {
	if len(e.Causes) == 0 {
		return "no cause"
	}
	s := ""
	for i, c := range e.Causes {
		if i > 0 {
			s += ", "
		}
		s += "cause 0x" + strconv.FormatUint(uint64(c.Code), 16)
	}
	return s
}
