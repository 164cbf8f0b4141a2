// Command worker is a CalcApp pool element that speaks RSPLIB's CalcApp
// service (rspserver -calcapp): see ../README.md.
package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/rserpool/rserpool/examples/calcapp"
	"github.com/rserpool/rserpool/examples/internal/cli"
	"github.com/rserpool/rserpool/session"
)

func main() {
	fs := flag.NewFlagSet("calcapp-worker", flag.ExitOnError)
	var pe cli.PE
	pe.Register(fs, "CalcAppPool")
	var cfg calcapp.WorkerConfig
	fs.Float64Var(&cfg.Capacity, "capacity", 1e6, "calculations per second, shared by the running jobs")
	fs.IntVar(&cfg.MaxJobs, "max-jobs", 8, "jobs run at once; more are rejected")
	fs.DurationVar(&cfg.CookieInterval, "cookie-interval", time.Second, "how often a job's progress is sent as a cookie")
	pool := pe.MustParse(fs)
	cfg.OnEvent = func(e calcapp.Event) {
		if e.Kind != calcapp.EventCookie {
			fmt.Printf("%s job %d %s (size %d, completed %d)\n", time.Now().Format("15:04:05.000"), e.JobID, e.Kind, e.JobSize, e.Completed)
		}
	}
	w := calcapp.NewWorker(cfg)
	cli.Exit(fs.Name(), pe.Serve(pool, calcapp.PPID, w.Handler, func(srv *session.Server) {
		fmt.Printf("CalcApp %s serves pool %s at %.0f calculations/s (Ctrl-C deregisters and stops)\n", cli.Describe(srv), pool, cfg.Capacity)
	}))
}
