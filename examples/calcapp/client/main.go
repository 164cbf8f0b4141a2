// Command client is a CalcApp pool user that speaks RSPLIB's CalcApp
// service (like calcappclient) through failover-capable sessions: see
// ../README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rserpool/rserpool/examples/calcapp"
	"github.com/rserpool/rserpool/examples/internal/cli"
	"github.com/rserpool/rserpool/session"
	"github.com/rserpool/rserpool/wire"
)

func main() {
	fs := flag.NewFlagSet("calcapp-client", flag.ExitOnError)
	var c cli.Common
	c.Register(fs, "CalcAppPool")
	var cfg calcapp.ClientConfig
	fs.IntVar(&cfg.Jobs, "jobs", 3, "jobs to run, one after the other")
	fs.Uint64Var(&cfg.JobSize, "jobsize", 5_000_000, "calculations per job")
	fs.DurationVar(&cfg.KeepAliveInterval, "keepalive-interval", 5*time.Second, "idle time before a KeepAlive to the worker")
	fs.DurationVar(&cfg.KeepAliveTimeout, "keepalive-timeout", 5*time.Second, "wait for an answer before failing over")
	pool := c.MustParse(fs)
	cli.Exit(fs.Name(), run(c, pool, cfg))
}

func run(c cli.Common, pool wire.PoolHandle, cfg calcapp.ClientConfig) error {
	log := c.Logger()
	cache, err := c.Cache(log)
	if err != nil {
		return err
	}
	defer cache.Close()
	ctx, stop := cli.SignalContext()
	defer stop()
	cfg.Out = os.Stdout
	rs, err := calcapp.Run(ctx, func(ctx context.Context) (*session.Session, error) {
		return c.Dial(ctx, cache, pool, calcapp.PPID, log)
	}, cfg)
	fmt.Printf("%d of %d jobs completed\n", len(rs), cfg.Jobs)
	if ctx.Err() != nil {
		return nil // interrupted
	}
	return err
}
