#!/usr/bin/env python3
"""Turns bench/run.sh's results (JSON lines) into the benchmark table.

  report.py RESULTS.jsonl [--out FILE.md]

Each figure is the median over the repeats.  The ratio column is always
Fulmar / Postfix: above 1 means Fulmar is faster for rates, and below 1
means Fulmar is cheaper for CPU and memory.  For the throughput figures it
is the median of the per-round ratios (each round runs both servers back
to back), which holds better than the ratio of medians when the machine's
speed drifts during the run.

When the run included the floor server (bench/floor_server.c: the job's
system calls and nothing else), a second table sets both servers' CPU
per message and rates against it.
"""

import argparse
import json
import statistics
import sys

SERVERS = ("fulmar", "postfix")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, digits):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or isinstance(a, str) or isinstance(b, str) \
            or b == 0:
        return "–"
    r = a / b
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def paired_ratio(loads, n, key, top="fulmar", bottom="postfix"):
    """Median over the rounds of top/bottom (Fulmar/Postfix) within each
    round: robust to the machine's speed drifting during the run. loads
    maps (server, sessions) to the runs' results, in round order."""
    f_, p_ = loads.get((top, n), []), loads.get((bottom, n), [])
    rs = [a[key] / b[key] for a, b in zip(f_, p_) if a.get(key) and b.get(key)]
    return statistics.median(rs) if rs else None


def per_level(loads, label, key, digits, lost="undelivered"):
    """One row per concurrency level: the median of key for each server,
    the paired ratio; "N <lost>" where some run never got all its mail
    through (key deliver_rate)."""
    rows = []
    for n in sorted({k[1] for k in loads}):
        vals = {}
        for s in SERVERS:
            rs = loads.get((s, n))
            if not rs:
                continue
            if key == "deliver_rate" and any(r["deliver_s"] is None for r in rs):
                vals[s] = f"{max(r['count'] - r['delivered'] for r in rs)} {lost}"
                continue
            vals[s] = med(r[key] for r in rs)
        cnt = med(r["count"] for s in SERVERS for r in loads.get((s, n), []))
        sess = "session" if n == 1 else "sessions"
        rows.append((f"{label}, {n} {sess} ({int(cnt):,} msgs)", vals,
                     digits, paired_ratio(loads, n, key)))
    return rows


def load_problems(loads, where):
    """smtp-source errors, mail that did not all arrive (where: "in the
    Maildir", ...), files left in a queue, servers that died."""
    problems = []
    for (s, n), rs in sorted(loads.items()):
        for r in rs:
            if r["smtp_source_rc"] != 0 or r["smtp_source_stderr"].strip():
                problems.append(f"{s}, {n} sessions: smtp-source exit "
                                f"{r['smtp_source_rc']}: "
                                f"{r['smtp_source_stderr'].strip()[:300]}")
            if r["delivered"] != r["count"]:
                problems.append(f"{s}, {n} sessions: {r['delivered']} of "
                                f"{r['count']} messages {where}")
            if r.get("queue_left"):
                problems.append(f"{s}, {n} sessions: {r['queue_left']} files "
                                f"left in the queue")
            if not r["server_alive"]:
                problems.append(f"{s}, {n} sessions: server died")
    return problems


def render(rows, note=None, problems=(), out=None):
    """Prints the table (and writes it to out): rows are (label,
    {server: value}, digits, ratio) with ratio True (Fulmar/Postfix of the
    two values), a number (a ratio computed elsewhere) or False (none)."""
    width = max(len(r[0]) for r in rows) if rows else 10
    lines = [f"| {'figure':<{width}} | {'Fulmar':>10} | {'Postfix':>10} "
             f"| {'Fulmar/Postfix':>14} |",
             f"|{'-' * (width + 2)}|{'-' * 11}:|{'-' * 11}:|{'-' * 15}:|"]
    for label, vals, digits, with_ratio in rows:
        f_, p_ = vals.get("fulmar"), vals.get("postfix")
        if with_ratio is True:
            rt = ratio(f_, p_)
        elif with_ratio:  # a number: the paired ratio
            rt = f"{with_ratio:.2f}" if with_ratio >= 0.1 \
                else f"{with_ratio:.2g}"
        else:
            rt = "–"
        lines.append(f"| {label:<{width}} | {fmt(f_, digits):>10} "
                     f"| {fmt(p_, digits):>10} | {rt:>14} |")
    text = "\n".join(lines) + "\n"
    if note:
        text += f"\n{note}\n"
    if problems:
        text += "\nProblems seen in this run:\n" + "".join(
            f"- {p}\n" for p in problems)
    sys.stdout.write(text)
    if out:
        with open(out, "w") as f:
            f.write(text)


def floor_table(loads, out=None):
    """The second table: the floor server's CPU per message and accepted
    rate at each level, and each server against it (paired ratios)."""
    levels = sorted(n for (s, n) in loads if s == "floor")
    if not levels:
        return
    lines = ["| figure | floor | Fulmar/floor | Postfix/floor |",
             "|---|---:|---:|---:|"]
    for key, label, digits in (("cpu_per_1000", "server CPU s per 1,000 messages", 2),
                               ("accept_rate", "messages/s accepted", 0)):
        for n in levels:
            sess = "session" if n == 1 else "sessions"
            v = med(r[key] for r in loads[("floor", n)])
            rf = paired_ratio(loads, n, key, "fulmar", "floor")
            rp = paired_ratio(loads, n, key, "postfix", "floor")
            lines.append(f"| {label}, {n} {sess} | {fmt(v, digits)} "
                         f"| {fmt(rf, 2)} | {fmt(rp, 2)} |")
    text = ("\nAgainst the floor (bench/floor_server.c: the job's system calls, "
            "nothing else):\n\n" + "\n".join(lines) + "\n")
    sys.stdout.write(text)
    if out:
        with open(out, "a") as f:
            f.write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--out")
    ap.add_argument("--note", help="a line printed under the table")
    a = ap.parse_args()

    loads = {}   # (server, sessions) -> [res]
    idle = {}    # server -> res
    verify = {}  # server -> res
    with open(a.results) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec["kind"] == "load":
                r = rec["res"]
                loads.setdefault((rec["server"], r["sessions"]), []).append(r)
            elif rec["kind"] == "idle":
                idle[rec["server"]] = rec["res"]
            elif rec["kind"] == "verify":
                verify[rec["server"]] = rec["res"]

    rows = []  # (label, {server: value}, digits, with_ratio)
    rows += per_level(loads, "messages/s accepted", "accept_rate", 0)
    rows += per_level(loads, "messages/s delivered to the Maildir", "deliver_rate", 0)
    rows += per_level(loads, "server CPU s per 1,000 messages", "cpu_per_1000", 2)
    problems = load_problems(loads, "in the Maildir")

    for s, v in sorted(verify.items()):
        if v["distinct_message_ids"] + v["without_message_id"] != v["files"]:
            problems.append(f"{s}: {v['files']} messages in the Maildir but "
                            f"{v['distinct_message_ids']} distinct "
                            f"Message-Ids (duplicate deliveries?)")
        if v["bodies_unlike_the_rest"]:
            problems.append(f"{s}: {v['bodies_unlike_the_rest']} delivered "
                            f"bodies differ from the others")

    if idle:
        req = max(r["requested"] for r in idle.values())
        rows.append((f"idle connections held (of {req:,})",
                     {s: r["held"] for s, r in idle.items()}, 0, False))
        rows.append(("memory per idle connection, kB (PSS)",
                     {s: r.get("pss_per_conn_kb") for s, r in idle.items()},
                     1, True))
        rows.append(("memory per idle connection, kB (RSS)",
                     {s: r.get("rss_per_conn_kb") for s, r in idle.items()},
                     1, True))
        rows.append(("server memory with them held, MB (PSS)",
                     {s: (r["mem_after"]["pss_kb"] / 1024.0
                          if r.get("mem_after") else None)
                      for s, r in idle.items()}, 1, True))
        rows.append(("server processes with them held",
                     {s: (r["mem_after"]["nprocs"]
                          if r.get("mem_after") else None)
                      for s, r in idle.items()}, 0, False))
        for s, r in idle.items():
            if r["held"] < r["requested"]:
                problems.append(
                    f"{s}, idle: held {r['held']} of {r['requested']} "
                    f"({r['connected_no_greeting']} connected without a "
                    f"greeting, {r['closed_by_server']} closed by the "
                    f"server, {r['failed']} connects timed out or failed, "
                    f"{r.get('not_attempted', 0)} not tried after that)")

    render(rows, a.note, problems, a.out)
    floor_table(loads, a.out)


if __name__ == "__main__":
    main()
