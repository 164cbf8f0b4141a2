package regclient

import (
	"slices"
	"time"

	"github.com/rserpool/rserpool/transport"
)

// Set is the list of registrars a client may use: the static ones from the
// configuration, in their order, then the ones learned from ASAP Server
// Announces, in the order they were first heard. It is pure data: the
// caller passes the time. A Set is not safe for concurrent use.
//
// Learned registrars are bounded (max): announces are unauthenticated and
// anybody may send them, so a flood of fake registrars must not grow the
// list, and it cannot displace anything: a static registrar is never
// learned or forgotten, and a learned one stays while it keeps being
// announced. When the set is full a new address is refused until an
// entry expires: each learned registrar is forgotten T7 (ttl) after it
// was last announced.
type Set struct {
	static  []transport.Addr
	learned map[transport.Addr]*learned
	seq     uint64 // first-heard order of learned entries
	max     int
	ttl     time.Duration
}

type learned struct {
	expires time.Time
	seq     uint64
}

// NewSet returns a Set with the static registrars (copied), at most max
// learned ones (max < 1 means none are learned), each kept ttl after its
// last announce.
func NewSet(static []transport.Addr, max int, ttl time.Duration) *Set {
	s := &Set{learned: map[transport.Addr]*learned{}, max: max, ttl: ttl}
	s.SetStatic(static)
	return s
}

// SetStatic replaces the static registrars (a configuration reload). Zero
// and repeated addresses are dropped; a learned entry that is now static
// is forgotten as learned.
func (s *Set) SetStatic(list []transport.Addr) {
	s.static = s.static[:0:0]
	for _, a := range list {
		if !a.IsZero() && !slices.Contains(s.static, a) {
			s.static = append(s.static, a)
			delete(s.learned, a)
		}
	}
}

// Static returns the static registrars; the slice is the caller's.
func (s *Set) Static() []transport.Addr { return slices.Clone(s.static) }

// First returns the first static registrar; ok is false when there is none.
func (s *Set) First() (a transport.Addr, ok bool) {
	if len(s.static) == 0 {
		return transport.Addr{}, false
	}
	return s.static[0], true
}

// Learn adds a registrar heard in an announce at now, or restarts its T7
// if it is known. It reports whether the address is new. A static
// address, a zero one, or a new one while the set is full is ignored.
func (s *Set) Learn(now time.Time, a transport.Addr) bool {
	if a.IsZero() || slices.Contains(s.static, a) {
		return false
	}
	if e := s.learned[a]; e != nil {
		e.expires = now.Add(s.ttl)
		return false
	}
	s.Expire(now)
	if len(s.learned) >= s.max {
		return false
	}
	s.seq++
	s.learned[a] = &learned{expires: now.Add(s.ttl), seq: s.seq}
	return true
}

// Expire forgets the learned registrars not announced for T7.
func (s *Set) Expire(now time.Time) {
	for a, e := range s.learned {
		if !now.Before(e.expires) {
			delete(s.learned, a)
		}
	}
}

// NextExpiry returns when the next learned entry expires (zero: none).
func (s *Set) NextExpiry() time.Time {
	var t time.Time
	for _, e := range s.learned {
		if t.IsZero() || e.expires.Before(t) {
			t = e.expires
		}
	}
	return t
}

// Len returns the number of static and learned registrars.
func (s *Set) Len() int { return len(s.static) + len(s.learned) }

// Learned returns how many learned registrars are kept.
func (s *Set) Learned() int { return len(s.learned) }

// Candidates returns every registrar to try, static ones first (in their
// order), then the unexpired learned ones in first-heard order. The slice
// is the caller's.
func (s *Set) Candidates(now time.Time) []transport.Addr {
	out := slices.Clone(s.static)
	type entry struct {
		a   transport.Addr
		seq uint64
	}
	var ls []entry
	for a, e := range s.learned {
		if now.Before(e.expires) {
			ls = append(ls, entry{a, e.seq})
		}
	}
	slices.SortFunc(ls, func(x, y entry) int {
		switch {
		case x.seq < y.seq:
			return -1
		case x.seq > y.seq:
			return 1
		}
		return 0
	})
	for _, e := range ls {
		out = append(out, e.a)
	}
	return out
}
