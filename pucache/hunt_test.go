package pucache_test

import (
	"net"
	"testing"
	"time"

	"github.com/rserpool/rserpool/internal/netnstest"
	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/pucache/pucachetest"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// TestHuntPastBlackHoles: the first two registrars drop every SYN (an
// nftables rule in a network namespace of the test's own), the third is
// live. The server hunt tries up to three at once (RFC 5352 §3.6 SH1), so
// the first resolution succeeds within one connect timeout (T5) instead of
// after two of them.
func TestHuntPastBlackHoles(t *testing.T) {
	if !netnstest.Run(t,
		[]string{"ip", "link", "set", "lo", "up"},
		[]string{"nft", "add table inet hunt"},
		[]string{"nft", "add chain inet hunt out { type filter hook output priority 0 ; }"},
		[]string{"nft", "add rule inet hunt out ip daddr { 127.0.0.2, 127.0.0.3 } tcp dport 3863 drop"},
	) {
		return
	}
	// The black holes are black: a connect neither succeeds nor is refused.
	if c, err := net.DialTimeout("tcp", "127.0.0.2:3863", 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("connected to the black hole")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("black hole: %v, want a timeout", err)
	}
	live := pucachetest.Start(t)
	live.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, ap(t, 7001), wire.PolicyRoundRobin, 0))
	const t5 = 2 * time.Second
	c := newCache(t, pucache.Config{
		Registrars: []transport.Addr{
			transport.MustParseAddr("tcp://127.0.0.2:3863"),
			transport.MustParseAddr("tcp://127.0.0.3:3863"),
			live.Addr(),
		},
		ConnectTimeout: t5,
		RequestTimeout: 5 * time.Second,
	})
	start := time.Now()
	e, err := c.Select(ctxT(t), "P")
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != 1 {
		t.Fatalf("got %+v", e)
	}
	t.Logf("first resolution past two black holes: %v (connect timeout %v)", took, t5)
	if took >= t5 {
		t.Fatalf("resolution took %v, want less than one connect timeout (%v)", took, t5)
	}
	if live.Resolutions("P") != 1 {
		t.Errorf("%d resolutions at the live registrar", live.Resolutions("P"))
	}
}
