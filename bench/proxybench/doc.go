// Command proxybench measures the rserpool proxy side by side with a direct
// connection to the same backend and with HAProxy in TCP mode, on loopback.
//
// # Usage
//
// From the repository root:
//
//	go run ./bench/proxybench -write BENCHMARKS.md        # full run: 5 runs × 5 s per measurement
//	go run ./bench/proxybench -runs 1 -duration 2s         # quick look, prints the table only
//	go run ./bench/proxybench -only direct,haproxy         # leave a path out
//	go run ./bench/proxybench -only direct,proxy,relay -meas rr,crr -runs 3   # while tuning
//
// The harness builds ./cmd/rserpool, starts a backend process, HAProxy
// (installed with apt-get when missing and running as root) and, for the proxy
// path, a registrar, a pe-agent and the proxy. For every run it starts one
// load-generator process per measurement and path:
//
//   - bulk: one stream written as fast as possible (Gbit/s, counted by the backend)
//   - rr:   request/response on 16 persistent connections, 64-byte messages (req/s)
//   - crr:  connect, request, response, close with 16 concurrent clients (conn/s)
//   - lat:  a fixed request rate (default 5,000 req/s over 16 connections) and the
//     p50/p99/p99.9 of the response time, measured from the scheduled send time
//
// It prints the medians over the runs and, with -write, regenerates the section
// between the proxybench markers in the given markdown file.
//
// # Idle mode
//
//	go run ./bench/proxybench -mode idle -write BENCHMARKS.md   # ≈ 2 min
//	go run ./bench/proxybench -mode idle -only proxy,relay -steps 500,2000
//
// "-mode idle" measures what a relayed connection costs in resident memory
// (paths proxy, goroutine and haproxy by default; relay with -only). For
// every path and run it starts a fresh process, reads its VmRSS
// (/proc/PID/status) once the listener answers an echo, opens echo
// connections through it up to each of -steps (each sends one byte and
// reads it back, then stays open), and reads VmRSS once it settles. The
// active sequence does the same in another fresh process with -active of
// the connections sending -size-byte requests at -active-rate req/s each
// for -active-for per step (the peak VmRSS while they run). For the rserpool
// proxy it also reads heap, stacks and goroutines from its /metrics and
// keeps its heap and goroutine profiles at the last step in the work
// directory (for go tool pprof). The proxy's max_connections and HAProxy's
// maxconn and timeouts are raised in their benchmark configuration only.
// -write regenerates the section between the proxybench-idle markers.
//
// The connections are opened by the harness process itself; a relayed
// connection takes two descriptors in the path's process and one in the
// backend, so the last step must stay below half the per-process
// descriptor limit (9,000 under ulimit -n 20000).
//
// The optional path "relay" is a plain Go relay (two io.Copy calls with
// half-close), the baseline any Go proxy should beat.
//
// The backend, the relay and the load generator are subcommands of the same
// binary ("proxybench backend", "proxybench relay", "proxybench load") so
// that each is its own process.
//
// # Concurrency
//
// The orchestrator owns every child process: each is started with a parent
// death signal, stopped with SIGTERM (then SIGKILL) and waited for. Inside the
// load generator and backend, every goroutine is waited for before exit.
//
// # Limitations
//
// Linux only (loopback, /proc/cpuinfo, parent death signal). All processes
// share the machine's cores; no CPU pinning. The proxy path needs the
// registrar, pe-agent and proxy subcommands of rserpool.
package main
