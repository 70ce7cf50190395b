#!/usr/bin/env bash
# Fulmar vs Postfix on this machine, in one run: the benchmark table of
# docs/benchmarks.md.
#
#   bench/run.sh [--servers fulmar,postfix,floor] [--counts 1=N,10=N,100=N]
#                [--idle N] [--repeat R] [--fs loop|tmp] [--quick] [--keep]
#                [--out FILE]
#
# Starts both servers on loopback (Fulmar on $FULMAR_PORT, default 10026;
# a private Postfix instance on $POSTFIX_PORT, default 10025), each
# accepting mail for example.test and delivering to a Maildir for
# bench@example.test, then measures with smtp-source (5 KB messages):
# messages/s accepted and delivered at 1, 10 and 100 concurrent sessions,
# server CPU seconds per 1,000 messages, and server memory per idle
# connection with N (default 10,000) idle connections.  Prints the table;
# --out also writes it (markdown) to FILE, and the raw figures to FILE.json.
#
# The third server, floor (bench/floor_server.c, on $FLOOR_PORT, default
# 10027), does the same job with the fewest system calls and nothing
# else: its CPU per message is the least this machine charges for the
# job, the yardstick for both servers (load runs only, no idle test).
#
# Both servers write to the same file system: by default a fresh,
# journaled ext4 in a loop-mounted image (--fs loop); --fs tmp uses /tmp.
#
# Must run as root (Postfix's master and Fulmar drop privileges).  The
# system's Postfix instance and port 25 are never touched: the private
# instance has its own config and queue directories under a temp dir and
# is stopped on exit, failure included.  Traffic goes to 127.0.0.0/8 only.
#
# Environment: FULMAR_BIN (default build/fulmar), FULMAR_PORT, POSTFIX_PORT,
# FLOOR_PORT, CC (default cc).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
FULMAR_BIN=${FULMAR_BIN:-$ROOT/build/fulmar}
FULMAR_PORT=${FULMAR_PORT:-10026}
POSTFIX_PORT=${POSTFIX_PORT:-10025}
FLOOR_PORT=${FLOOR_PORT:-10027}
PY=${PYTHON:-python3}
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in bench/

SERVERS="fulmar,postfix,floor"
COUNTS="1=2000,10=5000,100=10000"
IDLE=10000
REPEAT=3
KEEP=0
OUT=""
FS=loop

usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --servers) SERVERS=$2; shift 2 ;;
        --counts) COUNTS=$2; shift 2 ;;
        --idle) IDLE=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --quick) COUNTS="1=200,10=500,100=1000"; IDLE=2000; shift ;;
        --keep) KEEP=1; shift ;;
        --fs) FS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done

BENCH_TAG=bench
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

bench_check_tools
ports=()
has_server fulmar && ports+=("$FULMAR_PORT")
has_server postfix && ports+=("$POSTFIX_PORT")
has_server floor && ports+=("$FLOOR_PORT")
bench_check_ports "${ports[@]}"

IDLE_PID=""
bench_stop_extra() {
    if [ -n "$IDLE_PID" ] && kill -0 "$IDLE_PID" 2>/dev/null; then
        kill "$IDLE_PID"; wait "$IDLE_PID" 2>/dev/null
    fi
}
bench_workdir fulmar-bench

# ---------------------------------------------------------------- idle test
idle_test() {
    local s=$1 out
    check_alive "$s"
    log "$s: $IDLE idle connections"
    # Hold until we close its stdin, measure inside the tool.
    coproc IDLE_CO { exec "$PY" "$BENCH/idle_conns.py" --port "$(server_port "$s")" \
        --conns "$IDLE" --pid "$(server_pid "$s")" --hold -1; }
    IDLE_PID=$IDLE_CO_PID
    read -r out <&"${IDLE_CO[0]}" || die "idle_conns.py failed against $s"
    local wfd=${IDLE_CO[1]}
    exec {wfd}>&-   # the holder closes its connections on end of input
    wait "$IDLE_PID" || true
    IDLE_PID=""
    printf '{"kind":"idle","server":"%s","res":%s}\n' "$s" "$out" >>"$RESULTS"
    "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print("  held %d of %d (connected without greeting %d, refused %d, failed %d, not tried %d); per held connection: PSS %.1f kB, RSS %.1f kB" % (r["held"], r["requested"], r["connected_no_greeting"], r["closed_by_server"], r["failed"], r["not_attempted"], r.get("pss_per_conn_kb", 0), r.get("rss_per_conn_kb", 0)))' "$out" >&2
    # Give the server a moment to notice the closes.
    sleep 3
    check_alive "$s"
}

# ---------------------------------------------------------------- load test
load_test() {
    local s=$1 sessions=$2 count=$3 tag=$4 md out
    check_alive "$s"
    md=$(server_maildir "$s")
    out=$("$PY" "$BENCH/benchlib.py" load --pid "$(server_pid "$s")" \
        --port "$(server_port "$s")" --sessions "$sessions" --count "$count" \
        --maildir "$md" --smtp-source "$SMTP_SOURCE")
    printf '{"kind":"%s","server":"%s","res":%s}\n' "$tag" "$s" "$out" >>"$RESULTS"
    "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); d=r["deliver_s"]
print("  %-7s s=%-3d m=%-5d accepted %.1f/s (%.2fs)  delivered %s  cpu %.2fs/1000  rc=%d%s" % (sys.argv[2], r["sessions"], r["count"], r["accept_rate"], r["accept_s"], ("%.1f/s (%.2fs)" % (r["deliver_rate"], d)) if d else "INCOMPLETE %d/%d" % (r["delivered"], r["count"]), r["cpu_per_1000"], r["smtp_source_rc"], ("  stderr: " + r["smtp_source_stderr"].strip().replace("\n", " | ")[:300]) if r["smtp_source_stderr"].strip() else ""))' "$out" "$s" >&2
    # The Maildir is not emptied between runs: deleting thousands of
    # files would leave work (inode reuse checks) for the next run.
}

# ---------------------------------------------------------------- run
order=()
has_server fulmar && order+=(fulmar)
has_server postfix && order+=(postfix)
has_server floor && order+=(floor)
[ ${#order[@]} -gt 0 ] || die "no server selected"

has_server postfix && start_postfix_maildir
has_server fulmar && start_fulmar_maildir
has_server floor && start_floor_maildir

# 1. Idle connections, on freshly started servers.
if [ "$IDLE" -gt 0 ]; then
    for s in "${order[@]}"; do [ "$s" = floor ] || idle_test "$s"; done
fi

# 2. Warm-up (not counted): page cache, Postfix's process pool.
for s in "${order[@]}"; do load_test "$s" 10 200 warmup; done

# 3. Throughput. The order of the servers alternates between repeats and
#    concurrency levels so that neither always runs on a warmer machine.
IFS=, read -r -a levels <<<"$COUNTS"
flip=0
for ((r = 1; r <= REPEAT; r++)); do
    for lv in "${levels[@]}"; do
        sessions=${lv%%=*}; count=${lv#*=}
        if [ $flip = 0 ]; then run_order=("${order[@]}"); else
            run_order=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do run_order+=("${order[i]}"); done
        fi
        flip=$((1 - flip))
        log "$sessions session(s), $count messages, repeat $r/$REPEAT"
        for s in "${run_order[@]}"; do load_test "$s" "$sessions" "$count" load; done
    done
done

# 4. Problems the servers logged.
bench_log_problems "${order[@]}"

# 5. What landed in the Maildirs: every message once (smtp-source's
#    Message-Ids carry its pid and a counter), bodies all alike.
for s in "${order[@]}"; do
    v=$("$PY" "$BENCH/benchlib.py" verify "$(server_maildir "$s")")
    printf '{"kind":"verify","server":"%s","res":%s}\n' "$s" "$v" >>"$RESULTS"
    log "$s Maildir: $v"
done

# 6. The table.
"$PY" "$BENCH/report.py" "$RESULTS" --note "file system: $FS_NOTE; $(nproc) CPUs; $(uname -r)" ${OUT:+--out "$OUT"}
[ -z "$OUT" ] || cp "$RESULTS" "$OUT.json"
