// Command server is a PingPong pool element that speaks RSPLIB's PingPong
// service (rspserver -pingpong): see ../README.md.
package main

import (
	"flag"
	"fmt"

	"github.com/rserpool/rserpool/examples/internal/cli"
	"github.com/rserpool/rserpool/examples/pingpong"
	"github.com/rserpool/rserpool/session"
)

func main() {
	fs := flag.NewFlagSet("pingpong-server", flag.ExitOnError)
	var pe cli.PE
	pe.Register(fs, "PingPongPool")
	failAfter := fs.Int("fail-after", 0, "end each session after `n` Pongs, so that the pool user fails over (0: never)")
	pool := pe.MustParse(fs)
	h := pingpong.Handler(pingpong.HandlerConfig{Log: pe.Logger().With("component", "pingpong"), FailAfter: *failAfter})
	cli.Exit(fs.Name(), pe.Serve(pool, pingpong.PPID, h, func(srv *session.Server) {
		fmt.Printf("PingPong %s serves pool %s (Ctrl-C deregisters and stops)\n", cli.Describe(srv), pool)
	}))
}
