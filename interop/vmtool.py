#!/usr/bin/env python3
"""Helpers for scenario.sh inside the SCTP VM (python3 is the only tool there).

  vmtool.py count URL POOL             PEs of POOL in our registrar's /handlespace
  vmtool.py wait URL POOL N SECONDS    wait until POOL has N PEs (exit 1 on timeout)
  vmtool.py echo-server HOST PORT      TCP echo server (a backend for pe-agent)
  vmtool.py client HOST PORT N GAP     N short TCP request/response connections,
                                       GAP seconds apart; exit 1 if any failed
"""
import json, socket, sys, threading, time, urllib.request


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


def main(a):
    if a[0] == "count":
        print(count(a[1], a[2]))
        return 0
    if a[0] == "wait":
        return wait(a[1], a[2], int(a[3]), float(a[4]))
    if a[0] == "echo-server":
        echo_server(a[1], int(a[2]))
        return 0
    if a[0] == "client":
        return client(a[1], int(a[2]), int(a[3]), float(a[4]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
