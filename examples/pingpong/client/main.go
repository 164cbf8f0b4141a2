// Command client is a PingPong pool user that speaks RSPLIB's PingPong
// service (like pingpongclient) through a failover-capable session: see
// ../README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rserpool/rserpool/examples/internal/cli"
	"github.com/rserpool/rserpool/examples/pingpong"
	"github.com/rserpool/rserpool/wire"
)

func main() {
	fs := flag.NewFlagSet("pingpong-client", flag.ExitOnError)
	var c cli.Common
	c.Register(fs, "PingPongPool")
	interval := fs.Duration("interval", 500*time.Millisecond, "time between Pings")
	count := fs.Uint64("count", 0, "number of Pings (0: until Ctrl-C)")
	pool := c.MustParse(fs)
	cli.Exit(fs.Name(), run(c, pool, *interval, *count))
}

func run(c cli.Common, pool wire.PoolHandle, interval time.Duration, count uint64) error {
	log := c.Logger()
	cache, err := c.Cache(log)
	if err != nil {
		return err
	}
	defer cache.Close()
	ctx, stop := cli.SignalContext()
	defer stop()
	s, err := c.Dial(ctx, cache, pool, pingpong.PPID, log)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Printf("Ping Pong pool user: pool %s, PE $%08x, interval %v\n", pool, s.PE().ID, interval)
	r, err := pingpong.Run(ctx, s, pingpong.ClientConfig{Interval: interval, Count: count, Out: os.Stdout})
	fmt.Printf("%d Pings, %d Pongs, %d failovers, %d gaps\n", r.Pings, r.Pongs, r.Failovers, r.Gaps)
	return err
}
