#!/usr/bin/env python3
"""Runs bench/tls_load (the C load client) for bench/tls_run.sh, measures
the server around it, and turns the results into the table.

Subcommands (handshake and mail print one JSON object on stdout):

  handshake --pid PID --port PORT --conns N --duration S [--threads T]
      N concurrent connections, each in a loop: connect, 220, EHLO,
      STARTTLS, a full TLS 1.3 handshake, QUIT, close; for S seconds.
        rate            handshakes completed per second
        cpu_per_1000    server CPU seconds (whole process tree) per 1,000
        client_cpu_s    the load client's own CPU seconds
        machine_busy    share of all CPUs busy during the run (/proc/stat)

  mail --pid PID --port PORT --sessions N --count M --per-conn K
       --maildir DIR [--threads T]
      N concurrent sessions, each: STARTTLS, EHLO, K messages of 5 KB one
      after the other, QUIT, again, until M messages got their 250.
        accept_rate     M / time until the last 250
        deliver_rate    M / time until M new files are in DIR/new
        cpu_per_1000    server CPU seconds per 1,000 messages, from just
                        before the start until all were delivered

  report RESULTS.jsonl [--out FILE.md] [--note TEXT]
      The table: medians over the rounds; the ratio column is Fulmar /
      Postfix, the median of the per-round ratios.

Server CPU is benchlib's process-tree accounting (utime+stime of every live
process of the tree, plus the children it reaped).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_times():
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts[:8]]
    idle = vals[3] + vals[4]  # idle + iowait
    total = sum(vals)
    return total - idle, total


def run_client(argv, timeout):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if p.returncode != 0:
        sys.exit("tls_load.py: client failed (rc %d): %s"
                 % (p.returncode, p.stderr.decode("utf-8", "replace")[-500:]))
    return json.loads(p.stdout)


def client_argv(a, mode):
    argv = [a.client, "--port", str(a.port), "--mode", mode,
            "--threads", str(a.threads), "--tls", a.tls]
    return argv


def cmd_handshake(a):
    argv = client_argv(a, "handshake") + [
        "--conns", str(a.conns), "--duration", str(a.duration)]
    cpu0, _ = benchlib.tree_cpu(a.pid)
    b0, t0 = cpu_times()
    r = run_client(argv, a.duration + 60)
    b1, t1 = cpu_times()
    cpu1, nprocs = benchlib.tree_cpu(a.pid)
    hs = r["handshakes"]
    r.update({
        "rate": hs / r["elapsed_s"] if r["elapsed_s"] else 0.0,
        "server_cpu_s": cpu1 - cpu0,
        "cpu_per_1000": (cpu1 - cpu0) * 1000.0 / hs if hs else None,
        "client_cpu_per_1000": r["client_cpu_s"] * 1000.0 / hs if hs else None,
        "client_cores": r["client_cpu_s"] / r["wall_s"] if r["wall_s"] else 0,
        "server_cores": (cpu1 - cpu0) / r["wall_s"] if r["wall_s"] else 0,
        "machine_busy": (b1 - b0) / (t1 - t0) if t1 > t0 else None,
        "server_alive": benchlib.read_stat(a.pid) is not None,
        "nprocs_after": nprocs,
    })
    print(json.dumps(r))


def cmd_mail(a):
    newdir = os.path.join(a.maildir, "new")
    base = benchlib.count_files(newdir)
    want = base + a.count
    argv = client_argv(a, "mail") + [
        "--conns", str(a.sessions), "--count", str(a.count),
        "--per-conn", str(a.per_conn), "--size", str(a.length),
        "--from", a.sender, "--to", a.rcpt]
    cpu0, _ = benchlib.tree_cpu(a.pid)
    b0, tt0 = cpu_times()
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    delivered_at = None
    while proc.poll() is None:
        time.sleep(a.poll)
        if delivered_at is None and benchlib.count_files(newdir) >= want:
            delivered_at = time.monotonic()
    t1 = time.monotonic()
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit("tls_load.py: client failed (rc %d): %s"
                 % (proc.returncode, err.decode("utf-8", "replace")[-500:]))
    r = json.loads(out)
    deadline = t1 + a.timeout
    n = benchlib.count_files(newdir)
    while delivered_at is None and n < want and time.monotonic() < deadline:
        time.sleep(a.poll)
        n = benchlib.count_files(newdir)
    if delivered_at is None and n >= want:
        delivered_at = time.monotonic()
    b1, tt1 = cpu_times()
    time.sleep(a.settle)
    cpu1, nprocs = benchlib.tree_cpu(a.pid)
    n = benchlib.count_files(newdir)
    # Acceptance ends with the last message's 250 (the client's own clock;
    # what follows is QUIT and close).
    acc = r.get("last_message_s") or (t1 - t0)
    r.update({
        "sessions": a.sessions,
        "accept_s": acc,
        "accept_rate": r["messages"] / acc if acc > 0 else 0.0,
        "deliver_s": (delivered_at - t0) if delivered_at else None,
        "deliver_rate": (a.count / (delivered_at - t0)) if delivered_at
        else None,
        "delivered": n - base,
        "extra": max(0, n - want),
        "cpu_s": cpu1 - cpu0,
        "cpu_per_1000": (cpu1 - cpu0) * 1000.0 / a.count,
        "client_cpu_per_1000": r["client_cpu_s"] * 1000.0 / a.count,
        "client_cores": r["client_cpu_s"] / acc if acc > 0 else 0,
        "server_cores": (cpu1 - cpu0) / acc if acc > 0 else 0,
        "machine_busy": (b1 - b0) / (tt1 - tt0) if tt1 > tt0 else None,
        "server_alive": benchlib.read_stat(a.pid) is not None,
        "nprocs_after": nprocs,
    })
    print(json.dumps(r))


# ------------------------------------------------------------------ report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, digits):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}f}"


def fmt_ratio(r):
    if r is None:
        return "–"
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def cmd_report(a):
    runs = {}    # (kind, server) -> [res]
    verify = {}
    with open(a.results) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec["kind"] in ("handshake", "mail"):
                runs.setdefault((rec["kind"], rec["server"]), []).append(
                    rec["res"])
            elif rec["kind"] == "verify":
                verify[rec["server"]] = rec["res"]

    def paired(kind, key):
        f_ = runs.get((kind, "fulmar"), [])
        p_ = runs.get((kind, "postfix"), [])
        rs = [x[key] / y[key] for x, y in zip(f_, p_)
              if x.get(key) is not None and y.get(key)]
        return statistics.median(rs) if rs else None

    def val(kind, server, key):
        return med([r.get(key) for r in runs.get((kind, server), [])])

    hs = runs.get(("handshake", "fulmar")) or runs.get(("handshake", "postfix")) or [{}]
    ml = runs.get(("mail", "fulmar")) or runs.get(("mail", "postfix")) or [{}]
    hs0, ml0 = hs[0], ml[0]
    hs_desc = "%s conns, %ss" % (hs0.get("conns", "?"), fmt(hs0.get("elapsed_s"), 0))
    ml_desc = "%s sessions, %s msgs, %s per connection" % (
        ml0.get("sessions", "?"), fmt(ml0.get("count"), 0), ml0.get("per_conn", "?"))
    rows = [
        (f"TLS handshakes/s ({hs_desc})", "handshake", "rate", 0, True),
        ("server CPU s per 1,000 handshakes", "handshake", "cpu_per_1000", 2, True),
        ("load client CPU s per 1,000 handshakes", "handshake", "client_cpu_per_1000", 2, False),
        ("cores busy: server / client / whole machine (of %d)" % os.cpu_count(),
         "handshake", None, 2, False),
        (f"messages/s accepted over TLS ({ml_desc})", "mail", "accept_rate", 0, True),
        ("messages/s delivered to the Maildir", "mail", "deliver_rate", 0, True),
        ("server CPU s per 1,000 messages", "mail", "cpu_per_1000", 2, True),
        ("load client CPU s per 1,000 messages", "mail", "client_cpu_per_1000", 2, False),
        ("cores busy: server / client / whole machine (of %d)" % os.cpu_count(),
         "mail", None, 2, False),
    ]
    servers = [s for s in ("fulmar", "postfix")
               if any(k[1] == s for k in runs)]
    out = []
    w = max(len(r[0]) for r in rows)
    head = "| " + "figure".ljust(w) + " | " + " | ".join(
        s.capitalize().rjust(16) for s in servers)
    sep = "|" + "-" * (w + 2) + "|" + "|".join(
        "-" * 17 + ":" for _ in servers)
    if len(servers) == 2:
        head += " | Fulmar/Postfix |"
        sep += "|---------------:|"
    else:
        head += " |"
        sep += "|"
    out += [head, sep]
    for label, kind, key, digits, with_ratio in rows:
        cells = []
        for s in servers:
            if key is None:
                sc = val(kind, s, "server_cores")
                cc = val(kind, s, "client_cores")
                mb = val(kind, s, "machine_busy")
                ncpu = os.cpu_count() or 1
                cells.append("%s / %s / %s" % (
                    fmt(sc, 2), fmt(cc, 2),
                    fmt(mb * ncpu if mb is not None else None, 2)))
            else:
                cells.append(fmt(val(kind, s, key), digits))
        line = "| " + label.ljust(w) + " | " + " | ".join(
            c.rjust(16) for c in cells)
        if len(servers) == 2:
            r = paired(kind, key) if (with_ratio and key) else None
            line += " | " + (fmt_ratio(r) if with_ratio else "–").rjust(14) + " |"
        else:
            line += " |"
        out.append(line)
    tls = []
    for s in servers:
        for kind in ("handshake", "mail"):
            for r in runs.get((kind, s), []):
                if r.get("tls_version"):
                    tls.append("%s: %s %s %s" % (s, r["tls_version"],
                               r["tls_cipher"], r["tls_group"]))
                    break
            else:
                continue
            break
    out.append("")
    if tls:
        out.append("negotiated: " + "; ".join(tls))
    if a.note:
        out.append(a.note)

    problems = []
    for (kind, s), rs in sorted(runs.items()):
        for i, r in enumerate(rs, 1):
            if r.get("errors_total"):
                problems.append("%s, %s round %d: %d client errors %s (last: %s)"
                                % (s, kind, i, r["errors_total"],
                                   json.dumps(r["errors"]), r["last_error"]))
            if kind == "mail" and r.get("deliver_s") is None:
                problems.append("%s, mail round %d: delivered %d of %d"
                                % (s, i, r.get("delivered", 0), r["count"]))
            if kind == "mail" and r.get("messages") != r.get("count"):
                problems.append("%s, mail round %d: %s of %s messages accepted"
                                % (s, i, r.get("messages"), r.get("count")))
            if not r.get("server_alive", True):
                problems.append("%s died during %s round %d" % (s, kind, i))
    for s, v in sorted(verify.items()):
        if v["files"] != v["distinct_message_ids"] or v["without_message_id"] \
                or v["bodies_unlike_the_rest"]:
            problems.append("%s Maildir: %s" % (s, json.dumps(v)))
    out.append("")
    if problems:
        out.append("Problems seen in this run:")
        out += ["- " + p for p in problems]
    else:
        out.append("No problems: no client errors, every message delivered "
                   "exactly once with its body intact.")
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--pid", type=int, required=True,
                       help="server pid (root of the process tree)")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--threads", type=int, default=2,
                       help="load client threads")
        p.add_argument("--tls", default="1.3", choices=("1.2", "1.3"))
        p.add_argument("--client", default=os.path.join(HERE, "tls_load"),
                       help="the C load client")

    h = sub.add_parser("handshake")
    common(h)
    h.add_argument("--conns", type=int, default=50)
    h.add_argument("--duration", type=float, default=10.0)
    h.set_defaults(fn=cmd_handshake)

    m = sub.add_parser("mail")
    common(m)
    m.add_argument("--sessions", type=int, default=100)
    m.add_argument("--count", type=int, required=True)
    m.add_argument("--per-conn", type=int, default=10)
    m.add_argument("--maildir", required=True)
    m.add_argument("--length", type=int, default=5120)
    m.add_argument("--sender", default="from@bench.test")
    m.add_argument("--rcpt", default="bench@example.test")
    m.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for delivery after acceptance")
    m.add_argument("--poll", type=float, default=0.05)
    m.add_argument("--settle", type=float, default=0.5)
    m.set_defaults(fn=cmd_mail)

    r = sub.add_parser("report")
    r.add_argument("results")
    r.add_argument("--out")
    r.add_argument("--note")
    r.set_defaults(fn=cmd_report)

    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
