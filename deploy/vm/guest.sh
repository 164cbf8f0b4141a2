#!/bin/bash
# guest.sh: the Debian package's install check. Runs INSIDE the SCTP VM
# (../shared/sctp-vm; no systemd as PID 1), as root, with cwd = the shared
# work dir holding rserpool_*.deb and vmcheck.py. Started by deploy/vm/run.
# Prints "PASS step: ..." or "FAIL step: ..." per step, exit 1 if any failed.
#
# The daemons are started as their units would start them: ExecStart of
# the installed unit with RSERPOOL_ARGS from /etc/default, as the rserpool
# user without new privileges (setpriv), Type=notify readiness awaited on a
# notify socket, reload by SIGHUP, stop by SIGTERM.
set -u
OUT=$PWD/out
rm -rf "$OUT"; mkdir -p "$OUT"
FAILS=0
pass() { echo "PASS $1: $2"; }
fail() { echo "FAIL $1: $2"; FAILS=$((FAILS + 1)); }
check() { local step=$1 what=$2; shift 2; if "$@" >>"$OUT/$step.log" 2>&1; then pass "$step" "$what"; else fail "$step" "$what (log: out/$step.log)"; fi; }
# waitfor SECONDS CMD...: run CMD every 0.25 s until it succeeds
waitfor() { local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.25; done; }

[ -d /proc/sys/net/sctp ] || fail sctp "no SCTP in the VM kernel"
DEB=$(ls rserpool_*.deb | head -n1)
echo "== $(date +%T) dpkg -i $DEB"
check install "dpkg -i installs the package" dpkg -i "$DEB"
check user "postinst created the system user rserpool" getent passwd rserpool
check files "binary, units, configuration, sysusers entry" test -x /usr/bin/rserpool \
  -a -f /lib/systemd/system/rserpool-registrar.service -a -f /lib/systemd/system/rserpool-pe-agent.service \
  -a -f /lib/systemd/system/rserpool-proxy.service -a -f /etc/rserpool/registrar.d/registrar.toml \
  -a -f /etc/rserpool/pe-agent.d/agent.toml -a -f /etc/rserpool/proxy.d/proxy.toml -a -f /usr/lib/sysusers.d/rserpool.conf
check enabled "the registrar unit is enabled, pe-agent and proxy are not" bash -c \
  'test -L /etc/systemd/system/multi-user.target.wants/rserpool-registrar.service &&
   ! test -e /etc/systemd/system/multi-user.target.wants/rserpool-pe-agent.service &&
   ! test -e /etc/systemd/system/multi-user.target.wants/rserpool-proxy.service'

# The operator's configuration: SCTP beside the TCP mapping, one element,
# one listener (files added to the directories, as README "Operating it" says).
sed -i 's|^listen = \["tcp://127.0.0.1:3863"\]|listen = ["tcp://127.0.0.1:3863", "sctp://127.0.0.1:3863"]|' /etc/rserpool/registrar.d/registrar.toml
sed -i 's|^registrars = .*|registrars = ["sctp://127.0.0.1:3863"]|' /etc/rserpool/pe-agent.d/agent.toml
cat >/etc/rserpool/pe-agent.d/echo-7001.toml <<'TOML'
[[element]]
pool    = "EchoPool"
backend = "127.0.0.1:7001"
policy  = "least-used"
[element.health]
interval = "500ms"
TOML
cat >/etc/rserpool/proxy.d/echo.toml <<'TOML'
[[listener]]
name   = "echo"
listen = "127.0.0.1:8080"
pool   = "EchoPool"
TOML
echo 'RSERPOOL_ARGS="-log-level debug"' >>/etc/default/rserpool-registrar
python3 vmcheck.py echo-server 127.0.0.1 7001 b1 & BACKENDS=($!)
python3 vmcheck.py echo-server 127.0.0.1 7002 b2 & BACKENDS+=($!)

# start NAME: the unit's ExecStart, with RSERPOOL_ARGS, as User=rserpool.
start() {
  local d=$1 unit=/lib/systemd/system/rserpool-$1.service cmd RSERPOOL_ARGS=""
  cmd=$(sed -n 's/^ExecStart=//p' "$unit")
  # shellcheck disable=SC1090
  . "/etc/default/rserpool-$d"
  cmd=${cmd/\$RSERPOOL_ARGS/$RSERPOOL_ARGS}
  LOG=$OUT/$d.log python3 vmcheck.py notify "/run/notify-$d" 30 -- \
    setpriv --reuid=rserpool --regid=rserpool --init-groups --no-new-privs $cmd >"$OUT/$d.ready" 2>&1
}
pid() { cat "/run/notify-$1.pid"; }
stop() { local p; p=$(pid "$1"); kill -TERM "$p"; waitfor "$2" bash -c "! kill -0 $p"; }
echo "== $(date +%T) start the daemons"
check registrar "rserpool-registrar sends READY=1 (Type=notify) as user rserpool" start registrar
check pe-agent "rserpool-pe-agent sends READY=1" start pe-agent
check proxy "rserpool-proxy sends READY=1" start proxy
check user-proc "the daemons run as rserpool" bash -c "ps -o user= -p $(pid registrar),$(pid pe-agent),$(pid proxy) | sort -u | grep -qx rserpool"
grep -q 'ASAP=.*sctp://127.0.0.1:3863' "$OUT/registrar.ready" && pass sctp "the registrar listens on SCTP" ||
  fail sctp "no sctp:// in the registrar's READY=1: $(cat "$OUT/registrar.ready")"

resolve() { rserpool ctl resolve -registrar "$1" -timeout 3s EchoPool >"$OUT/resolve.txt" 2>&1 && grep -q "port $2" "$OUT/resolve.txt"; }
echo "== $(date +%T) ctl resolve"
check resolve-sctp "ctl resolve over SCTP lists the pe-agent's element" waitfor 20 resolve sctp://127.0.0.1:3863 7001
check resolve-tcp "ctl resolve over the TCP mapping lists it" resolve tcp://127.0.0.1:3863 7001
check relay "a client of the proxy reaches the backend" bash -c 'test "$(python3 vmcheck.py ask 127.0.0.1 8080 hello)" = b1:hello'
check status "the status pages and /metrics answer" bash -c '
  python3 vmcheck.py get http://127.0.0.1:9464/ | grep -q "rserpool registrar" &&
  python3 vmcheck.py get http://127.0.0.1:9465/ | grep -q "rserpool pe-agent" &&
  python3 vmcheck.py get http://127.0.0.1:9466/ | grep -q "rserpool proxy" &&
  python3 vmcheck.py get http://127.0.0.1:9464/metrics | grep -q "^rserpool_registrar_pool_elements{pool=\"EchoPool\"} 1"'

echo "== $(date +%T) reload (ExecReload: SIGHUP)"
cat >/etc/rserpool/pe-agent.d/echo-7002.toml <<'TOML'
[[element]]
pool    = "EchoPool"
backend = "127.0.0.1:7002"
policy  = "least-used"
TOML
kill -HUP "$(pid pe-agent)"
check reload "SIGHUP registers the element of an added file" waitfor 20 resolve tcp://127.0.0.1:3863 7002
check reload-notify "the reload is announced: RELOADING=1, then READY=1" waitfor 10 bash -c \
  'grep -q "^RELOADING=1" /run/notify-pe-agent.log && grep -q "^READY=1" /run/notify-pe-agent.log' 

echo "== $(date +%T) stop (SIGTERM)"
check stop-proxy "rserpool-proxy exits on SIGTERM within TimeoutStopSec" stop proxy 45
check stop-pe-agent "rserpool-pe-agent deregisters and exits on SIGTERM" stop pe-agent 30
check stop-registrar "rserpool-registrar exits on SIGTERM" stop registrar 20
check stop-notify "each daemon said STOPPING=1" bash -c \
  'for d in registrar pe-agent proxy; do grep -q "^STOPPING=1" /run/notify-$d.log || exit 1; done' 
kill "${BACKENDS[@]}" 2>/dev/null

echo "== $(date +%T) remove and purge"
check remove "dpkg -r removes the package and keeps the configuration" bash -c \
  'dpkg -r rserpool && ! test -e /usr/bin/rserpool && test -f /etc/rserpool/registrar.d/registrar.toml'
check purge "dpkg --purge removes the configuration" bash -c 'dpkg --purge rserpool && ! test -e /etc/rserpool/registrar.d/registrar.toml'

echo "== $(date +%T) done: $FAILS failed"
[ "$FAILS" = 0 ]
