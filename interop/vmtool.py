#!/usr/bin/env python3
"""Helpers for scenario.sh inside the SCTP VM (python3 is the only tool there).

  vmtool.py count URL POOL             PEs of POOL in our registrar's /handlespace
  vmtool.py wait URL POOL N SECONDS    wait until POOL has N PEs (exit 1 on timeout)
  vmtool.py owned URL POOL PEID SECS  wait until our registrar owns PE PEID (hex) of POOL
  vmtool.py checksums URL CTLJSON      per-owner PE checksums of our /handlespace equal
                                       those of `ctl handlespace -json` (another PR)?
  vmtool.py hsdump-home FILE PEID      home registrar of PE PEID in an hsdump output
  vmtool.py hsdump-sum FILE            "Handlespace=" checksum in an hsdump output
  vmtool.py echo-server HOST PORT      TCP echo server (a backend for pe-agent)
  vmtool.py client HOST PORT N GAP     N short TCP request/response connections,
                                       GAP seconds apart; exit 1 if any failed
  vmtool.py pingpong FILE KILLED       a PingPong client's output (ours or RSPLIB's):
                                       after PE KILLED (hex) the Acks come from another
                                       PE and its first reply number follows the last
                                       one of KILLED (state restored from the cookie)
"""
import json, re, socket, sys, threading, time, urllib.request


def count(url, pool):
    with urllib.request.urlopen(url + "/handlespace", timeout=5) as r:
        snap = json.load(r)
    for p in snap.get("pools") or []:
        if p["handle"] == pool:
            return len(p.get("elements") or [])
    return 0


def wait(url, pool, n, secs):
    end = time.time() + secs
    got = None
    while time.time() < end:
        try:
            got = count(url, pool)
            if got == n:
                return 0
        except OSError as e:
            got = "error: %s" % e
        time.sleep(0.25)
    print("%s has %s PEs, want %d" % (pool, got, n))
    return 1


def snapshot(url):
    with urllib.request.urlopen(url + "/handlespace", timeout=5) as r:
        return json.load(r)


def owned(url, pool, peid, secs):
    end, last = time.time() + secs, "absent"
    while time.time() < end:
        try:
            for p in snapshot(url).get("pools") or []:
                for e in (p.get("elements") or []) if p["handle"] == pool else []:
                    if int(e["id"], 16) == int(peid, 16):
                        last = "home %s owned %s" % (e["home"], e["owned"])
                        if e["owned"]:
                            return 0
        except OSError as e:
            last = "error: %s" % e
        time.sleep(0.25)
    print("PE %s of %s: %s" % (peid, pool, last))
    return 1


def sums(entries):
    return {int(c["owner"], 16): int(c["checksum"], 16) for c in entries or [] if c.get("elements", 1)}


def checksums(url, ctljson):
    ours = sums(snapshot(url).get("checksums"))
    with open(ctljson) as f:
        theirs = sums(json.load(f).get("checksums"))
    fmt = lambda d: " ".join("%08x:%04x" % kv for kv in sorted(d.items()))
    print("ours %s | theirs %s" % (fmt(ours), fmt(theirs)))
    return 0 if ours == theirs and ours else 1


def hsdump_home(path, peid):
    want = "$%08x" % int(peid, 16)
    lines = open(path, errors="replace").read().splitlines()
    for i, l in enumerate(lines):
        if ("idx:" in l and want in l.lower()) and i + 1 < len(lines):
            for w in lines[i + 1].split():
                if w.startswith("home=$"):
                    print(w[6:].lower())
                    return 0
    print("absent")
    return 1


def hsdump_sum(path):
    for l in open(path, errors="replace"):
        if "Checksums: Handlespace=$" in l:
            print(l.split("Handlespace=$")[1].split(",")[0].strip().lower())
            return 0
    print("none")
    return 1


def echo_server(host, port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(64)

    def serve(c):
        with c:
            while True:
                b = c.recv(65536)
                if not b:
                    return
                c.sendall(b)

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def client(host, port, n, gap):
    bad = 0
    for i in range(n):
        msg = b"interop request %d\n" % i
        try:
            with socket.create_connection((host, port), timeout=5) as c:
                c.settimeout(5)
                c.sendall(msg)
                got = b""
                while not got.endswith(b"\n"):
                    b = c.recv(4096)
                    if not b:
                        break
                    got += b
            if got != msg:
                raise OSError("reply %r" % got)
            print("ok %d" % i, flush=True)
        except OSError as e:
            bad += 1
            print("failed %d: %s" % (i, e), flush=True)
        time.sleep(gap)
    print("client: %d of %d connections failed" % (bad, n), flush=True)
    return 1 if bad else 0


ACK = re.compile(r"Ack #(\d+) from PE \$([0-9a-fA-F]+) \(reply #(\d+)\)")


def pingpong(path, killed):
    """Checks a PingPong client's output across the failover from PE killed."""
    killed = int(killed, 16)
    acks, gaps = [], 0
    with open(path, errors="replace") as f:
        for line in f:
            m = ACK.search(line)
            if m:
                acks.append((int(m.group(1)), int(m.group(2), 16), int(m.group(3))))
            elif "Detected gap" in line:
                gaps += 1
    last = max((i for i, a in enumerate(acks) if a[1] == killed), default=None)
    if last is None:
        print("no Ack from PE %08x" % killed)
        return 1
    after = acks[last + 1:]
    if len(after) < 3:
        print("%d Acks after the last one of PE %08x, want 3 or more" % (len(after), killed))
        return 1
    if any(a[1] == killed for a in after):
        print("Acks from PE %08x after it was killed" % killed)
        return 1
    before, first = acks[last][2], after[0][2]
    if first != before + 1:
        print("PE %08x's last reply #%d, then PE %08x answered reply #%d: %s" % (
            killed, before, after[0][1], first,
            "state not restored" if first == 1 else "a gap"))
        return 1
    print("PE %08x: last reply #%d; PE %08x went on with reply #%d (%d Acks after); %d gap lines" % (
        killed, before, after[0][1], first, len(after), gaps))
    return 1 if gaps else 0


def main(a):
    if a[0] == "count":
        print(count(a[1], a[2]))
        return 0
    if a[0] == "wait":
        return wait(a[1], a[2], int(a[3]), float(a[4]))
    if a[0] == "owned":
        return owned(a[1], a[2], a[3], float(a[4]))
    if a[0] == "checksums":
        return checksums(a[1], a[2])
    if a[0] == "hsdump-home":
        return hsdump_home(a[1], a[2])
    if a[0] == "hsdump-sum":
        return hsdump_sum(a[1])
    if a[0] == "echo-server":
        echo_server(a[1], int(a[2]))
        return 0
    if a[0] == "client":
        return client(a[1], int(a[2]), int(a[3]), float(a[4]))
    if a[0] == "pingpong":
        return pingpong(a[1], a[2])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
