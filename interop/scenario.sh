#!/bin/bash
# scenario.sh: the RSPLIB 3.4.4 interoperability cases. Runs INSIDE the SCTP
# VM (../shared/sctp-vm), as root, with cwd = the shared work dir holding
# ./rserpool (static), vmtool.py and wirecheck/. Started by interop/run.
#   scenario.sh [CASE...]     cases 1-10, default all; prints "PASS case N: ..."
#                             or "FAIL case N: ..." per case, exit 1 if any FAIL.
# Addresses (RSPLIB refuses loopback ones, so TEST-NET-1 goes on lo):
#   .100 OUR registrar (ASAP sctp 3863, admin 127.0.0.1:9464)
#   .1   rspregistrar  (ASAP 3863, ENRP 9901)
#   .11 .12 rspserver -echo EchoPool @ours, .13 rspserver -pingpong PingPongPool @ours
#   .31  TCP echo backend registered by OUR pe-agent (AgentPool) @rspregistrar
#   .21 .22 rspserver -echo ProxyPool @rspregistrar; .40:8000 OUR proxy for ProxyPool
#   .101 OUR registrar #2 and .2 rspregistrar #2 (case 5, ENRP peers)
#   .7   (on a dummy interface mc0 with the multicast route) rspregistrar #4 (ASAP 19863,
#        announces on) with rspserver -echo .51 .52
#        in DialPool; OUR ctl dial and proxy (.40:8001) find it by its announces (case 7)
#   .81 .82 rspserver -pingpong PingPongSession @rspregistrar, OUR pingpong-client (case 8)
#   .91 .92 OUR pingpong-server PingPongOurs @ours, RSPLIB pingpongclient (case 9)
#   .104 OUR registrar #3 (0x104) with 60 PEs of OUR pe-agent (backends .31:7101-7160);
#   .105 a late rspregistrar #5 (0x50000005) that knows only .104 (case 10)
# Everything on lo is captured (dumpcap); case 6 checks the capture.
set -u
CASES=${*:-1 2 3 4 5 6 7 8 9 10}
OUT=$PWD/out
mkdir -p "$OUT"; rm -f "$OUT"/*
PCAP=$OUT/interop.pcap
LOGOPT="-loglevel=3 -logcolor=off"
N=192.0.2
ADMIN=http://127.0.0.1:9464
OURS=sctp://$N.100:3863
PIDS=()
T0=$(date +%s)
step() { echo "== $(date +%T) (+$(( $(date +%s) - T0 ))s) $*"; }
# bg NAME CMD...: start CMD in the background, log to NAME.log, pid in NAME.pid
bg() { local n=$1; shift; "$@" >"$OUT/$n.log" 2>&1 & PIDS+=($!); echo $! >"$OUT/$n.pid"; }
pid() { cat "$OUT/$1.pid"; }
alive() { kill -0 "$(pid "$1")" 2>/dev/null; }
want() { [[ " $CASES " == *" $1 "* ]]; }
declare -A WHY
fail() { WHY[$1]="${WHY[$1]:+${WHY[$1]}; }$2"; echo "   case $1: $2"; }
# waitfor SECONDS CMD...: run CMD every 0.25 s until it succeeds
waitfor() { local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.25; done; }
hs() { python3 vmtool.py wait "$ADMIN" "$@"; }
# hsdump_pool PR POOL: number of PEs of POOL in rspregistrar PR's handlespace
hsdump_pool() { local pr=$1; [[ $pr == *:* ]] || pr=$pr:9901
  timeout 10 hsdump "$pr" -logcolor=off >"$OUT/hsdump-last.txt" 2>&1
  cat "$OUT/hsdump-last.txt" >>"$OUT/hsdump.txt"
  sed -n "s/.*+-- Pool \"$2\".*(\([0-9]*\) nodes).*/\1/p" "$OUT/hsdump-last.txt" | head -n1 | grep . || echo 0
}
# hsdump_wait PR POOL N SECONDS: poll until POOL has N PEs; prints the last count
hsdump_wait() { local end=$(( $(date +%s) + $4 )) n
  while :; do n=$(hsdump_pool "$1" "$2"); [ "$n" = "$3" ] && break
    [ "$(date +%s)" -ge "$end" ] && break; sleep 0.5; done; echo "$n"; }

[ -d /proc/sys/net/sctp ] || { echo "FAIL case 0: no SCTP in the VM kernel"; exit 1; }
for a in 1 2 11 12 13 21 22 31 40 51 52 81 82 91 92 100 101 103 104 105 111 112; do ip addr add $N.$a/32 dev lo; done
ip link set lo multicast on; ip route add 224.0.0.0/4 dev lo
./rserpool version >"$OUT/version.txt" 2>&1 || true

step "capture on lo"
dumpcap -q -P -i lo -w "$PCAP" 2>"$OUT/dumpcap.log" & DUMPCAP=$!
for i in $(seq 50); do [ -s "$PCAP" ] && break; sleep 0.1; done

cat >"$OUT/registrar.toml" <<TOML
[asap]
listen = ["$OURS"]
[admin]
listen = "127.0.0.1:9464"
[timers]
keepalive_interval = "2s"
keepalive_timeout = "2s"
TOML
PR_OPTS="-endpointkeepalivetransmissioninterval=2000 -endpointkeepalivetimeoutinterval=2000
 -mentordiscoverytimeout=1000 -asapannounce=off -enrpannounce=off $LOGOPT"
PE_OPTS="-asapannounce=off $LOGOPT"

step "registrars: ours (.100), rspregistrar (.1)"
bg ours ./rserpool registrar -config "$OUT/registrar.toml" -ready-file "$OUT/ours.ready" -log-level debug
bg pr1 rspregistrar -identifier=0x10000001 -asap=$N.1:3863 -enrp=$N.1:9901 $PR_OPTS
waitfor 20 test -s "$OUT/ours.ready" || echo "   our registrar is not ready: $(tail -n 3 "$OUT/ours.log")"

if want 1 || want 2; then
  step "case 1: RSPLIB PEs register at our registrar over SCTP"
  bg pe11 rspserver -echo -poolhandle=EchoPool -registrar=$N.100:3863 -local=$N.11 -identifier=0x11 $PE_OPTS
  bg pe12 rspserver -echo -poolhandle=EchoPool -registrar=$N.100:3863 -local=$N.12 -identifier=0x12 $PE_OPTS
  bg pe13 rspserver -pingpong -poolhandle=PingPongPool -registrar=$N.100:3863 -local=$N.13 -identifier=0x13 \
    -policy=LeastUsed $PE_OPTS
  hs EchoPool 2 20 || fail 1 "EchoPool PEs not in our /handlespace"
  hs PingPongPool 1 10 || fail 1 "PingPongPool PE not in our /handlespace"
  ./rserpool ctl resolve -registrar $OURS -timeout 5s EchoPool >"$OUT/ctl-resolve.txt" 2>&1 ||
    fail 1 "ctl resolve EchoPool failed: $(tail -n1 "$OUT/ctl-resolve.txt")"
  for id in 0x00000011 0x00000012; do grep -qi "$id" "$OUT/ctl-resolve.txt" || fail 1 "ctl resolve lacks PE $id"; done
  step "case 1: keep-alives (interval 2 s, timeout 2 s): PEs still there after 7 s"
  sleep 7
  hs EchoPool 2 1 || fail 1 "EchoPool PEs dropped although they answer keep-alives"
fi

if want 2; then
  step "case 2: RSPLIB pool users resolve at our registrar"
  (for i in 1 2 3; do echo "Hello RSerPool $i"; sleep 0.7; done; sleep 1.5) |
    timeout 10 rspterminal -poolhandle=EchoPool -registrar=$N.100:3863 $LOGOPT >"$OUT/pu-echo.txt" 2>&1
  timeout -s INT 8 pingpongclient -poolhandle=PingPongPool -registrar=$N.100:3863 -interval=500 \
    $LOGOPT >"$OUT/pu-pingpong.txt" 2>&1
  grep -aq "from PE.*Hello RSerPool" "$OUT/pu-echo.txt" || fail 2 "rspterminal got no echo (pu-echo.txt)"
  grep -aq "Ack #" "$OUT/pu-pingpong.txt" || fail 2 "pingpongclient got no answer (pu-pingpong.txt)"
fi

if want 1; then
  step "case 1: SIGINT PE .12 (deregisters), SIGKILL PE .11, SIGSTOP PE .13 (keep-alive timeout)"
  kill -INT "$(pid pe12)"
  hs EchoPool 1 10 || fail 1 "SIGINT PE .12 still in our handlespace"
  kill -KILL "$(pid pe11)"
  hs EchoPool 0 10 || fail 1 "SIGKILLed PE .11 not removed"
  kill -STOP "$(pid pe13)"
  hs PingPongPool 0 15 || fail 1 "stopped PE .13 (no keep-alive ack) not removed"
  kill -CONT "$(pid pe13)"; kill -INT "$(pid pe13)"
fi

if want 3; then
  step "case 3: our pe-agent registers a backend at rspregistrar over SCTP"
  bg backend python3 vmtool.py echo-server $N.31 7001
  cat >"$OUT/pe-agent.toml" <<TOML
registrars = ["sctp://$N.1:3863"]
reregistration_interval = "30s"
response_timeout = "3s"
retry_interval = "1s"
drain = "0s"
[[element]]
pool = "AgentPool"
backend = "$N.31:7001"
id = 0x31
[element.health]
interval = "500ms"
rise = 1
TOML
  bg agent ./rserpool pe-agent -config "$OUT/pe-agent.toml" -log-level debug
  n=$(hsdump_wait $N.1 AgentPool 1 20)
  [ "$n" = 1 ] || fail 3 "hsdump shows $n AgentPool PEs, want 1 (pe-agent.log, hsdump.txt)"
  step "case 3: keep-alives keep it (rspregistrar interval 2 s, timeout 2 s)"
  sleep 7
  n=$(hsdump_pool $N.1 AgentPool)
  [ "$n" = 1 ] || fail 3 "after 7 s hsdump shows $n AgentPool PEs, want 1"
  step "case 3: SIGTERM pe-agent"
  kill -TERM "$(pid agent)"
  for i in $(seq 40); do alive agent || break; sleep 0.25; done
  alive agent && fail 3 "pe-agent did not exit within 10 s of SIGTERM"
  n=$(hsdump_wait $N.1 AgentPool 0 6)
  [ "$n" = 0 ] || fail 3 "after SIGTERM hsdump shows $n AgentPool PEs, want 0"
fi

if want 4; then
  step "case 4: our proxy resolves at rspregistrar (SCTP) and relays to RSPLIB echo PEs"
  bg pe21 rspserver -echo -poolhandle=ProxyPool -registrar=$N.1:3863 -local=$N.21 -identifier=0x21 $PE_OPTS
  bg pe22 rspserver -echo -poolhandle=ProxyPool -registrar=$N.1:3863 -local=$N.22 -identifier=0x22 $PE_OPTS
  n=$(hsdump_wait $N.1 ProxyPool 2 20)
  [ "$n" = 2 ] || fail 4 "rspregistrar has $n ProxyPool PEs, want 2"
  # The replay buffer: a request that reached the PE just before its
  # SIGKILL, and got no byte back, goes to the other PE instead of costing
  # the client its connection (docs/proxy.md). Without it, whether a
  # connection is in flight at the kill is a race (1 of 40 failed once).
  cat >"$OUT/proxy.toml" <<TOML
registrars = ["sctp://$N.1:3863"]
[[listener]]
listen = "$N.40:8000"
pool = "ProxyPool"
replay_buffer = 4096
TOML
  bg proxy ./rserpool proxy -config "$OUT/proxy.toml" -ready-file "$OUT/proxy.ready" -log-level debug
  waitfor 20 test -s "$OUT/proxy.ready" || fail 4 "proxy not ready: $(tail -n 3 "$OUT/proxy.log")"
  ./transport.test -test.run 'SCTP' -test.v >"$OUT/transport-test.txt" 2>&1 ||
    fail 4 "transport SCTP tests on kernel SCTP: $(grep -m1 -E 'FAIL|_test.go' "$OUT/transport-test.txt")"
  python3 vmtool.py client $N.40 8000 40 0.1 >"$OUT/proxy-client.txt" 2>&1 & CLIENT=$!
  waitfor 20 grep -q "^ok 9$" "$OUT/proxy-client.txt"
  step "case 4: SIGKILL PE .21 while the client runs"
  kill -KILL "$(pid pe21)"
  wait $CLIENT || fail 4 "$(tail -n1 "$OUT/proxy-client.txt") (proxy-client.txt, proxy.log)"
  grep -q "^ok 39$" "$OUT/proxy-client.txt" || fail 4 "the last client connection did not succeed"
fi

if want 5; then
  step "case 5: ENRP between our registrar #2 (.101, 0x101) and rspregistrar #2 (.2, 0x20000002)"
  cat >"$OUT/registrar2.toml" <<TOML
id = "0x101"
[asap]
listen = ["sctp://$N.101:3863"]
[enrp]
listen = ["sctp://$N.101:9901"]
peers = ["sctp://$N.2:9901", "sctp://$N.103:9901"]
peer_heartbeat = "1s"
max_time_last_heard = "3s"
max_time_no_response = "2s"
takeover_expiry = "3s"
mentor_discovery = "1s"
[admin]
listen = "127.0.0.1:9465"
[timers]
keepalive_interval = "2s"
keepalive_timeout = "2s"
TOML
  # A third registrar, rspregistrar #3 (.103, 0x30000003): RSPLIB finishes a
  # takeover only when a peer acks its Init Takeover; with no other live
  # peer it lets the takeover expire ("Takeover of peer $00000101 has
  # expired, 0 outstanding acknowledgements"). #3 is that peer. It notices
  # dead peers late (60 s), so it only acks the takeover under test.
  A2=http://127.0.0.1:9465
  PR2_OPTS="-identifier=0x20000002 -asap=$N.2:3863 -enrp=$N.2:9901 -peer=$N.101:9901 -peer=$N.103:9901 $PR_OPTS
   -peerheartbeatcycle=1000 -peermaxtimelastheard=3000 -peermaxtimenoresponse=2000 -takeoverexpiryinterval=3000"
  bg ours2 ./rserpool registrar -config "$OUT/registrar2.toml" -ready-file "$OUT/ours2.ready" -log-level debug
  bg pr3 rspregistrar -identifier=0x30000003 -asap=$N.103:3863 -enrp=$N.103:9901 -peer=$N.2:9901 -peer=$N.101:9901 \
    $PR_OPTS -peerheartbeatcycle=1000 -peermaxtimelastheard=60000 -peermaxtimenoresponse=2000 -takeoverexpiryinterval=3000
  bg pr2 rspregistrar $PR2_OPTS
  waitfor 20 test -s "$OUT/ours2.ready" || fail 5 "registrar #2 not ready: $(tail -n 3 "$OUT/ours2.log")"
  bg pe111 rspserver -echo -poolhandle=EnrpPool -registrar=$N.2:3863 -local=$N.111 -identifier=0x111 $PE_OPTS
  bg pe112 rspserver -echo -poolhandle=EnrpPool -registrar=$N.101:3863 -local=$N.112 -identifier=0x112 $PE_OPTS
  python3 vmtool.py wait $A2 EnrpPool 2 15 >"$OUT/enrp-wait.txt" ||
    fail 5 "our registrar does not list both PEs (one registered at rspregistrar): $(cat "$OUT/enrp-wait.txt")"
  n=$(hsdump_wait $N.2 EnrpPool 2 10)
  [ "$n" = 2 ] || fail 5 "hsdump of rspregistrar shows $n EnrpPool PEs, want 2 (one registered at ours)"
  n=$(hsdump_wait $N.101 EnrpPool 2 5)
  [ "$n" = 2 ] || fail 5 "hsdump of our registrar shows $n EnrpPool PEs, want 2"
  cp "$OUT/hsdump-last.txt" "$OUT/hsdump-ours2.txt"
  hsdump_pool $N.2 EnrpPool >/dev/null; cp "$OUT/hsdump-last.txt" "$OUT/hsdump-pr2.txt"
  s1=$(python3 vmtool.py hsdump-sum "$OUT/hsdump-ours2.txt"); s2=$(python3 vmtool.py hsdump-sum "$OUT/hsdump-pr2.txt")
  [ "$s1" = "$s2" ] && [ "$s1" != none ] || fail 5 "hsdump handlespace checksums differ: ours $s1, rspregistrar $s2"
  ./rserpool ctl handlespace -registrar sctp://$N.2:9901 -json >"$OUT/ctl-hs-pr2.json" 2>"$OUT/ctl-hs-pr2.err" ||
    fail 5 "ctl handlespace against rspregistrar failed: $(tail -n1 "$OUT/ctl-hs-pr2.err")"
  python3 vmtool.py checksums $A2 "$OUT/ctl-hs-pr2.json" >"$OUT/checksums.txt" 2>&1 ||
    fail 5 "owner checksums differ: $(tail -n1 "$OUT/checksums.txt")"
  echo "   hsdump checksums: ours $s1, rspregistrar $s2; owner checksums $(tail -n1 "$OUT/checksums.txt")"

  # hsdump and ctl handlespace join RSPLIB's peer list for a while (they
  # send a Presence); RSPLIB's takeover waits for their acks and expires.
  # So no probing of rspregistrar around a takeover: the PEs' own logs
  # ("Home registrar is $...", on a Keep-Alive with H=1) are the evidence.
  sleep 6
  step "case 5: SIGKILL rspregistrar: ours takes over PE 0x111"
  kill -KILL "$(pid pr2)"
  python3 vmtool.py owned $A2 EnrpPool 0x111 20 >"$OUT/takeover1.txt" ||
    fail 5 "our registrar did not take over PE 0x111: $(cat "$OUT/takeover1.txt")"
  waitfor 12 grep -q 'Home registrar is \$00000101' "$OUT/pe111.log" ||
    fail 5 "PE 0x111 got no Keep-Alive with H=1 from our registrar (it does not log 'Home registrar is \$00000101')"
  sleep 5   # more than one keep-alive interval + timeout: an adopted PE that does not answer is gone by now
  python3 vmtool.py owned $A2 EnrpPool 0x111 1 >"$OUT/takeover1b.txt" ||
    fail 5 "PE 0x111 not kept after the takeover: $(cat "$OUT/takeover1b.txt")"

  step "case 5: restart rspregistrar, SIGKILL ours: rspregistrar takes over PE 0x112"
  bg pr2b rspregistrar $PR2_OPTS
  want=$(python3 vmtool.py count $A2 EnrpPool)
  n=$(hsdump_wait $N.2 EnrpPool "$want" 20)
  [ "$n" = "$want" ] || fail 5 "restarted rspregistrar learned $n EnrpPool PEs from ours, want $want"
  sleep 6
  kill -KILL "$(pid ours2)"
  waitfor 25 grep -q 'Home registrar is \$20000002' "$OUT/pe112.log" ||
    fail 5 "rspregistrar did not take over PE 0x112 (its log has no 'Home registrar is \$20000002')"
  hsdump_pool $N.2 EnrpPool >/dev/null
  h=$(python3 vmtool.py hsdump-home "$OUT/hsdump-last.txt" 0x112)
  [ "$h" = 20000002 ] || fail 5 "hsdump of rspregistrar: PE 0x112 home $h, want 20000002"
fi

if want 10; then
  step "case 10: a late rspregistrar (.105) that knows only ours (.104) syncs the whole handlespace from ours"
  # Ours lists .105 as a peer, so its heartbeat Presences reach the late
  # rspregistrar during its start-up: RSPLIB takes the first registrar whose
  # Presence it accepts as its mentor (it sends none of its own until its
  # start-up ends), and downloads the handlespace from it (W=0).
  cat >"$OUT/registrar3.toml" <<TOML
id = "0x104"
[asap]
listen = ["sctp://$N.104:3863"]
[enrp]
listen = ["sctp://$N.104:9901"]
peers = ["sctp://$N.105:9901"]
[admin]
listen = "127.0.0.1:9466"
[timers]
keepalive_interval = "2s"
keepalive_timeout = "2s"
TOML
  A3=http://127.0.0.1:9466
  bg ours3 ./rserpool registrar -config "$OUT/registrar3.toml" -ready-file "$OUT/ours3.ready" -log-level debug
  # It waits mentor_discovery (5 s) for its peer before serving ASAP.
  waitfor 20 grep -q "serving ASAP" "$OUT/ours3.log" || fail 10 "registrar #3 not serving: $(tail -n 3 "$OUT/ours3.log")"
  # 60 PEs, more than one Handle Table Response holds (RSPLIB: about 1400 bytes each).
  { echo "registrars = [\"sctp://$N.104:3863\"]"; echo 'drain = "0s"'
    for i in $(seq 1 60); do
      printf '[[element]]\npool = "LatePool"\nbackend = "%s:%d"\nid = %d\n[element.health]\ndisable = true\n' \
        $N.31 $((7100 + i)) $((0x800 + i))
    done; } >"$OUT/pe-agent8.toml"
  bg agent8 ./rserpool pe-agent -config "$OUT/pe-agent8.toml"
  python3 vmtool.py wait $A3 LatePool 60 30 >"$OUT/late-wait.txt" ||
    fail 10 "our registrar #3 does not list the 60 PEs: $(cat "$OUT/late-wait.txt")"
  bg pr5 rspregistrar -identifier=0x50000005 -asap=$N.105:3863 -enrp=$N.105:9901 -peer=$N.104:9901 \
    -endpointkeepalivetransmissioninterval=2000 -endpointkeepalivetimeoutinterval=2000 \
    -asapannounce=off -enrpannounce=off $LOGOPT
  # No hsdump during its start-up: RSPLIB takes the first sender of a
  # Presence as its mentor, hsdump included, and then waits for it in vain.
  waitfor 15 grep -q "Initialization phase ended" "$OUT/pr5.log" ||
    fail 10 "the late rspregistrar did not end its start-up (pr5.log)"
  grep -q "Initialization phase ended after obtaining handlespace from mentor server" "$OUT/pr5.log" ||
    fail 10 "the late rspregistrar did not get its handlespace from a mentor: $(grep -m1 'Initialization phase ended' "$OUT/pr5.log")"
  n=$(hsdump_wait $N.105 LatePool 60 30)
  [ "$n" = 60 ] || fail 10 "the late rspregistrar learned $n LatePool PEs from ours, want 60 (pr5.log, hsdump.txt)"
  cp "$OUT/hsdump-last.txt" "$OUT/hsdump-pr5.txt"
  grep -q 'addrs: {192.0.2.104} 9901/SCTP' "$OUT/hsdump-pr5.txt" ||
    fail 10 "the late rspregistrar has no usable ENRP address of ours in its peer list (hsdump-pr5.txt)"
fi

if want 7; then
  step "case 7: Cache.Dial and the proxy reach RSPLIB PEs over SCTP, the registrar found by its announces"
  # rspregistrar #4 announces (RSPLIB: no transport parameter, sent from its
  # ASAP port 19863, not 3863): our components must learn sctp://.7:19863.
  # RSPLIB's announce socket is unbound: its datagrams leave with the
  # address of the multicast route's interface, 127.0.0.1 on lo. So .7
  # lives on a dummy interface that carries the multicast route: the
  # announces come from .7 and are looped back to the local receivers.
  ip link add mc0 type dummy && ip link set mc0 up multicast on
  ip addr add $N.7/32 dev mc0
  ip route replace 224.0.0.0/4 dev mc0
  bg pr4 rspregistrar -identifier=0x40000004 -asap=$N.7:19863 -enrp=$N.7:19901 \
    -endpointkeepalivetransmissioninterval=2000 -endpointkeepalivetimeoutinterval=2000 \
    -mentordiscoverytimeout=1000 -enrpannounce=off $LOGOPT
  bg pe51 rspserver -echo -poolhandle=DialPool -registrar=$N.7:19863 -local=$N.51 -identifier=0x51 $PE_OPTS
  bg pe52 rspserver -echo -poolhandle=DialPool -registrar=$N.7:19863 -local=$N.52 -identifier=0x52 $PE_OPTS
  n=$(hsdump_wait $N.7:19901 DialPool 2 20)
  [ "$n" = 2 ] || fail 7 "rspregistrar #4 has $n DialPool PEs, want 2"
  for i in 1 2 3; do
    ./rserpool ctl dial -announce 239.0.0.50:3863 -send "dial $i" -timeout 15s DialPool >"$OUT/ctl-dial-$i.txt" 2>&1 ||
      fail 7 "ctl dial $i: $(tail -n1 "$OUT/ctl-dial-$i.txt")"
    grep -q "^dial $i" "$OUT/ctl-dial-$i.txt" || fail 7 "ctl dial $i: no echo (ctl-dial-$i.txt)"
  done
  grep -h "connected to" "$OUT"/ctl-dial-*.txt | sed 's/^/   /'
  bg proxy7 ./rserpool proxy -listen $N.40:8001 -pool DialPool -ready-file "$OUT/proxy7.ready" -log-level debug
  waitfor 20 test -s "$OUT/proxy7.ready" || fail 7 "proxy not ready: $(tail -n 3 "$OUT/proxy7.log")"
  python3 vmtool.py client $N.40 8001 20 0.1 >"$OUT/proxy7-client.txt" 2>&1 ||
    fail 7 "proxy via announces: $(tail -n1 "$OUT/proxy7-client.txt") (proxy7-client.txt, proxy7.log)"
  grep -q "sctp://$N.7:19863" "$OUT/proxy7.log" ||
    fail 7 "the proxy's log does not name sctp://$N.7:19863 (the announced registrar at its source port)"
  ip route replace 224.0.0.0/4 dev lo # as the other cases expect
fi

# lastpe FILE: the PE ID (8 hex digits) of the last whole "Ack #n from PE $id (reply #r)" line
lastpe() { grep -ao 'from PE \$[0-9a-fA-F]\{8\} (reply #[0-9]*)' "$1" | tail -n1 | sed 's/.*\$\([0-9a-fA-F]*\).*/\1/'; }

if want 8; then
  step "case 8: our PingPong client (session layer) with rspserver -pingpong PEs at rspregistrar"
  bg pp81 rspserver -pingpong -poolhandle=PingPongSession -registrar=$N.1:3863 -local=$N.81 -identifier=0x81 $PE_OPTS
  bg pp82 rspserver -pingpong -poolhandle=PingPongSession -registrar=$N.1:3863 -local=$N.82 -identifier=0x82 $PE_OPTS
  # (ctl resolve, not hsdump: much quicker under emulation)
  waitfor 20 bash -c "./rserpool ctl resolve -registrar sctp://$N.1:3863 -items 8 -timeout 2s PingPongSession |
    grep -q 'PingPongSession\" policy .*, 2 PE'" || fail 8 "rspregistrar does not list both PingPongSession PEs"
  # Under emulation on a loaded host the client's first registrar
  # connection has taken 20 s; the session itself then runs at speed.
  bg ppc ./pingpong-client -registrar sctp://$N.1:3863 -pool PingPongSession -interval 200ms -count 30 -v
  if waitfor 60 grep -aq 'Ack #5 from' "$OUT/ppc.log"; then
    victim=$(lastpe "$OUT/ppc.log")
    step "case 8: SIGKILL rspserver PE $victim under our client's session"
    case $victim in
      00000081) kill -KILL "$(pid pp81)" ;;
      00000082) kill -KILL "$(pid pp82)" ;;
      *) fail 8 "our client's PE is '$victim', neither 0x81 nor 0x82" ;;
    esac
    waitfor 40 grep -aq '^30 Pings' "$OUT/ppc.log" || fail 8 "our client did not finish 30 Pings: $(tail -n 2 "$OUT/ppc.log")"
    python3 vmtool.py pingpong "$OUT/ppc.log" "$victim" >"$OUT/case8.txt" 2>&1 || fail 8 "$(cat "$OUT/case8.txt") (ppc.log)"
    echo "   $(cat "$OUT/case8.txt")"
    grep -aq 'cookie echoed: true' "$OUT/ppc.log" || fail 8 "our client failed over without a Cookie Echo (ppc.log)"
    ! grep -aqi 'bad cookie echo' "$OUT/pp81.log" "$OUT/pp82.log" || fail 8 "rspserver rejected our Cookie Echo"
  else
    fail 8 "our client got no 5 Acks: $(tail -n 3 "$OUT/ppc.log")"
  fi
fi

if want 9; then
  step "case 9: RSPLIB's pingpongclient with our PingPong PEs at our registrar"
  bg opp91 ./pingpong-server -registrar $OURS -pool PingPongOurs -listen sctp://$N.91:0 -id 0x91 -v
  bg opp92 ./pingpong-server -registrar $OURS -pool PingPongOurs -listen sctp://$N.92:0 -id 0x92 -v
  if hs PingPongOurs 2 20; then
    # stdbuf: pingpongclient's stdout is a file here, line-buffer it.
    (timeout -s INT 60 stdbuf -oL pingpongclient -poolhandle=PingPongOurs -registrar=$N.100:3863 -interval=200 $LOGOPT \
      >"$OUT/rspc.log" 2>&1) & RSPC=$!
    if waitfor 40 grep -aq 'Ack #5 from' "$OUT/rspc.log"; then
      victim=$(lastpe "$OUT/rspc.log")
      step "case 9: SIGKILL our PE $victim under pingpongclient's session"
      case $victim in
        00000091) kill -KILL "$(pid opp91)"; other=opp92 ;;
        00000092) kill -KILL "$(pid opp92)"; other=opp91 ;;
        *) fail 9 "pingpongclient's PE is '$victim', neither 0x91 nor 0x92"; other= ;;
      esac
      if [ -n "$other" ]; then
        waitfor 30 python3 vmtool.py pingpong "$OUT/rspc.log" "$victim"
        python3 vmtool.py pingpong "$OUT/rspc.log" "$victim" >"$OUT/case9.txt" 2>&1 || fail 9 "$(cat "$OUT/case9.txt") (rspc.log)"
        echo "   $(cat "$OUT/case9.txt")"
        grep -aq 'cookie echo: going on' "$OUT/$other.log" ||
          fail 9 "our surviving PE logged no Cookie Echo from pingpongclient ($other.log)"
      fi
    else
      fail 9 "pingpongclient got no 5 Acks: $(tail -n 3 "$OUT/rspc.log")"
    fi
    kill -INT $RSPC 2>/dev/null; wait $RSPC
  else
    fail 9 "our PingPong PEs not in our /handlespace: $(tail -n 2 "$OUT/opp91.log")"
  fi
fi

step "stop everything (SIGINT/SIGTERM), then the capture"
for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -INT "${PIDS[$i]}" 2>/dev/null; done
sleep 1.5
for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -KILL "${PIDS[$i]}" 2>/dev/null; done
kill -INT $DUMPCAP; wait $DUMPCAP
# One pass over the capture; the checks below read this table:
# frame, ip.src, sctp.srcport, ip.dst, sctp.dstport, PPIDs, ASAP types,
# ENRP types, ASAP pool handles (hex), Info.
tshark -r "$PCAP" -Y 'sctp.data_payload_proto_id || asap || enrp' -T fields -E separator=/t \
  -e frame.number -e ip.src -e sctp.srcport -e ip.dst -e sctp.dstport -e sctp.data_payload_proto_id \
  -e asap.message_type -e enrp.message_type -e asap.pool_handle_pool_handle -e _ws.col.Info \
  >"$OUT/packets.tsv" 2>/dev/null
# rows AWK-CONDITION: rows of packets.tsv matching; in the condition, has(col, v)
# is true when the comma list in column col holds v.
rows() { awk -F'\t' -v AP="$AP" -v PP="$PP" -v PORTS=" ${PORTS:-} " \
  'function has(c, v,  a, i, n) { n = split($c, a, ","); for (i = 1; i <= n; i++) if (a[i] == v) return 1; return 0 }
   function port(p) { return index(PORTS, " " p " ") > 0 }
   '"$1" "$OUT/packets.tsv"; }
nrows() { rows "$1" | wc -l; }
hexof() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
AP=$(hexof AgentPool); PP=$(hexof ProxyPool)
# Source ports of our pe-agent (Registration of AgentPool) and proxy (Handle
# Resolution of ProxyPool) associations to rspregistrar.
AGENT_PORTS=$(rows '$5 == 3863 && has(7, 1) && has(9, AP) {print $3}' | sort -u | tr '\n' ' ')
PORTS=$(rows '$5 == 3863 && ((has(7, 1) && has(9, AP)) || (has(7, 5) && has(9, PP))) {print $3}' | sort -u | tr '\n' ' ')
# Our registrars' own sockets, and their outgoing ENRP association to .2.
OURS_REG='(($2 == "'$N.100'" || $2 == "'$N.101'") && ($3 == 3863 || $3 == 9901)) || ($4 == "'$N.2'" && $5 == 9901 && $3 != 9901)'

if want 1; then
  R='$2 == "'$N.100'" && $3 == 3863'; T='$4 == "'$N.100'" && $5 == 3863'
  [ "$(nrows "$R && has(7, 7)")" -gt 0 ] || fail 1 "our registrar sent no Endpoint Keep-Alive"
  [ "$(nrows "$T && has(7, 8)")" -gt 0 ] || fail 1 "no Endpoint Keep-Alive Ack reached our registrar"
  [ "$(nrows "$T && has(7, 2)")" -gt 0 ] || fail 1 "no Deregistration from the SIGINTed PE"
  [ "$(nrows "$R && has(7, 4)")" -gt 0 ] || fail 1 "our registrar sent no Deregistration Response"
fi
if want 3; then
  PORTS=$AGENT_PORTS
  [ -n "$AGENT_PORTS" ] || fail 3 "no Registration of AgentPool in the capture"
  [ "$(nrows '$5 == 3863 && port($3) && has(7, 8)')" -gt 0 ] || fail 3 "pe-agent sent no Endpoint Keep-Alive Ack"
  [ "$(nrows '$5 == 3863 && port($3) && has(7, 2) && has(9, AP)')" -gt 0 ] ||
    fail 3 "pe-agent sent no Deregistration for AgentPool"
  PORTS=$(rows '$5 == 3863 && ((has(7, 1) && has(9, AP)) || (has(7, 5) && has(9, PP))) {print $3}' | sort -u | tr '\n' ' ')
fi

if want 10; then
  # The late rspregistrar took ours as its mentor: its Handle Table Requests
  # to ours ask for the whole handlespace (W=0), and ours answered in several
  # Handle Table Responses with the M flag.
  F8="ip.src==$N.104 && sctp.srcport==9901 && ip.dst==$N.105"
  nm=$(tshark -r "$PCAP" -Y "enrp.message_type == 3 && $F8 && enrp.m_bit == 1" 2>/dev/null | wc -l)
  [ "$nm" -ge 2 ] || fail 10 "$nm Handle Table Responses with M=1 from ours to the late rspregistrar, want 2 or more"
  nw=$(tshark -r "$PCAP" -Y "enrp.message_type == 2 && ip.src==$N.105 && ip.dst==$N.104 && enrp.w_bit == 0" 2>/dev/null | wc -l)
  [ "$nw" -ge 1 ] || fail 10 "the late rspregistrar sent ours no Handle Table Request with W=0 (ours was not its mentor)"
  echo "   Handle Table Responses with M=1 from ours to the late rspregistrar: $nm"
fi
if want 5 || want 10; then
  # RSPLIB checks a Presence's Server Information against the association
  # it came on ("no usable ENRP endpoint addresses" when they differ).
  bad=$(grep -l "contains no usable ENRP endpoint addresses" "$OUT"/pr*.log 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ')
  if [ -n "$bad" ]; then
    want 5 && fail 5 "rspregistrar discarded Presences of ours: no usable ENRP endpoint addresses ($bad)"
    want 10 && fail 10 "rspregistrar discarded Presences of ours: no usable ENRP endpoint addresses ($bad)"
  fi
fi

if want 6; then
  step "case 6: Wireshark decodes every message our components sent"
  # Our traffic: what our registrars sent, and the pe-agent/proxy
  # associations to rspregistrar (found above by their source ports).
  F="((ip.src==$N.100 || ip.src==$N.101) && (sctp.srcport==3863 || sctp.srcport==9901))"
  F="$F || (ip.dst==$N.2 && sctp.dstport==9901 && sctp.srcport!=9901)"
  [ -n "$PORTS" ] && F="$F || (sctp.dstport==3863 && sctp.srcport in {$(echo $PORTS | tr ' ' ',')})"
  echo "   our traffic: $F"
  tshark -r "$PCAP" -2 -R "$F" -w "$OUT/ours.pcap" 2>"$OUT/ours-filter.log" ||
    fail 6 "tshark could not cut our traffic: $(grep -v 'Running as' "$OUT/ours-filter.log" | head -n1)"
  ./wirecheck/wirecheck "$OUT/ours.pcap" >"$OUT/wirecheck.txt" 2>&1 ||
    fail 6 "wirecheck: $(grep RESULT "$OUT/wirecheck.txt" || tail -n1 "$OUT/wirecheck.txt")"
  sed -n '/RESULT/p' "$OUT/wirecheck.txt"
  [ -n "$PORTS" ] || fail 6 "no pe-agent/proxy association found in the capture"
  n=$(nrows "($OURS_REG) || (\$5 == 3863 && port(\$3))")
  [ "$n" -gt 20 ] || fail 6 "only $n frames with messages from our components"
  # PPID on the wire: 11 on every ASAP association, 12 on ENRP ones.
  bad=$(nrows "(($OURS_REG) || (\$5 == 3863 && port(\$3))) && \$6 != \"\" &&
    !((\$3 == 3863 || \$5 == 3863) && \$6 ~ /^11(,11)*\$/) && !((\$3 == 9901 || \$5 == 9901) && \$6 ~ /^12(,12)*\$/)")
  [ "$bad" = 0 ] || fail 6 "$bad frames from our components with a wrong PPID (packets.tsv)"
  # (Wireshark does not dissect retransmitted DATA chunks again.)
  nodec=$(nrows "(($OURS_REG) || (\$5 == 3863 && port(\$3))) && \$7 == \"\" && \$8 == \"\" && \$10 !~ /retransmission/")
  [ "$nodec" = 0 ] || fail 6 "$nodec DATA frames from our components not decoded as ASAP/ENRP"
fi

# The session cases' traffic, cut out of the capture into sessions.pcap and
# checked with one wirecheck run (each run of tshark is slow under emulation).
SESS_F=
if want 8; then
  # The sessions between our client and the RSPLIB PEs (every frame to or
  # from .81/.82 but their registrar associations; our Cookie Echo, PPID 11),
  # and our client's association to rspregistrar (its Handle Resolutions).
  [ "$(nrows '($2 == "'$N.81'" || $2 == "'$N.82'" || $4 == "'$N.81'" || $4 == "'$N.82'") && has(7, 12) && $6 ~ /^11/')" -gt 0 ] ||
    fail 8 "no Cookie Echo (PPID 11) to an rspserver PE in the capture"
  [ "$(nrows '($4 == "'$N.81'" || $4 == "'$N.82'") && $5 != 3863 && has(6, 33)')" -gt 0 ] ||
    fail 8 "no Ping (PPID 33) to an rspserver PE in the capture"
  P=$(rows '$5 == 3863 && has(7, 5) && has(9, "'$(hexof PingPongSession)'") {print $3}' | sort -u | paste -sd, -)
  [ -n "$P" ] || fail 8 "no Handle Resolution of our client in the capture"
  SESS_F="((ip.addr==$N.81 || ip.addr==$N.82) && !(sctp.port==3863))"
  [ -n "$P" ] && SESS_F="$SESS_F || (sctp.port==3863 && sctp.port in {$P})"
fi
if want 9; then
  # Our PEs' traffic: the sessions with pingpongclient (Cookies from ours,
  # the Cookie Echo from RSPLIB's) and their registration associations.
  [ "$(nrows '($2 == "'$N.91'" || $2 == "'$N.92'") && $3 != 3863 && has(7, 11) && $6 ~ /^11/')" -gt 0 ] ||
    fail 9 "no Cookie (PPID 11) from our PingPong PEs in the capture"
  [ "$(nrows '($4 == "'$N.91'" || $4 == "'$N.92'") && has(7, 12)')" -gt 0 ] ||
    fail 9 "no Cookie Echo from pingpongclient to our PEs in the capture"
  P=$(rows '$5 == 3863 && has(7, 1) && has(9, "'$(hexof PingPongOurs)'") {print $3}' | sort -u | paste -sd, -)
  [ -n "$P" ] || fail 9 "no Registration of our PingPong PEs in the capture"
  SESS_F="${SESS_F:+$SESS_F || }ip.addr==$N.91 || ip.addr==$N.92"
  [ -n "$P" ] && SESS_F="$SESS_F || (sctp.port==3863 && sctp.port in {$P})"
fi
if [ -n "$SESS_F" ]; then
  step "cases 8, 9: Wireshark decodes the session traffic"
  if tshark -r "$PCAP" -2 -R "$SESS_F" -w "$OUT/sessions.pcap" 2>"$OUT/sessions-filter.log" &&
    ./wirecheck/wirecheck "$OUT/sessions.pcap" >"$OUT/wirecheck-sessions.txt" 2>&1; then
    echo "   sessions.pcap: $(grep RESULT "$OUT/wirecheck-sessions.txt")"
  else
    why="wirecheck sessions.pcap: $(grep RESULT "$OUT/wirecheck-sessions.txt" 2>/dev/null || grep -v 'Running as' "$OUT/sessions-filter.log" | head -n1)"
    for c in 8 9; do want $c && fail $c "$why"; done
  fi
fi

step "verdict"
rc=0
desc=([1]="RSPLIB PEs register at our registrar (SCTP), keep-alives, SIGINT/SIGKILL/SIGSTOP removal"
  [2]="RSPLIB rspterminal and pingpongclient use PEs resolved at our registrar"
  [3]="our pe-agent at rspregistrar: hsdump shows it, keep-alives, SIGTERM deregisters"
  [4]="our proxy resolves at rspregistrar and relays to RSPLIB SCTP echo PEs, PE SIGKILL costs no client connection"
  [5]="ENRP with rspregistrar: PEs of either resolvable at both, equal checksums, takeover both ways"
  [6]="Wireshark: no malformed ASAP/ENRP message from our components"
  [7]="Cache.Dial (ctl dial) and the proxy reach RSPLIB SCTP echo PEs through an rspregistrar found by its announces"
  [8]="our PingPong client (session layer) fails over between rspserver PEs with a Cookie Echo RSPLIB accepts"
  [9]="RSPLIB pingpongclient fails over between our PingPong PEs with a Cookie Echo; no reply-number gap"
  [10]="a late rspregistrar that knows only ours syncs the whole handlespace from ours (Handle Table Responses with M)")
for c in $CASES; do
  if [ -n "${WHY[$c]:-}" ]; then echo "FAIL case $c: ${desc[$c]}: ${WHY[$c]}"; rc=1
  else echo "PASS case $c: ${desc[$c]}"; fi
done
exit $rc
