#!/usr/bin/env python3
"""Turns bench/relay_run.sh's results (JSON lines) into the relay table.

  relay_report.py RESULTS.jsonl [--out FILE.md] [--note TEXT]

Throughput and CPU figures are medians over the rounds; their ratio column
is the median of the per-round ratios (both servers run back to back in
each round). Latencies are percentiles of all the rounds' samples
together (nearest rank). The ceiling of the harness (smtp-source straight
into smtp-sink) is given under the table.
"""

import argparse
import json
import math

from report import load_problems, med, per_level, render

SERVERS = ("fulmar", "postfix")


def percentile(xs, p):
    """Nearest-rank percentile of xs (p in 0..100); None when empty."""
    if not xs:
        return None
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100.0 * len(xs)) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--out")
    ap.add_argument("--note", help="a line printed under the table")
    a = ap.parse_args()

    relay = {}    # (server, sessions) -> [res], in round order
    direct = {}   # sessions -> [res]
    lat = {}      # server -> [res]
    with open(a.results) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            r = rec["res"]
            if rec["kind"] == "relay":
                relay.setdefault((rec["server"], r["sessions"]), []).append(r)
            elif rec["kind"] == "direct":
                direct.setdefault(r["sessions"], []).append(r)
            elif rec["kind"] == "latency":
                lat.setdefault(rec["server"], []).append(r)

    rows = []
    rows += per_level(relay, "messages/s end to end (sent → at the sink)",
                      "deliver_rate", 0, lost="lost")
    rows += per_level(relay, "messages/s accepted (250s to smtp-source)", "accept_rate", 0)
    rows += per_level(relay, "server CPU s per 1,000 messages", "cpu_per_1000", 2)
    problems = load_problems(relay, "reached the sink")

    if lat:
        samples = {s: [x for r in rs for x in r["lat_ms"]] for s, rs in lat.items()}
        n = max(len(v) for v in samples.values())
        for p in (50, 99):
            rows.append((f"latency 250 → at the next hop, p{p}, ms "
                         f"(light load, {n} msgs)",
                         {s: percentile(v, p) for s, v in samples.items()}, 2, True))
        rows.append(("latency, max, ms",
                     {s: (max(v) if v else None) for s, v in samples.items()}, 2, True))
        for s, rs in lat.items():
            miss = sum(r["misses"] for r in rs)
            errs = [e for r in rs for e in r["errors"]]
            if miss or errs:
                problems.append(f"{s}, latency: {miss} messages never arrived, "
                                f"{len(errs)} errors {errs[:3]}")

    note = []
    if direct:
        note.append("Ceiling of the harness, smtp-source straight into smtp-sink: " +
                    ", ".join(f"{med(r['deliver_rate'] for r in rs):,.0f} messages/s "
                              f"at {n} sessions" for n, rs in sorted(direct.items())) + ".")
    if a.note:
        note.append(a.note)
    render(rows, "\n".join(note) or None, problems, a.out)


if __name__ == "__main__":
    main()
