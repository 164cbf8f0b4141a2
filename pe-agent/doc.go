// Package peagent makes servers pool elements (RFC 5352 ASAP, PE side).
//
// It holds two layers:
//
//   - The PE library: an Element registers one pool element (pool handle,
//     user transport, policy values, PE identifier) at a home registrar,
//     re-registers every ReregistrationInterval (Registration Life = 3 × that
//     interval, in milliseconds, the RSPLIB convention) and whenever its policy
//     values change, answers ASAP Endpoint Keep-Alives with Keep-Alive Acks,
//     adopts a new home registrar on a Keep-Alive with the H bit, and
//     deregisters on Close. An element that gets no keep-alive from its
//     home for two of its keep-alive periods and a second (a host that
//     drops every packet sends no reset) re-registers at once, so a silent
//     home costs T2 more, not a re-registration interval. The registrar
//     side is a regclient.Client: when
//     the home registrar stops answering (T2/T3 are the client's T1) or its
//     connection dies, the client hunts for another registrar (up to three
//     at once; the static list first, then announced ones; the failed one
//     last) and the element registers there. Once the first registrar of
//     the list has answered the client's checks for RebalanceAfter (30 s,
//     plus up to half of it at random), the elements move back to it:
//     they register there first, then the old connection closes, so
//     they stay registered throughout (regclient.Config.Rebalance).
//   - The agent: an Agent runs many elements for legacy servers ("backends")
//     that do not speak ASAP. All its elements share one registrar
//     connection. Per backend it runs a health check (TCP connect, optional
//     send/expect, or a command; every second by default) with rise/fall
//     counts — an unhealthy backend is deregistered, a healthy one
//     registered again; a refused connect (nothing listens: the backend
//     died) is down at once, without the fall count — and load reporting
//     for the Least-Used policies (established connections from
//     /proc/net/tcp{,6}, a command, or a fixed value), re-registering when the
//     load moves by more than a step, at most once per min_interval.
//
// # Usage
//
//	cfg, err := peagent.LoadConfig("pe-agent.toml") // or ParseConfig([]byte), or fill AgentConfig in Go
//	cfg.Elements = append(cfg.Elements, peagent.ElementConfig{Pool: "EchoPool", Backend: "127.0.0.1:7001",
//		Policy: "least-used", Load: peagent.LoadReporting{Source: peagent.LoadConnections}})
//	a, err := peagent.New(cfg, peagent.Options{Logger: log, Registerer: reg}) // validates; starts nothing
//	err = a.Start()        // admin server, registrar client, health checks; returns at once
//	err = a.Reload(newCfg) // SIGHUP
//	err = a.Shutdown(ctx)  // deregisters everything, waits Drain, closes the admin server
//
// With Admin set the agent serves the status page (/), /metrics, /healthz
// (200 when every healthy backend is registered) and /status (JSON) on the
// shared admin server (internal/admin). LoadConfig reads a file or a
// directory whose *.toml files are merged (one [[element]] per file).
//
// A native PE uses NewElement, Start, SetPolicy, State/Changes and Close.
//
// # Concurrency
//
// Element and Agent methods are safe for concurrent use. The protocol state
// of the elements belongs to the goroutine of their registrar client (the
// session is its Handler); API calls run operations there (Client.Do).
// The client owns its connection, reader, writer and dial goroutines.
// Each agent element has one goroutine for its health checks and load
// samples, awaited when the element is removed.
//
// # Limitations
//
//   - Over the TCP mapping a new registrar cannot reach a PE: a Keep-Alive
//     with H=1 is honoured only when it arrives on the current connection.
//     After a takeover, the PE moves when its connection to the dead
//     registrar fails (transport heartbeats) and re-registers at the next
//     registrar, which then owns it.
//   - Listening for ASAP Server Announces is off unless a group is
//     configured; announced addresses only extend the hunt list (after the
//     static registrars) and expire after T7.
//   - Registration Life is in milliseconds, as in RSPLIB; an RFC-strict
//     registrar reading seconds would keep entries 1000 × longer.
package peagent
