#!/usr/bin/env python3
"""Open N idle SMTP connections to a server on loopback, read each
greeting, and hold them.

  idle_conns.py --port PORT --conns N [--pid SERVER_PID] [--hold SECONDS]

Connections are spread over several source addresses (127.0.0.2,
127.0.0.3, ...) so that one destination never runs short of ephemeral
ports, and at most --inflight connects are outstanding at once so that the
server's listen queue is not flooded.  A connection counts as "held" once
its 220 greeting has arrived; a server with a process limit (Postfix)
leaves the rest without a greeting, either waiting in its listen queue
("connected") or not accepted at all ("failed": the connect timed out).

With --pid, the server's memory is measured (sum of RSS and PSS over the
process tree rooted at that pid, from /proc/PID/smaps_rollup) before the
first connect and again once every connection is held or has given up;
the per-connection figure is the difference divided by the number held.

Prints one JSON object on stdout, then holds the connections for --hold
seconds (or until stdin is closed, with --hold -1) and closes them all.
Traffic goes only to 127.0.0.1.
"""

import argparse
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

IP_BIND_ADDRESS_NO_PORT = 24


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


class Conn:
    __slots__ = ("sock", "state", "t0", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"  # -> connected -> held | closed | failed
        self.t0 = time.monotonic()
        self.buf = b""


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--pid", type=int, help="server pid to measure")
    ap.add_argument("--sources", type=int, default=8,
                    help="number of source addresses 127.0.0.2...")
    ap.add_argument("--inflight", type=int, default=200,
                    help="connects outstanding at once")
    ap.add_argument("--connect-timeout", type=float, default=3.0)
    ap.add_argument("--give-up", type=int, default=300,
                    help="stop opening new connections after this many "
                    "connects in a row failed (the server's listen queue "
                    "is full)")
    ap.add_argument("--greet-timeout", type=float, default=10.0,
                    help="after the last connect, how long to wait for "
                    "greetings")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds between the last greeting and the "
                    "memory reading")
    ap.add_argument("--hold", type=float, default=0.0,
                    help="seconds to hold after reporting (-1: until stdin "
                    "closes)")
    a = ap.parse_args()

    if not a.host.startswith("127."):
        sys.exit("idle_conns: loopback targets only")
    limit = raise_nofile(a.conns)
    if limit < a.conns + 16:
        sys.exit(f"idle_conns: RLIMIT_NOFILE {limit} too low for {a.conns}")

    before = benchlib.tree_mem(a.pid) if a.pid else None

    sel = selectors.DefaultSelector()
    conns = []
    started = 0
    pending = 0  # connects in flight
    sources = [f"127.0.0.{2 + i}" for i in range(max(1, a.sources))]
    n_connected = n_held = n_failed = n_closed = 0
    fails_in_row = 0
    gave_up = False
    t_start = time.monotonic()
    last_connect_done = None
    last_greeting = None

    def start_one():
        nonlocal started, pending, n_failed
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass
        s.bind((sources[started % len(sources)], 0))
        c = Conn(s)
        started += 1
        err = s.connect_ex((a.host, a.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            c.state = "failed"
            n_failed += 1
            conns.append(c)
            return
        pending += 1
        sel.register(s, selectors.EVENT_WRITE, c)
        conns.append(c)

    while True:
        now = time.monotonic()
        if not gave_up and fails_in_row >= a.give_up:
            gave_up = True
        while not gave_up and started < a.conns and pending < a.inflight:
            start_one()
        done_starting = gave_up or started >= a.conns
        if done_starting and pending == 0 and last_connect_done is None:
            last_connect_done = now
        # Stop when everything is decided, or greetings stopped coming.
        waiting = n_connected - n_held - n_closed
        if done_starting and pending == 0:
            if waiting <= 0:
                break
            ref = max(last_connect_done, last_greeting or 0)
            if now - ref > a.greet_timeout:
                break
        for key, ev in sel.select(timeout=0.2):
            c = key.data
            s = c.sock
            if c.state == "connecting":
                pending -= 1
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    sel.unregister(s)
                    s.close()
                    c.state = "failed"
                    n_failed += 1
                    fails_in_row += 1
                    continue
                fails_in_row = 0
                c.state = "connected"
                n_connected += 1
                sel.modify(s, selectors.EVENT_READ, c)
            elif c.state == "connected":
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    s.close()
                    c.state = "closed"
                    n_closed += 1
                    continue
                c.buf += data
                # A greeting may be multi-line: 220-... then 220 ...
                lines = c.buf.split(b"\r\n")
                if any(ln[:4] == b"220 " for ln in lines[:-1]):
                    c.state = "held"
                    c.buf = b""
                    n_held += 1
                    last_greeting = time.monotonic()
                    sel.unregister(s)
                elif lines and any(ln[:1] in (b"4", b"5")
                                   for ln in lines[:-1]):
                    c.state = "closed"  # refused with 421/554
                    n_closed += 1
                    sel.unregister(s)
                    s.close()
        # Connect timeouts (SYN never answered: listen queue full).
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            c = key.data
            if c.state == "connecting" and now - c.t0 > a.connect_timeout:
                sel.unregister(c.sock)
                c.sock.close()
                c.state = "failed"
                n_failed += 1
                fails_in_row += 1
                pending -= 1

    t_ready = time.monotonic()
    time.sleep(a.settle)
    after = benchlib.tree_mem(a.pid) if a.pid else None
    # Count again: a server may have closed some while we settled.
    alive = 0
    for c in conns:
        if c.state == "held":
            try:
                d = c.sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK)
                if d == b"":
                    c.state = "closed"
                    continue
            except BlockingIOError:
                pass
            except OSError:
                c.state = "closed"
                continue
            alive += 1
    res = {
        "requested": a.conns,
        "held": alive,
        "greeted": n_held,
        "connected_no_greeting": n_connected - n_held - n_closed,
        "closed_by_server": n_closed + (n_held - alive),
        "failed": n_failed,
        "not_attempted": a.conns - started,
        "setup_s": round(t_ready - t_start, 3),
        "mem_before": before,
        "mem_after": after,
    }
    if before and after and alive:
        res["rss_per_conn_kb"] = (after["rss_kb"] - before["rss_kb"]) / alive
        res["pss_per_conn_kb"] = (after["pss_kb"] - before["pss_kb"]) / alive
    print(json.dumps(res), flush=True)

    if a.hold < 0:
        sys.stdin.read()
    elif a.hold > 0:
        time.sleep(a.hold)
    for c in conns:
        try:
            c.sock.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
