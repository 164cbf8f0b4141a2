// Package ratelog bounds what a flood can write to a log: a slog.Handler
// that passes at most one record per message text and interval at or above
// a level, and tells on the next line it passes how many it held back.
//
// # Usage
//
//	log := slog.New(ratelog.New(slog.NewTextHandler(os.Stderr, nil), ratelog.Options{}))
//	log.Warn("registration rejected", "source", src) // a thousand of these a second log once a second
//
// A line that passes after others were held back carries the attribute
// suppressed=N. Records are keyed by level and message text, not by their
// attributes, so a line such as "registration rejected" stands for every
// source and pool; keep variable data out of message texts (log/slog's own
// advice) so that keys stay few.
//
// # Concurrency
//
// A Handler and the handlers derived from it by WithAttrs and WithGroup
// share one table and are safe for concurrent use.
//
// # Limitations
//
// A count of held-back records is only written with the next record of the
// same key; when a flood ends it is not flushed, and it is lost when the
// key leaves the table. The table holds at most Options.MaxKeys keys;
// records of further keys are dropped while it is full of keys heard within
// the interval, and their number goes with the next record that passes as
// suppressed_other=N.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Options configures a Handler. The zero value is usable.
type Options struct {
	// Interval is the least time between two records with the same key.
	// Zero means 1 s.
	Interval time.Duration
	// Level is the lowest level that is limited; records below it pass
	// unchanged. Zero means slog.LevelInfo; set slog.LevelDebug to limit
	// everything.
	Level slog.Leveler
	// MaxKeys bounds the table of keys. Zero means 1024.
	MaxKeys int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Handler limits the records it passes to the next handler.
type Handler struct {
	next slog.Handler
	t    *table
}

type key struct {
	level slog.Level
	msg   string
}

type entry struct {
	last       time.Time
	suppressed int
}

// table is shared by a Handler and its derivatives.
type table struct {
	interval time.Duration
	level    slog.Leveler
	max      int
	now      func() time.Time

	mu       sync.Mutex // guards entries and overflow
	entries  map[key]*entry
	overflow int // records dropped because the table was full
}

// New returns a Handler in front of next.
func New(next slog.Handler, opts Options) *Handler {
	t := &table{interval: opts.Interval, level: opts.Level, max: opts.MaxKeys, now: opts.Now,
		entries: map[key]*entry{}}
	if t.interval <= 0 {
		t.interval = time.Second
	}
	if t.level == nil {
		t.level = slog.LevelInfo
	}
	if t.max <= 0 {
		t.max = 1024
	}
	if t.now == nil {
		t.now = time.Now
	}
	return &Handler{next: next, t: t}
}

// Enabled reports whether the next handler takes records at level l.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle passes r on unless a record with its level and message passed
// less than Interval ago.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < h.t.level.Level() {
		return h.next.Handle(ctx, r)
	}
	n, other, pass := h.t.admit(key{r.Level, r.Message})
	if !pass {
		return nil
	}
	if n > 0 || other > 0 {
		r = r.Clone()
		if n > 0 {
			r.AddAttrs(slog.Int("suppressed", n))
		}
		if other > 0 {
			r.AddAttrs(slog.Int("suppressed_other", other))
		}
	}
	return h.next.Handle(ctx, r)
}

// admit decides for one record of key k. When it passes, it returns how
// many records of k were held back since the last one that passed, and how
// many of keys that found the table full.
func (t *table) admit(k key) (n, other int, pass bool) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[k]
	if e == nil {
		if len(t.entries) >= t.max {
			t.evict(now)
		}
		if len(t.entries) >= t.max {
			t.overflow++
			return 0, 0, false
		}
		e = &entry{last: now}
		t.entries[k] = e
	} else if now.Sub(e.last) < t.interval {
		e.suppressed++
		return 0, 0, false
	}
	n, other = e.suppressed, t.overflow
	e.last, e.suppressed, t.overflow = now, 0, 0
	return n, other, true
}

// evict drops the keys that have been quiet for an interval; a count they
// still hold is lost.
func (t *table) evict(now time.Time) {
	for k, e := range t.entries {
		if now.Sub(e.last) >= t.interval {
			delete(t.entries, k)
		}
	}
}

// WithAttrs returns a Handler with attrs that shares h's table.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(attrs), t: h.t}
}

// WithGroup returns a Handler with a group that shares h's table.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), t: h.t}
}
