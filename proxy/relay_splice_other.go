//go:build !linux

package proxy

import "net"

// spliceBulk: no pipe splice here (ok false); copyBulk uses io.Copy.
func (r *relay) spliceBulk(dst, src net.Conn) (n int64, ok bool, err error) {
	return 0, false, nil
}
