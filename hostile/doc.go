// Package hostile is the black-box hostile-network suite: its tests start
// the real rserpool binary (registrar, pe-agent, proxy) with real
// configuration files and attack every port the daemons listen on with
// out-of-order and misdirected messages, mutated RSPLIB vectors, bad
// TCP-mapping framing, slowloris and connection floods, registration and
// announce floods and unauthenticated ENRP. After each attack a test asserts
// that the daemon is alive, that a pool element registered before the
// attack is still registered and resolvable, that legitimate requests still
// answer (their p99 during the attack is recorded), that the daemon's RSS
// stays bounded and that its log stays rate-limited.
//
// # Usage
//
//	go test ./hostile/                                       # short mode (CI), under 3 minutes
//	RSERPOOL_HOSTILE=long go test -timeout 80m ./hostile/    # long mode, about 11 minutes
//	go test ./hostile/ -args -hostile.report=/tmp/hostile.md # figures as markdown (else JSON)
//
// docs/security.md holds the threat model and the figures of a run.
//
// # Concurrency
//
// The package has no non-test code; each test owns the processes and
// goroutines it starts and waits for them.
//
// # Limitations
//
// Multicast announce floods run in a network namespace that the test
// creates, so they need root and the ip command; elsewhere they skip.
// Kernel SCTP ports are not attacked (this machine has no SCTP; the SCTP
// path shares the message handling tested here).
package hostile
