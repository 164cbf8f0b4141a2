//go:build !linux

package proxy

import (
	"errors"
	"net"
	"net/netip"
)

// loopsAvailable: the event-loop engine needs epoll; elsewhere every
// listener uses the goroutine relay.
const loopsAvailable = false

type loops struct{}

func newLoops(*Proxy) (*loops, error) { return nil, errors.New("no event loops on this system") }
func (*loops) listen(*listener) (acceptor, error) {
	return nil, errors.New("no event loops on this system")
}
func (*loops) closeConns() {}
func (*loops) stop()       {}

type acceptor interface {
	Addr() net.Addr
	Close() error
}

func originalDst(_ int, local netip.AddrPort) netip.AddrPort { return local }
