#!/usr/bin/env python3
"""Helpers for bench/run.sh and bench/relay_run.sh: process-tree accounting
from /proc and the throughput runner around smtp-source.

Subcommands (all print one JSON object on stdout):

  tree PID
      The process tree rooted at PID: its pids, CPU seconds and memory.

  verify MAILDIR
      Reads every message in MAILDIR/new: duplicates (by Message-Id) and
      bodies that differ from the others.

  load --pid PID --port PORT --sessions N --count M --maildir DIR [...]
  load ... --sink-counter FILE [--queue DIR ...]
      Runs smtp-source against 127.0.0.1:PORT and measures
        accept_s   wall time of smtp-source (all messages got their 250),
        deliver_s  time from the start until M new files are in DIR/new,
                   or (relaying) until smtp-sink's running counter, which
                   it writes to FILE (smtp-sink -c), has grown by M,
        drained_s  (with --queue) time until no file is left under the
                   server's queue directories,
        cpu_s      CPU seconds (user+system) of the server's whole process
                   tree from just before the start until all were delivered
                   (and the queue drained).

CPU accounting: for every live process of the tree, utime+stime (which
covers all of its threads) plus cutime+cstime (children it already reaped).
A Postfix child that exits during a run (smtpd after max_use, cleanup) is
reaped by master(8), so its time moves into master's cutime/cstime and is
still counted.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from fulmar_test import is_prepared_queue_file  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_stat(pid):
    """Returns (ppid, cpu_ticks incl. reaped children) or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(")") + 2:].split()
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ppid, utime + stime + cutime + cstime


def all_ppids():
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = read_stat(int(name))
        if st is not None:
            out[int(name)] = st
    return out


def tree_pids(root, table=None):
    table = table if table is not None else all_ppids()
    if root not in table:
        return [], table
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    pids, todo = [], [root]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(children.get(p, []))
    return sorted(pids), table


def tree_cpu(root):
    """CPU seconds of the tree rooted at root (see module docstring)."""
    pids, table = tree_pids(root)
    ticks = sum(table[p][1] for p in pids)
    return ticks / CLK_TCK, len(pids)


def proc_mem(pid):
    """(rss_kb, pss_kb) of one process; zeros if it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = pss = int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return rss, pss


def proc_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def tree_mem(root):
    """Sum of RSS and PSS (kB) over the tree, and the process names."""
    pids, _ = tree_pids(root)
    rss = pss = 0
    names = {}
    for p in pids:
        r, s = proc_mem(p)
        rss += r
        pss += s
        n = proc_name(p)
        names[n] = names.get(n, 0) + 1
    return {"rss_kb": rss, "pss_kb": pss, "nprocs": len(pids),
            "procs": names}


def count_files(d):
    try:
        with os.scandir(d) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


# smtp-sink -c rewrites one status line after every session, QUIT and
# message: "sess=N quit=N mesg=N\r".
SINK_MESG = re.compile(rb"mesg=(\d+)\r")


def sink_count(path):
    """Messages smtp-sink has received so far, from its -c output."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256))
            tail = f.read()
    except FileNotFoundError:
        return 0
    found = SINK_MESG.findall(tail)
    return int(found[-1]) if found else 0


def queue_files(dirs):
    """Regular files under the queue directories (hashed subfolders too),
    but for Fulmar's prepared queue files (src/queue/prepared.h), made
    ahead of need or recycled, which are not messages."""
    n = 0
    for d in dirs:
        for root, _, files in os.walk(d):
            n += sum(1 for f in files
                     if os.path.exists(os.path.join(root, f)) and
                     not is_prepared_queue_file(os.path.join(root, f)))
    return n


def find_smtp_source():
    for p in ("/usr/sbin/smtp-source", "/usr/bin/smtp-source",
              "/usr/lib/postfix/smtp-source",
              "/usr/lib/postfix/sbin/smtp-source"):
        if os.access(p, os.X_OK):
            return p
    sys.exit("benchlib: smtp-source not found (apt-get install postfix)")


def cmd_tree(a):
    cpu, n = tree_cpu(a.pid)
    out = tree_mem(a.pid)
    out["cpu_s"] = cpu
    out["pids"] = tree_pids(a.pid)[0]
    print(json.dumps(out))


def cmd_load(a):
    if a.sink_counter:
        def counted():
            return sink_count(a.sink_counter)
    else:
        newdir = os.path.join(a.maildir, "new")

        def counted():
            return count_files(newdir)
    base = counted()
    want = base + a.count
    src = a.smtp_source or find_smtp_source()
    argv = [src, "-s", str(a.sessions), "-m", str(a.count),
            "-l", str(a.length), "-f", a.sender, "-t", a.rcpt]
    if a.reuse:
        argv.insert(1, "-d")
    argv.append(f"127.0.0.1:{a.port}")

    cpu0, _ = tree_cpu(a.pid)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    # Poll the Maildir while smtp-source runs too, so that the delivery
    # time is right even when delivery keeps up with acceptance.
    delivered_at = None
    while proc.poll() is None:
        time.sleep(a.poll)
        if delivered_at is None and counted() >= want:
            delivered_at = time.monotonic()
    t1 = time.monotonic()
    out, err = proc.communicate()
    deadline = t1 + a.timeout
    n = counted()
    while delivered_at is None and n < want and time.monotonic() < deadline:
        time.sleep(a.poll)
        n = counted()
    if delivered_at is None and n >= want:
        delivered_at = time.monotonic()
    drained_at, left = None, None
    if a.queue:
        left = queue_files(a.queue)
        while left and time.monotonic() < deadline:
            time.sleep(a.poll)
            left = queue_files(a.queue)
        drained_at = time.monotonic() if left == 0 else None
    # Let the tree settle briefly so that the last delivery's bookkeeping
    # (queue file removal, log line) is in the CPU figure.
    time.sleep(a.settle)
    cpu1, nprocs = tree_cpu(a.pid)
    n = counted()
    res = {
        "sessions": a.sessions,
        "count": a.count,
        "accept_s": t1 - t0,
        "accept_rate": a.count / (t1 - t0) if t1 > t0 else 0.0,
        "deliver_s": (delivered_at - t0) if delivered_at else None,
        "deliver_rate": (a.count / (delivered_at - t0)) if delivered_at
        else None,
        "delivered": n - base,
        "extra": max(0, n - want),
        "drained_s": (drained_at - t0) if drained_at else None,
        "queue_left": left,
        "cpu_s": cpu1 - cpu0,
        "cpu_per_1000": (cpu1 - cpu0) * 1000.0 / a.count,
        "server_alive": read_stat(a.pid) is not None,
        "smtp_source_rc": proc.returncode,
        "smtp_source_stderr": err.decode("utf-8", "replace")[-2000:],
        "nprocs_after": nprocs,
    }
    print(json.dumps(res))


def cmd_verify(a):
    """Reads every message in DIR/new: counts them, their distinct
    Message-Ids (a duplicate delivery shows as fewer ids than files) and
    the bodies that are not what smtp-source sent (all bodies alike)."""
    newdir = os.path.join(a.maildir, "new")
    files = ids = 0
    seen = set()
    bodies = {}
    no_id = 0
    for ent in os.scandir(newdir):
        files += 1
        with open(ent.path, "rb") as f:
            data = f.read()
        head, sep, body = data.partition(b"\n\n")
        mid = None
        for line in head.split(b"\n"):
            if line[:11].lower() == b"message-id:":
                mid = line[11:].strip()
                break
        if mid is None:
            no_id += 1
        else:
            seen.add(mid)
        key = (len(body), hash(body))
        bodies[key] = bodies.get(key, 0) + 1
    ids = len(seen)
    common = max(bodies.values()) if bodies else 0
    print(json.dumps({"files": files, "distinct_message_ids": ids,
                      "without_message_id": no_id,
                      "body_variants": len(bodies),
                      "bodies_unlike_the_rest": files - common}))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tree")
    t.add_argument("pid", type=int)
    t.set_defaults(fn=cmd_tree)
    ld = sub.add_parser("load")
    ld.add_argument("--pid", type=int, required=True,
                    help="server pid (root of the process tree)")
    ld.add_argument("--port", type=int, required=True)
    ld.add_argument("--sessions", type=int, required=True)
    ld.add_argument("--count", type=int, required=True)
    where = ld.add_mutually_exclusive_group(required=True)
    where.add_argument("--maildir")
    where.add_argument("--sink-counter",
                       help="smtp-sink -c output: count what it received")
    ld.add_argument("--queue", action="append",
                    help="a queue directory that must end up empty "
                    "(repeat for several)")
    ld.add_argument("--length", type=int, default=5120)
    ld.add_argument("--sender", default="from@bench.test")
    ld.add_argument("--rcpt", default="bench@example.test")
    ld.add_argument("--reuse", action="store_true",
                    help="smtp-source -d: several messages per connection")
    ld.add_argument("--timeout", type=float, default=120.0,
                    help="seconds to wait for delivery after acceptance")
    ld.add_argument("--poll", type=float, default=0.05)
    ld.add_argument("--settle", type=float, default=0.5)
    ld.add_argument("--smtp-source")
    ld.set_defaults(fn=cmd_load)
    v = sub.add_parser("verify")
    v.add_argument("maildir")
    v.set_defaults(fn=cmd_verify)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
