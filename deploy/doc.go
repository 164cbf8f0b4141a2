// Package deploy holds what operators install beside the rserpool binary,
// and the tests that check it against the real daemons and tools:
//
//	systemd/     units of the three daemons (Type=notify, reload by SIGHUP, hardened)
//	prometheus/  scrape configuration and alert rules with their promtool unit tests
//	grafana/     a dashboard whose every query names a metric the daemons export
//	debian/      the Debian package (nfpm.yaml, maintainer scripts, default configuration)
//	vm/          the package-install check in ../shared/sctp-vm (deploy/vm/run)
//	tools.mod    the nfpm tool (go tool -modfile=deploy/tools.mod nfpm)
//
// # Tests
//
// go test ./deploy starts registrars, a pe-agent and a proxy (the real
// binary, on 127.0.0.1), a real Prometheus server that scrapes them and
// evaluates the alert rules, and headless Chromium that opens the status
// pages and saves screenshots (docs/status-page.md shows them; rewrite
// them with go test ./deploy -run TestE2EOperatorView -args
// -screenshots=../docs/status-page). promtool, systemd-analyze, chromium
// and prometheus come from Debian packages (.ci/run installs them); a test
// whose tool is missing is skipped, and fails instead under CI (CI set).
//
// # Limitations
//
// Units are checked with systemd-analyze verify and security, not run: the
// build machines and the VM have no systemd as PID 1. The package-install
// check (deploy/vm/run) starts the daemons as the units would.
package deploy
