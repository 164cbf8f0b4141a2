//go:build !linux

package proxy

import "net"

// listenConfig keeps Go's per-connection keep-alive defaults.
var listenConfig = net.ListenConfig{}
