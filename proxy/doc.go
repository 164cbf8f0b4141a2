// Package proxy is the transparent failover gateway for legacy TCP
// clients: each [[listener]] accepts connections and relays each one to a
// live pool element of its pool, chosen by the pool's policy (package
// pucache), with connect-time failover and an optional replay buffer
// (package failover).
//
// # Usage
//
//	cfg, err := proxy.LoadConfig("proxy.toml") // strict TOML; or ParseConfig([]byte)
//	p, err := proxy.New(cfg, proxy.Options{Logger: log, Registerer: reg}) // validates; starts nothing
//	err = p.Start()             // cache, warm-up, listeners, admin: ready when it returns
//	bound := p.Bound()          // "127.0.0.1:0" → "127.0.0.1:40123"
//	err = p.Reload(newCfg)      // SIGHUP: listeners and registrars
//	err = p.Shutdown(ctx)       // SIGTERM: stop accepting, drain (drain_timeout), close
//
// The proxy builds and owns its pool-user cache (registrars, announce
// group, [cache]) unless Options.Cache gives one, which it uses as it is.
// With admin set it serves the status page (/), /metrics, /healthz (503
// while draining) and /debug/pprof/ on the shared admin server
// (internal/admin). LoadConfig reads a file or a directory whose *.toml
// files are merged (one [[listener]] per file).
//
// # Relay engines
//
// Two engines relay bytes, behind the same listener, metrics, drain and
// reload code:
//
//   - the event loops (engine = "loop", the default for TCP listeners on
//     Linux; loop_linux.go): HAProxy's model. One loop per P the process
//     was given (GOMAXPROCS, one per core by default), each an epoll set
//     over non-blocking sockets; its system calls on those sockets are raw,
//     and a loop with no event ready parks in Go's netpoller on its epoll
//     descriptor (holding no thread and no P). Every loop accepts from the shared listening socket
//     (EPOLLEXCLUSIVE, one accept per readiness), connects to the PE
//     without blocking (connect-time failover, hedging and the failover
//     budget run in the loop, on the loop's timer heap), and relays: one
//     read per readiness (a short read means the socket is drained), the
//     bytes written at once and kept in a buffer only while the
//     destination cannot take them; a read that fills the 16 KiB buffer
//     switches that direction to splice(2) through a pipe of the loop,
//     held only while bytes move (an idle connection holds no buffer and
//     no pipe: about 1.3 KiB of memory, bench/proxybench -mode idle).
//     Half-close is passed on with shutdown(2); idle_timeout is exact. No
//     goroutine runs per connection: a helper goroutine only waits when
//     the pool must be resolved first (or again, after every PE failed).
//     Connections of listeners with the replay buffer, and connections
//     whose PE has an SCTP user transport, are handed to the goroutine
//     relay.
//   - the goroutine relay (engine = "goroutine", SCTP listeners, other
//     systems; relay.go): inetaf/tcpproxy's model, a copy per direction that
//     the kernel splices after a read fills the buffer (on Linux through a
//     pooled pipe held only while bytes move; elsewhere io.Copy between
//     *net.TCPConn); an EOF is passed on with CloseWrite and an error ends
//     both directions. A connection costs two goroutines, each started once
//     the PE is connected (so on a fresh, small stack) and each waiting for
//     readability in Go's netpoller without a buffer: a 4 KiB buffer is
//     taken from a pool for the read that finds bytes and given back once
//     they are written. With idle_timeout, a timer per connection looks
//     every idle_timeout whether a byte moved in either direction since
//     its last look and closes the connection if none did (so it fires
//     between 1× and 2× the value); no read deadline is moved per read.
//
// # Failover
//
// Both engines use the listener's failover.Dialer: PEs in policy order,
// each failed PE reported unreachable, hedged connects (a PE that has not
// connected within the hedge delay gets the next PE tried alongside it;
// the overtaken one becomes a suspect and is reported only if its own
// attempt fails), and the replay buffer with first_byte_timeout.
//
// # Interception
//
// intercept / intercept_pools pick the pool by the address a client
// connected to before an nftables REDIRECT (SO_ORIGINAL_DST) or TPROXY
// rule (tproxy = true: IP_TRANSPARENT on the listener) sent it to the
// proxy; transparent_source connects to the PE from the client's address.
// docs/proxy.md has the nftables and ip-rule recipes.
//
// max_connections bounds open connections per listener: excess connections
// are reset at once, counted as result="refused" and logged at most once a
// second. PROXY protocol v1/v2 headers carry the client's address to the PE.
//
// Metrics (DESIGN.md): rserpool_proxy_connections_total{listener,result},
// rserpool_proxy_active_connections{listener},
// rserpool_proxy_failovers_total{listener} (one per failed PE) and
// rserpool_proxy_bytes_total{listener,direction} (added when a connection
// ends).
//
// # Concurrency
//
// All methods are safe for concurrent use. New starts nothing; Shutdown and
// Close wait for every goroutine of the proxy (and of a cache it owns).
//
// # Limitations
//
// SCTP listeners (sctp://) relay by plain copies (no splice) and close both
// directions at the first EOF (no half-close). transparent_source needs
// the loop engine (and so no replay buffer) and PEs of the client's
// address family. PEs are reached over TCP, or
// over kernel SCTP (PPID 0, one message per write) when they register an
// SCTP user transport, as RSPLIB PEs do.
// Reload keeps the listen address as a listener's identity: changing it
// means a new listener.
package proxy
