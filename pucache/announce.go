package pucache

import (
	"fmt"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// ListenAnnounces joins the ASAP announce multicast group (for example
// "239.0.0.50:3863", RSPLIB's default; iface "" lets the routing table
// choose) and learns every registrar announced there (HandleAnnounce) until
// Close. Announces are unauthenticated: at most 64 announced registrars are
// kept, each for Config.AnnounceLifetime after its last announce.
func (c *Cache) ListenAnnounces(group, iface string) error {
	rx, err := transport.ListenMulticast(group, iface)
	if err != nil {
		return fmt.Errorf("pucache: announces: %w", err)
	}
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		rx.Close()
		return ErrClosed
	}
	c.wg.Add(2)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		<-c.ctx.Done()
		rx.Close()
	}()
	go c.announceLoop(rx)
	return nil
}

func (c *Cache) announceLoop(rx *transport.MulticastReceiver) {
	defer c.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, src, err := rx.ReadFrom(buf)
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Warn("announce receiver stopped", "err", err)
			}
			return
		}
		m, err := wire.ParseASAP(buf[:n])
		if err != nil {
			c.log.Debug("undecodable announce", "src", src.String(), "err", err)
			continue
		}
		if a, ok := m.(*wire.ServerAnnounce); ok {
			c.HandleAnnounce(a, src)
		}
	}
}
