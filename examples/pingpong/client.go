package pingpong

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
	// Interval between Pings. Zero means 500 ms (pingpongclient's default).
	Interval time.Duration
	// Count is the number of Pings; zero means until ctx ends.
	Count uint64
	// Out receives one line per event, in pingpongclient's words; nil
	// discards them.
	Out io.Writer
}

// Result counts what Run saw.
type Result struct {
	Pings, Pongs uint64
	Failovers    int
	// Gaps counts Pongs whose reply number does not follow the previous
	// one (pingpongclient's "Detected gap"): a PE that started counting
	// again, or a reply lost or repeated around a failover.
	Gaps      int
	LastReply uint64
}

// Run is the pool user side: it sends a Ping every Interval and prints
// each Pong ("Ack #n from PE $id (reply #r)"), like RSPLIB's
// pingpongclient. After a failover the Ping that could not be sent goes to
// the new PE; Pings lost with the old PE are not sent again (their numbers
// are the pool user's; the reply numbers are the PEs'). It returns when
// Count Pings are sent and answered (or one more Interval has passed), or
// when ctx ends, or on a session error.
func Run(ctx context.Context, s *session.Session, cfg ClientConfig) (Result, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	var r Result
	var buf []byte
	failover := func(err error) bool {
		var fo *session.FailoverError
		if !errors.As(err, &fo) {
			return false
		}
		r.Failovers++
		fmt.Fprintf(out, "%s Failover from PE $%08x to PE $%08x (cookie echoed: %v, from business card: %v)\n",
			stamp(), fo.From.ID, fo.To.ID, fo.CookieEchoed, fo.FromCard)
		return true
	}
	for n := uint64(1); cfg.Count == 0 || n <= cfg.Count; {
		data := fmt.Sprintf("message %d, time %d", n, time.Now().UnixMicro())
		buf, _ = AppendPing(buf[:0], Ping{MessageNo: n, Data: []byte(data)})
		err := s.SendMessage(ctx, session.Message{PPID: PPID, Data: buf})
		switch {
		case failover(err):
			continue // send this Ping to the new PE
		case err != nil:
			return r, quiet(ctx, err)
		}
		fmt.Fprintf(out, "Message #%d sent\n", n)
		r.Pings++
		n++
		deadline := time.Now().Add(cfg.Interval)
		for r.Pongs < r.Pings || cfg.Count == 0 || n <= cfg.Count {
			rctx, cancel := context.WithDeadline(ctx, deadline)
			m, err := s.Recv(rctx)
			cancel()
			if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				break // time for the next Ping
			}
			if failover(err) {
				continue
			}
			if err != nil {
				return r, quiet(ctx, err)
			}
			pong, err := ParsePong(m.Data)
			if err != nil {
				fmt.Fprintf(out, "ignoring a message from PE $%08x: %v\n", s.PE().ID, err)
				continue
			}
			r.Pongs++
			fmt.Fprintf(out, "%s Ack #%d from PE $%08x (reply #%d)\n", stamp(), pong.MessageNo, s.PE().ID, pong.ReplyNo)
			if pong.ReplyNo-r.LastReply != 1 {
				r.Gaps++
				fmt.Fprintf(out, "%s *** Detected gap of %d! ***\n", stamp(), int64(pong.ReplyNo-r.LastReply))
			}
			r.LastReply = pong.ReplyNo
		}
	}
	return r, nil
}

// quiet turns the end of ctx into a nil error: stopping is not a failure.
func quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func stamp() string { return time.Now().Format("15:04:05.000") }
