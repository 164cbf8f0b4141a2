package proxy

import (
	"net"
	"syscall"
)

// listenConfig sets TCP keep-alive once on the listening socket, where
// Linux copies it to every accepted connection, instead of four system
// calls per accepted connection. The probes match Go's defaults (15 s idle,
// 15 s interval, 9 probes).
var listenConfig = net.ListenConfig{
	KeepAlive: -1,
	Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range [...]struct{ level, opt, v int }{
				{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
			} {
				if serr = syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v); serr != nil {
					return
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	},
}

// listenConfigFor returns the listen configuration of a goroutine-relay
// listener: listenConfig, plus IP_TRANSPARENT for TPROXY.
func listenConfigFor(lc ListenerConfig) net.ListenConfig {
	if !lc.TProxy {
		return listenConfig
	}
	cfg := listenConfig
	cfg.Control = func(network, address string, c syscall.RawConn) error {
		if err := listenConfig.Control(network, address, c); err != nil {
			return err
		}
		family := syscall.AF_INET
		if network == "tcp6" {
			family = syscall.AF_INET6
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range interceptOpts(lc, family) {
				if serr = syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v); serr != nil {
					return
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
	return cfg
}
