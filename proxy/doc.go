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
// The relay follows inetaf/tcpproxy: io.Copy between *net.TCPConn in each
// direction, so that Linux splices in the kernel; an EOF is passed on with
// CloseWrite (half-close) and an error ends both directions. Without an idle
// timeout and without the replay buffer a connection costs two goroutines
// (the handler and one copy direction) and no extra buffering. With
// idle_timeout, each direction copies in windows bounded by a read deadline;
// the connection closes when both directions had an empty window.
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
// directions at the first EOF (no half-close). PEs are reached over TCP, or
// over kernel SCTP (PPID 0, one message per write) when they register an
// SCTP user transport, as RSPLIB PEs do.
// Reload keeps the listen address as a listener's identity: changing it
// means a new listener.
package proxy
