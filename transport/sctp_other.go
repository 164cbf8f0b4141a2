//go:build !linux || 386

package transport

import (
	"context"
	"fmt"
	"net"
	"runtime"
)

// SCTPAvailable reports whether the running kernel supports SCTP sockets, and
// if not, why. Only linux (not 386) is supported.
func SCTPAvailable() (bool, error) {
	return false, fmt.Errorf("%w: not supported on %s/%s", ErrNoSCTP, runtime.GOOS, runtime.GOARCH)
}

func dialSCTP(_ context.Context, a Addr, _ resolved) (Conn, error) {
	_, err := SCTPAvailable()
	return nil, fmt.Errorf("transport: dial %s: %w", a, err)
}

func dialSCTPStream(_ context.Context, a Addr) (net.Conn, error) {
	_, err := SCTPAvailable()
	return nil, fmt.Errorf("transport: dial %s: %w", a, err)
}

func listenSCTP(hostport string, _ resolved) (Listener, error) {
	_, err := SCTPAvailable()
	return nil, fmt.Errorf("transport: listen sctp://%s: %w", hostport, err)
}

func listenSCTPStream(a Addr) (net.Listener, error) {
	_, err := SCTPAvailable()
	return nil, fmt.Errorf("transport: listen %s: %w", a, err)
}
