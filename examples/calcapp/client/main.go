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
	pool, err := c.Parse(fs, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "calcapp-client:", err)
		os.Exit(2)
	}
	log := c.Logger()
	cache, err := c.Cache(log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "calcapp-client:", err)
		os.Exit(1)
	}
	defer cache.Close()
	ctx, stop := cli.SignalContext()
	defer stop()
	cfg.Out = os.Stdout
	dial := func(ctx context.Context) (*session.Session, error) {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return session.Dial(dctx, pool, session.Config{Cache: cache, PPID: calcapp.PPID, Logger: log.With("component", "session")})
	}
	rs, err := calcapp.Run(ctx, dial, cfg)
	fmt.Printf("%d of %d jobs completed\n", len(rs), cfg.Jobs)
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "calcapp-client:", err)
		os.Exit(1)
	}
}
