//go:build !linux

package proxy

import "net"

// listenConfig keeps Go's per-connection keep-alive defaults.
var listenConfig = net.ListenConfig{}

// listenConfigFor returns the listen configuration of a goroutine-relay
// listener (TPROXY needs Linux).
func listenConfigFor(ListenerConfig) net.ListenConfig { return listenConfig }
