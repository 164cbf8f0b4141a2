package session

// Internals the external tests check.

// ErrNoControl is errNoControl.
var ErrNoControl = errNoControl

// QueueCap returns the capacity of s's receive queue.
func QueueCap(s *Session) int { return cap(s.inbox.ch) }
