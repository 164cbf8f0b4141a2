package session

import "context"

// queue carries received messages (and, on the pool user side, failover
// notices) from a session's reader to Recv. It is bounded: push waits while
// it is full, so a reader that cannot push stops reading and the
// transport's flow control stops the peer.
type queue struct {
	ch   chan item
	dead chan struct{}   // closed by the reader after its last push
	stop <-chan struct{} // closed when the owner is closed
}

func newQueue(n int, stop <-chan struct{}) queue {
	return queue{ch: make(chan item, n), dead: make(chan struct{}), stop: stop}
}

// push queues it, waiting while the queue is full; false if the owner was
// closed first.
func (q *queue) push(it item) bool {
	select {
	case q.ch <- it:
		return true
	case <-q.stop:
		return false
	}
}

// pop returns the next item. Once the reader is done and the queue is
// empty it returns final(); when the owner is closed, ErrClosed.
func (q *queue) pop(ctx context.Context, final func() error) (Message, error) {
	select {
	case it := <-q.ch:
		return it.m, it.err
	default:
	}
	select {
	case it := <-q.ch:
		return it.m, it.err
	case <-q.dead:
		select { // nothing is pushed after dead: drain what is left
		case it := <-q.ch:
			return it.m, it.err
		default:
			return Message{}, final()
		}
	case <-ctx.Done():
		return Message{}, ctx.Err()
	case <-q.stop:
		return Message{}, ErrClosed
	}
}
