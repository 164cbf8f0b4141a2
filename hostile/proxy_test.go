package hostile

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestProxyListener attacks the proxy's client listener.
func TestProxyListener(t *testing.T) {
	sc := currentScale()
	w := newWorld(t, registrarTOML(20000, ""))
	w.proxy = startProxy(t, w.asap, string(w.pool), sc.MaxConns, "")
	eventually(t, 10*time.Second, w.proxyProbe)
	addr := w.proxy.listen
	vs := loadVectors(t)

	w.runAttack(t, attack{name: "listener: silent clients just below max_connections", unit: "connections", target: w.proxy.daemon, probe: w.proxyProbe,
		run: func(t *testing.T) (int64, string) {
			return slowloris(t, addr, sc.MaxConns-20, sc.Hold, nil)
		}})
	w.runAttack(t, attack{name: "listener: connection flood past max_connections", unit: "connections", target: w.proxy.daemon,
		run: func(t *testing.T) (int64, string) {
			line := []byte(strings.Repeat("x", 63) + "\n")
			sent, out := connFlood(t, addr, sc.ConnFlood, sc.Hold, line, sc.MaxConns, w.proxyProbe)
			return sent, out + " (a client past the limit is refused: the limit is per listener, not per source)"
		}})
	w.runAttack(t, attack{name: "listener: ASAP, ENRP and garbage bytes relayed", unit: "messages", target: w.proxy.daemon, probe: w.proxyProbe,
		run: func(t *testing.T) (int64, string) {
			sent, err := sprayer{addr: addr, workers: 8, batch: 16}.spray(mutatedFrames(vs, 4, 6, 0))
			return sent, outcome(err, "relayed to the PE like any bytes")
		}})
	w.runAttack(t, attack{name: "listener: connect-and-reset storm", unit: "connections", target: w.proxy.daemon, probe: w.proxyProbe,
		run: func(t *testing.T) (int64, string) {
			n := sc.ConnFlood * 2
			conns := dialMany(t, addr, n, func(c net.Conn) {
				c.(*net.TCPConn).SetLinger(0)
				c.Close() // a reset as soon as the connection is up
			})
			return int64(len(conns)), fmt.Sprintf("%d connections reset right after the handshake", len(conns))
		}})
}
