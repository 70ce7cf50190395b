#!/usr/bin/env python3
"""Load and soak phases against a running Fulmar on loopback (issue 6,
item 4).  bench/soak.sh starts the daemon and runs this; run it by hand
against a daemon of your own with --port and --pid.

  soak.py --port PORT --pid PID [--maildir DIR] [--phases 1,2,3,4]
          [--conns 5000] [--rate 1000] [--rate-seconds 20]
          [--slowloris 500] [--slow-seconds 80] [--session-timeout 60]
          [--soak-seconds 600] [--soak-msgs 200] [--soak-churn 50]

Phases (each prints its figures; the last line is one JSON object with
all of them):
  1  --conns connections held open at once: each reads its 220 and stays
     idle; connects at most --inflight at a time.  How many were greeted,
     time to establish, the server's VmRSS before/after, per connection.
  2  --rate new connections per second for --rate-seconds: each reads the
     greeting, EHLO, QUIT; one in --rate-mail-every sends one message
     instead.  Achieved rate, errors, greeting latency p50/p99/max.
  3  --slowloris clients sending one byte every --slow-interval seconds
     ("EHLO slow.test\\r\\n", then NOOPs) while a probe connects every
     second and must see its 220 within --probe-limit seconds.  The
     probe's greeting times, and how many slowloris sessions the server
     cut, when (seconds after connect) and with what reply.
  4  --soak-seconds of mixed traffic: --soak-msgs small messages a second
     to --rcpt (delivered to --maildir) over connections carrying up to 5
     messages each, plus --soak-churn connect/EHLO/QUIT a second.  VmRSS
     every --sample seconds as a table, the slope (least squares, KB per
     minute, over the second half of the run, after warm-up) flagged above
     --slope-limit, and the messages delivered (files in MAILDIR/new).

Clients bind to 127.0.0.2 ... 127.0.0.(1+--sources) so that no source
address runs short of ephemeral ports.  Traffic goes to 127.0.0.1 only.
"""

import argparse
import asyncio
import errno
import json
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_conns import IP_BIND_ADDRESS_NO_PORT, raise_nofile  # noqa: E402


def vmrss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def count_new(maildir):
    if not maildir:
        return None
    try:
        with os.scandir(os.path.join(maildir, "new")) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def pct(vals, p):
    if not vals:
        return None
    v = sorted(vals)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def ms(x):
    return None if x is None else round(x * 1000.0, 1)


class SmtpError(Exception):
    pass


class Client:
    """One SMTP connection over the loop's sock_* calls (lighter than
    streams when there are thousands)."""

    _next_src = 0

    def __init__(self, a):
        self.a = a
        self.sock = None
        self.buf = b""
        self.greet_s = None

    async def connect(self):
        loop = asyncio.get_running_loop()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass
        src = f"127.0.0.{2 + Client._next_src % self.a.sources}"
        Client._next_src += 1
        self.sock = s
        try:
            s.bind((src, 0))
            await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", self.a.port)),
                                   self.a.connect_timeout)
        except BaseException:
            self.close()
            raise

    async def start(self, ehlo=None, timeout=30.0):
        """Connects, reads the 220 (else SmtpError), sends EHLO if given;
        greet_s is the time from the connect to the 220."""
        t = time.monotonic()
        await self.connect()
        code, text = await self.reply(timeout=timeout)
        self.greet_s = time.monotonic() - t
        if code != 220:
            raise SmtpError(text[:60])
        if ehlo:
            await self.cmd(b"EHLO %s\r\n" % ehlo, 250)

    async def reply(self, timeout=30.0):
        """Reads one (possibly multi-line) reply; returns (code, text)."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while True:
            while b"\r\n" in self.buf:
                line, self.buf = self.buf.split(b"\r\n", 1)
                if len(line) >= 4 and line[3:4] == b" ":
                    return int(line[:3]), line.decode("ascii", "replace")
                if len(line) < 4 or line[3:4] != b"-":
                    raise SmtpError("bad reply line: %r" % line[:80])
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), left)
            if not data:
                raise SmtpError("connection closed")
            self.buf += data

    async def send(self, data):
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def cmd(self, line, want):
        await self.send(line)
        code, text = await self.reply()
        if code != want:
            raise SmtpError(f"{line[:20]!r} -> {text[:100]}")
        return text

    async def message(self, n):
        await self.cmd(b"MAIL FROM:<soak@bench.test>\r\n", 250)
        await self.cmd(b"RCPT TO:<%s>\r\n" % self.a.rcpt.encode(), 250)
        await self.cmd(b"DATA\r\n", 354)
        body = (b"From: soak@bench.test\r\nTo: %s\r\nSubject: soak %d\r\n"
                b"Message-Id: <soak.%d.%d@bench.test>\r\n\r\n" %
                (self.a.rcpt.encode(), n, os.getpid(), n))
        body += b"Soak test message.\r\n" * 20 + b".\r\n"
        await self.cmd(body, 250)

    async def quit(self):
        try:
            await self.send(b"QUIT\r\n")
            await self.reply(timeout=5.0)
        except (OSError, SmtpError, asyncio.TimeoutError):
            pass
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def errkey(e):
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, OSError):
        return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
    return str(e)[:60]


def bump(d, k):
    d[k] = d.get(k, 0) + 1


def out(s):
    print(s, flush=True)


# ------------------------------------------------------------------ phase 1
async def phase_concurrent(a):
    out(f"== phase 1: {a.conns} concurrent connections")
    rss0 = vmrss_kb(a.pid)
    sem = asyncio.Semaphore(a.inflight)
    held, errors = [], {}

    async def one():
        c = Client(a)
        async with sem:
            try:
                await c.connect()
                code, text = await c.reply(timeout=a.greet_timeout)
                if code != 220:
                    raise SmtpError(text[:60])
                held.append(c)
            except Exception as e:  # noqa: BLE001 (counted and reported)
                bump(errors, errkey(e))
                c.close()

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(a.conns)))
    t_est = time.monotonic() - t0
    await asyncio.sleep(2.0)
    rss1 = vmrss_kb(a.pid)
    # Still open?  (a server that closed them would show EOF now)
    alive = 0
    for c in held:
        try:
            d = c.sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK)
            if d:
                alive += 1  # unexpected data, but open
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    for c in held:
        c.close()
    per = (rss1 - rss0) / alive if alive and rss0 and rss1 else None
    r = {"requested": a.conns, "greeted": len(held), "alive_after_2s": alive,
         "errors": errors, "establish_s": round(t_est, 2),
         "rss_before_kb": rss0, "rss_after_kb": rss1,
         "rss_per_conn_kb": round(per, 2) if per is not None else None}
    out(f"  greeted {len(held)}/{a.conns} in {t_est:.2f} s, "
        f"{alive} still open 2 s later; errors {errors or 'none'}")
    out(f"  VmRSS {rss0} kB before, {rss1} kB with them held: "
        f"{per if per is None else round(per, 2)} kB per connection")
    await asyncio.sleep(3.0)  # let the server see the closes
    r["rss_after_close_kb"] = vmrss_kb(a.pid)
    out(f"  VmRSS {r['rss_after_close_kb']} kB 3 s after closing them")
    return r


# ------------------------------------------------------------------ phase 2
async def phase_rate(a):
    total = int(a.rate * a.rate_seconds)
    out(f"== phase 2: {a.rate} new connections/s for {a.rate_seconds} s "
        f"({total}, one in {a.rate_mail_every} with a message)")
    lat, errors = [], {}
    done = [0, 0]  # ok, mail ok
    inflight = [0]
    skipped = [0]

    async def one(i):
        c = Client(a)
        try:
            await c.start(b"rate.bench.test", timeout=10.0)
            lat.append(c.greet_s)
            if a.rate_mail_every and i % a.rate_mail_every == 0:
                await c.message(i)
                done[1] += 1
            await c.quit()
            done[0] += 1
        except Exception as e:  # noqa: BLE001
            bump(errors, errkey(e))
            c.close()
        finally:
            inflight[0] -= 1

    tasks = []
    t0 = time.monotonic()
    i = 0
    while i < total:
        due = int((time.monotonic() - t0) * a.rate) + 1
        while i < min(due, total):
            if inflight[0] >= a.rate_inflight:
                skipped[0] += 1  # client cannot keep up: not started
            else:
                inflight[0] += 1
                tasks.append(asyncio.ensure_future(one(i)))
            i += 1
        await asyncio.sleep(0.005)
    t_launch = time.monotonic() - t0
    await asyncio.gather(*tasks)
    t_all = time.monotonic() - t0
    r = {"target_rate": a.rate, "seconds": a.rate_seconds, "started": len(tasks),
         "not_started_client_behind": skipped[0], "completed": done[0],
         "with_message": done[1], "errors": errors,
         "launch_s": round(t_launch, 2), "all_done_s": round(t_all, 2),
         "achieved_rate": round(done[0] / t_all, 1),
         "greet_p50_ms": ms(pct(lat, 50)), "greet_p99_ms": ms(pct(lat, 99)),
         "greet_max_ms": ms(max(lat) if lat else None)}
    out(f"  started {len(tasks)} in {t_launch:.2f} s, completed {done[0]} "
        f"({done[1]} with a message) by {t_all:.2f} s: {r['achieved_rate']}/s; "
        f"errors {errors or 'none'}; not started (client behind) {skipped[0]}")
    out(f"  greeting latency p50 {r['greet_p50_ms']} ms, p99 {r['greet_p99_ms']} ms, "
        f"max {r['greet_max_ms']} ms")
    return r


# ------------------------------------------------------------------ phase 3
async def phase_slowloris(a):
    out(f"== phase 3: {a.slowloris} slowloris clients (1 byte / {a.slow_interval} s) "
        f"for {a.slow_seconds} s, a probe every second")
    cuts, errors = [], {}
    replies = {}
    still_open = [0]
    stop = asyncio.Event()
    payload = b"EHLO slow.test\r\n" + b"NOOP\r\n" * 1000

    async def slow(i):
        c = Client(a)
        try:
            await c.connect()
            t = time.monotonic()
            code, _ = await c.reply(timeout=10.0)
            if code != 220:
                raise SmtpError("no greeting")
        except Exception as e:  # noqa: BLE001
            bump(errors, errkey(e))
            c.close()
            return
        loop = asyncio.get_running_loop()
        # Stagger the first byte over one interval.
        k = 0
        next_at = t + (i % 100) * a.slow_interval / 100.0
        try:
            while not stop.is_set():
                wait = next_at - time.monotonic()
                if wait > 0:
                    # Wake early if the server writes (421) or closes.
                    try:
                        data = await asyncio.wait_for(loop.sock_recv(c.sock, 4096), wait)
                    except asyncio.TimeoutError:
                        data = None
                    if data is not None:
                        if data:
                            c.buf += data
                            while b"\r\n" in c.buf:
                                line, c.buf = c.buf.split(b"\r\n", 1)
                                if line[:3] != b"250":
                                    bump(replies, line[:40].decode("ascii", "replace"))
                            continue
                        cuts.append(time.monotonic() - t)
                        return
                    continue
                await c.send(payload[k:k + 1])
                k += 1
                next_at += a.slow_interval
            still_open[0] += 1
        except OSError as e:
            cuts.append(time.monotonic() - t)
            bump(errors, "after greeting: " + errkey(e))
        finally:
            c.close()

    probes, probe_err = [], {}

    async def probe():
        c = Client(a)
        try:
            await c.start(timeout=10.0)
            probes.append(c.greet_s)
            await c.quit()
        except Exception as e:  # noqa: BLE001
            bump(probe_err, errkey(e))
            c.close()

    t0 = time.monotonic()
    slows = [asyncio.ensure_future(slow(i)) for i in range(a.slowloris)]
    ptasks = []
    while time.monotonic() - t0 < a.slow_seconds:
        ptasks.append(asyncio.ensure_future(probe()))
        await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*ptasks)
    await asyncio.gather(*slows)
    late = sum(1 for p in probes if p > a.probe_limit)
    r = {"slowloris": a.slowloris, "seconds": a.slow_seconds,
         "connect_errors": errors, "cut_by_server": len(cuts),
         "cut_after_s_min": round(min(cuts), 1) if cuts else None,
         "cut_after_s_median": round(statistics.median(cuts), 1) if cuts else None,
         "cut_after_s_max": round(max(cuts), 1) if cuts else None,
         "server_replies": replies, "still_open_at_end": still_open[0],
         "probes": len(ptasks), "probe_greeted": len(probes),
         "probe_errors": probe_err,
         "probe_p50_ms": ms(pct(probes, 50)),
         "probe_max_ms": ms(max(probes) if probes else None),
         "probes_over_limit": late}
    out(f"  probes: {len(probes)}/{len(ptasks)} greeted, p50 {r['probe_p50_ms']} ms, "
        f"max {r['probe_max_ms']} ms, {late} over {a.probe_limit} s; "
        f"errors {probe_err or 'none'}")
    out(f"  slowloris: {len(cuts)} of {a.slowloris} cut by the server, after "
        f"{r['cut_after_s_min']} / {r['cut_after_s_median']} / {r['cut_after_s_max']} s "
        f"(min / median / max); still open at the end {still_open[0]}; "
        f"replies seen {replies or 'none'}; connect errors {errors or 'none'}")
    return r


# ------------------------------------------------------------------ phase 4
async def phase_soak(a):
    out(f"== phase 4: soak {a.soak_seconds} s: {a.soak_msgs} msgs/s, "
        f"{a.soak_churn} connect/EHLO/QUIT per s; VmRSS every {a.sample} s")
    n0 = count_new(a.maildir)
    sent = [0]
    errors = {}
    churn_ok = [0]
    t0 = time.monotonic()
    end = t0 + a.soak_seconds
    slot = [0]
    samples = []

    async def mailer():
        while time.monotonic() < end:
            c = Client(a)
            try:
                await c.start(b"soak.bench.test")
                for _ in range(5):
                    k = slot[0]
                    slot[0] += 1
                    at = t0 + k / a.soak_msgs
                    if at >= end:
                        break
                    if at > time.monotonic():
                        await asyncio.sleep(at - time.monotonic())
                    await c.message(k)
                    sent[0] += 1
                await c.quit()
            except Exception as e:  # noqa: BLE001
                bump(errors, "mail: " + errkey(e))
                c.close()
                await asyncio.sleep(0.1)

    async def churner():
        k = 0
        tasks = set()

        async def one():
            c = Client(a)
            try:
                await c.start(b"churn.bench.test")
                await c.quit()
                churn_ok[0] += 1
            except Exception as e:  # noqa: BLE001
                bump(errors, "churn: " + errkey(e))
                c.close()

        while time.monotonic() < end:
            at = t0 + k / a.soak_churn
            if at > time.monotonic():
                await asyncio.sleep(at - time.monotonic())
            k += 1
            t = asyncio.ensure_future(one())
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def sampler():
        nxt = t0
        while True:
            now = time.monotonic()
            samples.append((now - t0, vmrss_kb(a.pid), sent[0], count_new(a.maildir)))
            s = samples[-1]
            out(f"  t={s[0]:6.0f}s  VmRSS {s[1]} kB  sent {s[2]}  delivered "
                f"{(s[3] - n0) if n0 is not None else '-'}")
            if now >= end:
                return
            nxt += a.sample
            await asyncio.sleep(max(0.0, min(nxt, end) - time.monotonic()))

    workers = [asyncio.ensure_future(mailer()) for _ in range(a.soak_workers)]
    ch = asyncio.ensure_future(churner())
    sp = asyncio.ensure_future(sampler())
    await asyncio.gather(*workers, ch)
    await sp
    elapsed = time.monotonic() - t0
    # Delivery may trail acceptance: wait up to 30 s for the Maildir.
    deadline = time.monotonic() + 30
    n1 = count_new(a.maildir)
    while n0 is not None and n1 - n0 < sent[0] and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        n1 = count_new(a.maildir)
    rss_end = vmrss_kb(a.pid)

    def slope(pts):
        pts = [(t, r) for t, r in pts if r is not None]
        if len(pts) < 2:
            return None
        mt = sum(t for t, _ in pts) / len(pts)
        mr = sum(r for _, r in pts) / len(pts)
        den = sum((t - mt) ** 2 for t, _ in pts)
        return sum((t - mt) * (r - mr) for t, r in pts) / den * 60.0 if den else None

    pts = [(s[0], s[1]) for s in samples]
    half = [p for p in pts if p[0] >= a.soak_seconds / 2.0]
    s_all, s_half = slope(pts), slope(half)
    flag = s_half is not None and s_half > a.slope_limit
    rss_vals = [p[1] for p in pts if p[1] is not None]
    r = {"seconds": round(elapsed, 1), "msgs_per_s_target": a.soak_msgs,
         "sent": sent[0], "sent_rate": round(sent[0] / elapsed, 1),
         "delivered": (n1 - n0) if n0 is not None else None,
         "churn_ok": churn_ok[0], "errors": errors,
         "rss_first_kb": rss_vals[0] if rss_vals else None,
         "rss_min_kb": min(rss_vals) if rss_vals else None,
         "rss_max_kb": max(rss_vals) if rss_vals else None,
         "rss_last_kb": rss_end,
         "slope_kb_per_min_all": round(s_all, 1) if s_all is not None else None,
         "slope_kb_per_min_second_half": round(s_half, 1) if s_half is not None else None,
         "slope_limit_kb_per_min": a.slope_limit, "growth_flagged": flag,
         "samples": [[round(t), rr] for t, rr in pts]}
    out(f"  sent {sent[0]} messages ({r['sent_rate']}/s), delivered "
        f"{r['delivered']}, churn connections ok {churn_ok[0]}; errors {errors or 'none'}")
    out(f"  VmRSS first {r['rss_first_kb']} kB, min {r['rss_min_kb']}, max "
        f"{r['rss_max_kb']}, last {rss_end}; slope {r['slope_kb_per_min_all']} KB/min "
        f"overall, {r['slope_kb_per_min_second_half']} KB/min over the second half"
        f" (limit {a.slope_limit}): {'GROWTH FLAGGED' if flag else 'flat'}")
    return r


async def amain(a):
    res = {}
    phases = [p.strip() for p in a.phases.split(",") if p.strip()]
    for p in phases:
        if vmrss_kb(a.pid) is None:
            out(f"!! server pid {a.pid} is gone before phase {p}")
            res["server_died_before_phase"] = p
            break
        fn = {"1": phase_concurrent, "2": phase_rate, "3": phase_slowloris,
              "4": phase_soak}[p]
        res[f"phase{p}"] = await fn(a)
        res[f"phase{p}"]["server_alive_after"] = vmrss_kb(a.pid) is not None
        await asyncio.sleep(a.pause)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="server pid (VmRSS)")
    ap.add_argument("--maildir", help="where --rcpt's mail lands (counts new/)")
    ap.add_argument("--rcpt", default="bench@example.test")
    ap.add_argument("--phases", default="1,2,3,4")
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    ap.add_argument("--pause", type=float, default=3.0, help="seconds between phases")
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--inflight", type=int, default=200)
    ap.add_argument("--greet-timeout", type=float, default=15.0)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--rate-seconds", type=float, default=20.0)
    ap.add_argument("--rate-mail-every", type=int, default=20,
                    help="one connection in N sends a message (0: none)")
    ap.add_argument("--rate-inflight", type=int, default=4000)
    ap.add_argument("--slowloris", type=int, default=500)
    ap.add_argument("--slow-interval", type=float, default=10.0)
    ap.add_argument("--slow-seconds", type=float, default=80.0)
    ap.add_argument("--probe-limit", type=float, default=1.0)
    ap.add_argument("--soak-seconds", type=float, default=600.0)
    ap.add_argument("--soak-msgs", type=float, default=200.0)
    ap.add_argument("--soak-churn", type=float, default=50.0)
    ap.add_argument("--soak-workers", type=int, default=40)
    ap.add_argument("--sample", type=float, default=10.0)
    ap.add_argument("--slope-limit", type=float, default=100.0,
                    help="KB/min of VmRSS growth (second half) that is flagged")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args()
    limit = raise_nofile(max(a.conns, a.rate_inflight, a.slowloris) + 200)
    if limit < a.conns + 100:
        sys.exit(f"soak: RLIMIT_NOFILE {limit} too low for {a.conns} connections")
    res = asyncio.run(amain(a))
    res["server_alive_at_end"] = vmrss_kb(a.pid) is not None
    js = json.dumps(res)
    if a.json:
        with open(a.json, "w") as f:
            f.write(js + "\n")
    print(js, flush=True)
    if not res["server_alive_at_end"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
