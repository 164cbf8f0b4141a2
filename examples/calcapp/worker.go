package calcapp

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/rserpool/rserpool/session"
)

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// Capacity is the PE's speed in calculations per second, shared
	// equally by its running jobs. Zero means 1,000,000 (RSPLIB's default).
	Capacity float64
	// MaxJobs bounds the jobs a PE runs at once; a Request or Cookie Echo
	// beyond it is answered with Reject. Zero means 8.
	MaxJobs int
	// CookieInterval is how often a running job's progress is sent as a
	// cookie. Zero means 1 s.
	CookieInterval time.Duration
	// Log gets one line per job event; nil discards them.
	Log *slog.Logger
	// OnEvent, if set, hears of every job event (from the sessions'
	// goroutines; it must not block).
	OnEvent func(Event)
}

// Event is a job event of a worker.
type Event struct {
	Kind      EventKind
	JobID     uint32
	JobSize   uint64
	Completed uint64
}

// EventKind names a job event.
type EventKind string

// Job events.
const (
	EventAccepted  EventKind = "accepted"
	EventRestored  EventKind = "restored from a cookie echo"
	EventRejected  EventKind = "rejected"
	EventCookie    EventKind = "cookie sent"
	EventCompleted EventKind = "completed"
)

// Worker is the PE side of CalcApp: one job per session, the PE's
// capacity shared by all running jobs. Safe for concurrent use.
type Worker struct {
	cfg WorkerConfig

	mu   sync.Mutex // guards jobs
	jobs int
}

// NewWorker returns a worker; its Handler serves sessions.
func NewWorker(cfg WorkerConfig) *Worker {
	if cfg.Capacity <= 0 {
		cfg.Capacity = 1e6
	}
	if cfg.MaxJobs <= 0 {
		cfg.MaxJobs = 8
	}
	if cfg.CookieInterval <= 0 {
		cfg.CookieInterval = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.OnEvent == nil {
		cfg.OnEvent = func(Event) {}
	}
	return &Worker{cfg: cfg}
}

// take reserves a job slot; false when MaxJobs run already.
func (w *Worker) take() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.jobs >= w.cfg.MaxJobs {
		return false
	}
	w.jobs++
	return true
}

func (w *Worker) release() {
	w.mu.Lock()
	w.jobs--
	w.mu.Unlock()
}

// rate is each job's share of the capacity, in calculations per second.
func (w *Worker) rate() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg.Capacity / float64(max(w.jobs, 1))
}

// job is a session's running job.
type job struct {
	Cookie               // ID, size and the calculations done when last updated
	done       float64   // calculations done, exactly
	updated    time.Time // when done was last advanced
	nextCookie time.Time
}

// Handler serves one session: it takes a job (from a Request, or from the
// Cookie Echo that opens the session after a failover), works on it,
// answers keep-alives, sends a cookie every CookieInterval and Complete at
// the end.
func (w *Worker) Handler(ctx context.Context, p *session.Peer) {
	log := w.cfg.Log.With("pu", p.RemoteAddr().String())
	var j *job
	defer func() {
		if j != nil {
			w.release()
		}
	}()
	send := func(m Message) error {
		return p.SendMessage(session.Message{PPID: PPID, Data: AppendMessage(nil, m)})
	}
	start := func(c Cookie, kind EventKind) error {
		if j != nil || !w.take() {
			w.cfg.OnEvent(Event{Kind: EventRejected, JobID: c.JobID, JobSize: c.JobSize})
			log.Info("job rejected", "job", c.JobID)
			return send(Message{Type: TypeReject, JobID: c.JobID})
		}
		now := time.Now()
		j = &job{Cookie: c, done: float64(c.Completed), updated: now, nextCookie: now.Add(w.cfg.CookieInterval)}
		w.cfg.OnEvent(Event{Kind: kind, JobID: c.JobID, JobSize: c.JobSize, Completed: c.Completed})
		log.Info("job "+string(kind), "job", c.JobID, "size", c.JobSize, "completed", c.Completed)
		return send(Message{Type: TypeAccept, JobID: c.JobID})
	}
	for {
		wait := 100 * time.Millisecond
		if j != nil {
			rate := w.rate()
			wait = min(wait, time.Until(j.nextCookie),
				time.Duration((float64(j.JobSize)-j.done)/rate*float64(time.Second))+time.Millisecond)
		}
		rctx, cancel := context.WithTimeout(ctx, max(wait, time.Millisecond))
		m, err := p.Recv(rctx)
		cancel()
		if j != nil {
			if done, err := w.advance(j, p, send); err != nil {
				return
			} else if done {
				w.release()
				j = nil
			}
		}
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			return
		}
		if m.CookieEcho {
			c, err := ParseCookie(m.Data)
			if err != nil {
				log.Warn("bad cookie echo, ending the session", "err", err)
				return
			}
			if start(c, EventRestored) != nil {
				return
			}
			continue
		}
		msg, err := ParseMessage(m.Data)
		if err != nil {
			log.Info("ignoring a message", "err", err)
			continue
		}
		switch msg.Type {
		case TypeRequest:
			err = start(Cookie{JobID: msg.JobID, JobSize: msg.JobSize}, EventAccepted)
		case TypeKeepAlive:
			if j != nil && j.JobID == msg.JobID {
				err = send(Message{Type: TypeKeepAliveAck, JobID: msg.JobID})
			}
		}
		if err != nil {
			return
		}
	}
}

// advance brings j's progress up to now, sends a cookie when one is due and
// Complete when the job is done (then done is true).
func (w *Worker) advance(j *job, p *session.Peer, send func(Message) error) (done bool, err error) {
	now := time.Now()
	j.done = min(float64(j.JobSize), j.done+w.rate()*now.Sub(j.updated).Seconds())
	j.updated = now
	j.Completed = uint64(j.done)
	if j.Completed >= j.JobSize {
		w.cfg.OnEvent(Event{Kind: EventCompleted, JobID: j.JobID, JobSize: j.JobSize, Completed: j.JobSize})
		w.cfg.Log.Info("job completed", "job", j.JobID)
		return true, send(Message{Type: TypeComplete, JobID: j.JobID, JobSize: j.JobSize, Completed: j.JobSize})
	}
	if !now.Before(j.nextCookie) {
		j.nextCookie = now.Add(w.cfg.CookieInterval)
		if err := p.SendCookie(AppendCookie(nil, j.Cookie)); err != nil {
			return false, err
		}
		w.cfg.OnEvent(Event{Kind: EventCookie, JobID: j.JobID, JobSize: j.JobSize, Completed: j.Completed})
	}
	return false, nil
}
