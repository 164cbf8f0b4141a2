package calcapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rserpool/rserpool/session"
)

// ClientConfig configures Run.
type ClientConfig struct {
	// Jobs is the number of jobs, run one after the other. Zero means 1.
	Jobs int
	// JobSize is each job's size in calculations. Zero means 5,000,000
	// (calcappclient's default: 5 s on a default PE).
	JobSize uint64
	// KeepAliveInterval is the idle time after which the pool user checks
	// its worker with a KeepAlive; KeepAliveTimeout how long it waits for
	// the answer (and for an Accept) before it fails over. Zero means 5 s
	// each (calcappclient's defaults).
	KeepAliveInterval, KeepAliveTimeout time.Duration
	// Out receives one line per event; nil discards them.
	Out io.Writer
}

// JobResult is what happened to one job.
type JobResult struct {
	JobID     uint32
	PE        uint32 // the worker that completed it
	Failovers int
	Restarts  int // failovers without a cookie: the job started again
	Duration  time.Duration
}

// Run is the pool user side of CalcApp: for each job it opens a session
// with dial (one session per job, as calcappclient does), requests the
// job and waits for Complete. A worker that stops answering keep-alives is
// reported unreachable and the session fails over; with a cookie the next
// worker takes the job over (its Cookie Echo carries the progress), without
// one the job is requested again. It returns the results of the completed
// jobs.
func Run(ctx context.Context, dial func(context.Context) (*session.Session, error), cfg ClientConfig) ([]JobResult, error) {
	if cfg.Jobs <= 0 {
		cfg.Jobs = 1
	}
	if cfg.JobSize == 0 {
		cfg.JobSize = 5_000_000
	}
	if cfg.KeepAliveInterval <= 0 {
		cfg.KeepAliveInterval = 5 * time.Second
	}
	if cfg.KeepAliveTimeout <= 0 {
		cfg.KeepAliveTimeout = 5 * time.Second
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	var results []JobResult
	for id := uint32(1); int(id) <= cfg.Jobs; id++ {
		s, err := dial(ctx)
		if err != nil {
			return results, err
		}
		r, err := runJob(ctx, s, id, cfg)
		s.Close()
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	return results, nil
}

// never is a deadline that does not come.
var never = time.Now().Add(100 * 365 * 24 * time.Hour)

// runJob drives one job through its session.
func runJob(ctx context.Context, s *session.Session, id uint32, cfg ClientConfig) (JobResult, error) {
	out := cfg.Out
	r := JobResult{JobID: id}
	start := time.Now()
	timeout, nextKA := never, never // waiting for an answer / time for a KeepAlive
	request := Message{Type: TypeRequest, JobID: id, JobSize: cfg.JobSize}
	pending := &request // a message still to send (the Request, again after a failover without cookie)

	failedOver := func(fo *session.FailoverError) {
		r.Failovers++
		fmt.Fprintf(out, "%s job #%d: failover from PE $%08x to PE $%08x (cookie echoed: %v)\n",
			stamp(), id, fo.From.ID, fo.To.ID, fo.CookieEchoed)
		if fo.CookieEchoed {
			// The new worker answers the Cookie Echo with Accept. Send a
			// KeepAlive behind it all the same: an RSPLIB worker hands the
			// Cookie Echo to its application only with the next message
			// that arrives, and would otherwise never answer.
			pending = &Message{Type: TypeKeepAlive, JobID: id}
		} else {
			r.Restarts++
			pending = &request
		}
		timeout, nextKA = time.Now().Add(cfg.KeepAliveTimeout), never
	}
	failover := func(flags session.FailoverFlags) error {
		from := s.PE()
		if err := s.Failover(ctx, flags); err != nil {
			return err
		}
		failedOver(&session.FailoverError{From: from, To: s.PE(), Cause: session.ErrRequested, CookieEchoed: s.Cookie() != nil})
		return nil
	}
	for {
		if pending != nil {
			err := s.SendMessage(ctx, session.Message{PPID: PPID, Data: AppendMessage(nil, *pending)})
			var fo *session.FailoverError
			switch {
			case errors.As(err, &fo):
				failedOver(fo)
				continue
			case err != nil:
				return r, err
			}
			if pending.Type == TypeRequest {
				fmt.Fprintf(out, "%s job #%d (size %d) requested from PE $%08x\n", stamp(), id, cfg.JobSize, s.PE().ID)
				timeout = time.Now().Add(cfg.KeepAliveTimeout)
			}
			pending = nil
		}
		wake := timeout
		if nextKA.Before(wake) {
			wake = nextKA
		}
		rctx, cancel := context.WithDeadline(ctx, wake)
		m, err := s.Recv(rctx)
		cancel()
		var fo *session.FailoverError
		switch {
		case errors.As(err, &fo):
			failedOver(fo)
			continue
		case err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			if now := time.Now(); !now.Before(timeout) {
				fmt.Fprintf(out, "%s job #%d: PE $%08x does not answer: failover\n", stamp(), id, s.PE().ID)
				if err := failover(session.ReportUnreachable); err != nil {
					return r, err
				}
			} else if !now.Before(nextKA) {
				pending = &Message{Type: TypeKeepAlive, JobID: id}
				timeout, nextKA = now.Add(cfg.KeepAliveTimeout), never
			}
			continue
		case err != nil:
			return r, err
		}
		msg, err := ParseMessage(m.Data)
		if err != nil || msg.JobID != id {
			fmt.Fprintf(out, "%s job #%d: ignoring a message from PE $%08x (%v, job %d)\n", stamp(), id, s.PE().ID, err, msg.JobID)
			continue
		}
		switch msg.Type {
		case TypeAccept:
			fmt.Fprintf(out, "%s job #%d accepted by PE $%08x\n", stamp(), id, s.PE().ID)
			timeout, nextKA = never, time.Now().Add(cfg.KeepAliveInterval)
		case TypeKeepAliveAck:
			timeout, nextKA = never, time.Now().Add(cfg.KeepAliveInterval)
		case TypeKeepAlive:
			pending = &Message{Type: TypeKeepAliveAck, JobID: id}
		case TypeReject:
			fmt.Fprintf(out, "%s job #%d rejected by PE $%08x: failover\n", stamp(), id, s.PE().ID)
			if err := failover(0); err != nil {
				return r, err
			}
		case TypeComplete:
			r.PE, r.Duration = s.PE().ID, time.Since(start)
			fmt.Fprintf(out, "%s job #%d completed by PE $%08x: %d calculations in %.2f s, %d failover(s), %d restart(s)\n",
				stamp(), id, r.PE, msg.Completed, r.Duration.Seconds(), r.Failovers, r.Restarts)
			return r, nil
		}
	}
}

func stamp() string { return time.Now().Format("15:04:05.000") }
