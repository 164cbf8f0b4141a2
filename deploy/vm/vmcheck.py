#!/usr/bin/env python3
"""Helpers for guest.sh inside the SCTP VM (python3 is the only tool there).

  vmcheck.py notify SOCKET SECONDS -- CMD...   start CMD with NOTIFY_SOCKET=SOCKET (as a
                                              service manager does for Type=notify), wait
                                              for READY=1, print its variables, leave CMD
                                              running; exit 1 if it exits or times out.
                                              CMD's pid goes to SOCKET.pid; a child keeps
                                              the socket while CMD runs and appends later
                                              datagrams (RELOADING=1, STOPPING=1) to SOCKET.log
  vmcheck.py echo-server HOST PORT NAME        TCP line service answering "NAME:line"
  vmcheck.py ask HOST PORT LINE                one connection, one line; prints the answer
  vmcheck.py get URL                           prints the body (exit 1 unless 200)
"""
import os, socket, subprocess, sys, threading, time, urllib.request


def notify(path, secs, cmd):
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    os.chmod(path, 0o666)  # the daemon runs as the rserpool user
    env = dict(os.environ, NOTIFY_SOCKET=path)
    log = open(os.environ.get("LOG", "/dev/null"), "ab")
    p = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    with open(path + ".pid", "w") as f:
        f.write(str(p.pid))
    end = time.time() + secs
    while time.time() < end:
        s.settimeout(0.25)
        try:
            msg = s.recv(65536).decode()
        except socket.timeout:
            if p.poll() is not None:
                print("exited with %d before READY=1" % p.returncode)
                return 1
            continue
        lines = msg.split("\n")
        if "READY=1" in lines:
            print(" ".join(lines))
            sys.stdout.flush()
            if os.fork() == 0:
                keep(s, p.pid, path + ".log")
            return 0
    print("no READY=1 within %ds" % secs)
    return 1


def keep(s, pid, logpath):
    """Receive the daemon's later notifications while it runs."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    with open(logpath, "a") as log:
        while True:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            s.settimeout(0.25)
            try:
                log.write(" ".join(s.recv(65536).decode().split("\n")) + "\n")
                log.flush()
            except socket.timeout:
                pass
    os._exit(0)


def echo_server(host, port, name):
    ln = socket.socket()
    ln.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ln.bind((host, int(port)))
    ln.listen(64)

    def serve(c):
        f = c.makefile("rwb")
        for line in f:
            f.write(name.encode() + b":" + line)
            f.flush()
        c.close()

    while True:
        c, _ = ln.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def ask(host, port, line):
    c = socket.create_connection((host, int(port)), timeout=5)
    c.sendall(line.encode() + b"\n")
    print(c.makefile("rb").readline().decode().strip())
    return 0


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        sys.stdout.write(r.read().decode())
    return 0


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "notify":
        sys.exit(notify(a[1], int(a[2]), a[4:]))
    if a[0] == "echo-server":
        echo_server(a[1], a[2], a[3])
    if a[0] == "ask":
        sys.exit(ask(a[1], a[2], a[3]))
    if a[0] == "get":
        sys.exit(get(a[1]))
    sys.exit("unknown command " + a[0])
