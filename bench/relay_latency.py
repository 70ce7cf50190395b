#!/usr/bin/env python3
"""Relay latency at light load for bench/relay_run.sh: from the server's
250 after DATA to the message's arrival at the next hop.

  relay_latency.py run --port PORT --sink-port SPORT --count N
                       [--rcpt user@lat.test] [--gap S] [--tag T]
      Starts the sink (this script's `sink` mode, in its own process) on
      127.0.0.1:SPORT, then sends N messages to the server on
      127.0.0.1:PORT one at a time over one SMTP connection: MAIL, RCPT,
      DATA (about 5 KB, a unique Message-ID), the 250; waits until the sink
      has that Message-ID, then GAP seconds, then the next. Prints one JSON
      object: every latency in ms (arrival - 250), the misses, errors.

  relay_latency.py sink --port SPORT
      A minimal ESMTP server (PIPELINING, 8BITMIME, SIZE) that accepts
      everything; for each message it prints "MESSAGE-ID T" on standard
      output at the moment the final "." arrived (T: CLOCK_MONOTONIC
      seconds, the clock the client reads too).

The client and the sink are separate processes so that neither waits for
the other's Python interpreter lock. Only the standard library is used;
all traffic stays on 127.0.0.1.
"""

import argparse
import asyncio
import json
import os
import re
import select
import socket
import subprocess
import sys
import time

MSGID_RE = re.compile(rb"^message-id:\s*(\S+)", re.I | re.M)


# ---------------------------------------------------------------- sink

async def sink_session(reader, writer):
    def send(text):
        writer.write(text.encode("ascii"))

    send("220 lat.sink.test ESMTP\r\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb == b"EHLO":
                send("250-lat.sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                     "250 SIZE 104857600\r\n")
            elif verb == b"DATA":
                send("354 go ahead\r\n")
                await writer.drain()
                head = bytearray()
                in_head = True
                while True:
                    ln = await reader.readline()
                    if not ln:
                        return
                    if ln == b".\r\n" or ln == b".\n":
                        break
                    if in_head:
                        if ln in (b"\r\n", b"\n"):
                            in_head = False
                        elif len(head) < 65536:
                            head += ln
                t = time.monotonic()
                m = MSGID_RE.search(bytes(head))
                mid = m.group(1).decode("ascii", "replace") if m else "-"
                sys.stdout.write(f"{mid} {t:.6f}\n")
                sys.stdout.flush()
                send("250 2.0.0 Ok: queued\r\n")
            elif verb == b"QUIT":
                send("221 2.0.0 Bye\r\n")
                await writer.drain()
                break
            else:  # HELO, MAIL, RCPT, RSET, NOOP: all fine
                send("250 2.0.0 Ok\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def sink_main(port):
    srv = await asyncio.start_server(sink_session, "127.0.0.1", port,
                                     reuse_address=True, backlog=256)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    async with srv:
        await srv.serve_forever()


def cmd_sink(a):
    try:
        asyncio.run(sink_main(a.port))
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------- client

class Client:
    def __init__(self, port, timeout):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        """One complete reply: (code, text)."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            lines.append(line.rstrip(b"\r"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        return int(lines[-1][:3]), b"\n".join(lines).decode("utf-8", "replace")

    def cmd(self, line):
        self.sock.sendall(line.encode("ascii") + b"\r\n")
        return self.reply()


def message(mid, rcpt, size):
    head = (f"From: <lat@bench.test>\r\nTo: <{rcpt}>\r\nSubject: latency\r\n"
            f"Message-ID: {mid}\r\nDate: Sun, 29 Nov 2026 09:00:00 +0000\r\n\r\n")
    line = "x" * 76 + "\r\n"
    body = line * max(1, size // len(line))
    return (head + body).encode("ascii")


def cmd_run(a):
    sink = subprocess.Popen([sys.executable, os.path.abspath(__file__), "sink",
                             "--port", str(a.sink_port)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out = {"count": a.count, "lat_ms": [], "misses": 0, "errors": []}
    try:
        if sink.stdout.readline().strip() != b"ready":
            raise SystemExit("relay_latency: the sink did not start")
        sfd = sink.stdout.fileno()
        pending = b""
        arrived = {}

        def wait_arrival(mid, deadline):
            nonlocal pending
            while mid not in arrived:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                r, _, _ = select.select([sfd], [], [], left)
                if not r:
                    continue
                chunk = os.read(sfd, 65536)
                if not chunk:
                    return None
                pending += chunk
                while b"\n" in pending:
                    ln, pending = pending.split(b"\n", 1)
                    k, _, t = ln.decode().partition(" ")
                    arrived[k] = float(t)
            return arrived.pop(mid)

        c = Client(a.port, a.timeout)
        code, text = c.reply()
        if code != 220:
            raise SystemExit(f"relay_latency: greeting {text!r}")
        code, text = c.cmd("EHLO lat.client.test")
        if code != 250:
            raise SystemExit(f"relay_latency: EHLO {text!r}")
        pid = os.getpid()
        for i in range(a.count):
            mid = f"<lat.{a.tag}.{pid}.{i}@bench.test>"
            ok = True
            for line, want in ((f"MAIL FROM:<lat@bench.test>", 250),
                               (f"RCPT TO:<{a.rcpt}>", 250), ("DATA", 354)):
                code, text = c.cmd(line)
                if code != want:
                    out["errors"].append(f"{line}: {text}")
                    ok = False
                    break
            if not ok:
                c.cmd("RSET")
                continue
            c.sock.sendall(message(mid, a.rcpt, a.size) + b".\r\n")
            code, text = c.reply()
            t250 = time.monotonic()
            if code != 250:
                out["errors"].append(f"end of DATA: {text}")
                continue
            t_arr = wait_arrival(mid, t250 + a.timeout)
            if t_arr is None:
                out["misses"] += 1
            else:
                out["lat_ms"].append((t_arr - t250) * 1000.0)
            time.sleep(a.gap)
        c.cmd("QUIT")
    finally:
        sink.terminate()
        sink.wait()
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--sink-port", type=int, required=True)
    r.add_argument("--count", type=int, default=200)
    r.add_argument("--rcpt", default="user@lat.test")
    r.add_argument("--gap", type=float, default=0.01,
                   help="seconds between an arrival and the next message")
    r.add_argument("--size", type=int, default=5120)
    r.add_argument("--tag", default="x")
    r.add_argument("--timeout", type=float, default=10.0)
    r.set_defaults(fn=cmd_run)
    s = sub.add_parser("sink")
    s.add_argument("--port", type=int, required=True)
    s.set_defaults(fn=cmd_sink)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
