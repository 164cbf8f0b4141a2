// Command server is a PingPong pool element that speaks RSPLIB's PingPong
// service (rspserver -pingpong): see ../README.md.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/rserpool/rserpool/examples/internal/cli"
	"github.com/rserpool/rserpool/examples/pingpong"
	"github.com/rserpool/rserpool/session"
)

func main() {
	fs := flag.NewFlagSet("pingpong-server", flag.ExitOnError)
	var pe cli.PE
	pe.Register(fs, "PingPongPool")
	failAfter := fs.Int("fail-after", 0, "end each session after `n` Pongs, so that the pool user fails over (0: never)")
	pool, err := pe.Parse(fs, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "pingpong-server:", err)
		os.Exit(2)
	}
	log := pe.Logger()
	err = pe.Serve(pool, pingpong.PPID, pingpong.Handler(pingpong.HandlerConfig{Log: log.With("component", "pingpong"), FailAfter: *failAfter}), func(srv *session.Server) {
		fmt.Printf("PingPong %s serves pool %s (Ctrl-C deregisters and stops)\n", cli.Describe(srv), pool)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pingpong-server:", err)
		os.Exit(1)
	}
}
