//go:build !linux

package failover

import (
	"context"
	"errors"
	"net"
	"time"
)

// dialSCTP is only implemented on Linux (kernel SCTP).
func dialSCTP(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	return nil, errors.New("sctp dial " + addr + ": SCTP user transports are supported on Linux only")
}
