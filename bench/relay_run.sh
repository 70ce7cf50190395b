#!/usr/bin/env bash
# Relaying, Fulmar vs Postfix on this machine, in one run: smtp-source ->
# server -> smtp-sink, the "Relay" table of docs/benchmarks.md.
#
#   bench/relay_run.sh [--servers fulmar,postfix] [--counts 10=N,100=N]
#                      [--repeat R] [--lat-count N] [--fs loop|tmp]
#                      [--quick] [--keep] [--out FILE]
#
# Starts smtp-sink (Postfix's test server, counting what it receives) on
# 127.0.0.1:$SINK_PORT, then Fulmar ($FULMAR_PORT) and a private Postfix
# instance ($POSTFIX_PORT), each taking mail from 127.0.0.1 without AUTH
# (Fulmar: server.relay_networks; Postfix: mynetworks) and relaying
# relay.test to the sink (Fulmar: a static route; Postfix: relayhost),
# both with their queue durability (fsync before the 250). Measures:
#   - messages/s end to end at 10 and 100 sessions: smtp-source sends N
#     messages of 5 KB (one connection each, as in run.sh), and the time
#     runs from its start until the sink has received all N (and the
#     server's queue is empty);
#   - server CPU seconds per 1,000 messages over that time;
#   - latency at light load: one message at a time over one connection;
#     from the server's 250 to the message's arrival at a second sink
#     (bench/relay_latency.py, route lat.test), p50 and p99;
#   - the ceiling of the harness: smtp-source straight into smtp-sink.
# Prints the table; --out also writes it (markdown) to FILE and the raw
# figures to FILE.json.
#
# Builds build/fulmar (RelWithDebInfo) when FULMAR_BIN does not exist.
# Must run as root. The system's Postfix instance and port 25 are never
# touched; no DNS query is made (Fulmar's routes are addresses and its
# resolver a dead loopback port; Postfix has smtp_dns_support_level =
# disabled and a bracketed relayhost). Traffic goes to 127.0.0.1 only.
#
# Environment: FULMAR_BIN (default build/fulmar), FULMAR_PORT (10046),
# POSTFIX_PORT (10045), SINK_PORT (10047), LAT_PORT (10048).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
FULMAR_BIN=${FULMAR_BIN:-$ROOT/build/fulmar}
FULMAR_PORT=${FULMAR_PORT:-10046}
POSTFIX_PORT=${POSTFIX_PORT:-10045}
SINK_PORT=${SINK_PORT:-10047}
LAT_PORT=${LAT_PORT:-10048}
PY=${PYTHON:-python3}
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in bench/

SERVERS="fulmar,postfix"
COUNTS="10=5000,100=10000"
REPEAT=3
LAT_COUNT=200
KEEP=0
OUT=""
FS=loop

usage() { sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --servers) SERVERS=$2; shift 2 ;;
        --counts) COUNTS=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --lat-count) LAT_COUNT=$2; shift 2 ;;
        --quick) COUNTS="10=1000,100=2000"; REPEAT=1; LAT_COUNT=50; shift ;;
        --keep) KEEP=1; shift ;;
        --fs) FS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "relay_run.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done

BENCH_TAG=relay-bench
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

if has_server fulmar; then bench_build_fulmar "$ROOT/build"; fi
bench_check_tools
ports=("$SINK_PORT" "$LAT_PORT")
has_server fulmar && ports+=("$FULMAR_PORT")
has_server postfix && ports+=("$POSTFIX_PORT")
bench_check_ports "${ports[@]}"

LOOP_SIZE=${LOOP_SIZE:-4G}
bench_workdir fulmar-relay-bench

# The sink, the two servers and the load runs are bench/lib.sh's relay job
# (start_sink, start_postfix_relay, start_fulmar_relay, load_run): bulk
# mail to relay.test goes to smtp-sink, lat.test to the latency sink.
RELAY_ROUTES=("relay.test=$SINK_PORT" "lat.test=$LAT_PORT")

# ---------------------------------------------------------------- runs
latency_run() {
    local s=$1 tag=$2 out
    check_alive "$s"
    out=$("$PY" "$BENCH/relay_latency.py" run --port "$(server_port "$s")" \
        --sink-port "$LAT_PORT" --count "$LAT_COUNT" --tag "$tag")
    printf '{"kind":"latency","server":"%s","res":%s}\n' "$s" "$out" >>"$RESULTS"
    "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); l=sorted(r["lat_ms"])
print("  %-7s %d messages one at a time: p50 %.2f ms, max %.2f ms, %d missing, %d errors" % (sys.argv[2], len(l), l[len(l)//2] if l else 0, l[-1] if l else 0, r["misses"], len(r["errors"])))' "$out" "$s" >&2
}

order=()
has_server fulmar && order+=(fulmar)
has_server postfix && order+=(postfix)
[ ${#order[@]} -gt 0 ] || die "no server selected"

start_sink
has_server postfix && start_postfix_relay ""
has_server fulmar && start_fulmar_relay ""

# 1. Warm-up (not counted): page cache, Postfix's process pool, Fulmar's
#    outbound connections.
for s in "${order[@]}"; do load_run "$s" 10 500 warmup; done

# 2. Throughput, the order of the servers alternating; each round also
#    measures the harness alone (smtp-source straight into smtp-sink).
IFS=, read -r -a levels <<<"$COUNTS"
flip=0
for ((r = 1; r <= REPEAT; r++)); do
    for lv in "${levels[@]}"; do
        sessions=${lv%%=*}; count=${lv#*=}
        if [ $flip = 0 ]; then run_order=("${order[@]}"); else
            run_order=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do run_order+=("${order[i]}"); done
        fi
        flip=$((1 - flip))
        log "$sessions sessions, $count messages, round $r/$REPEAT"
        load_run direct "$sessions" "$count" direct
        for s in "${run_order[@]}"; do load_run "$s" "$sessions" "$count" relay; done
    done
done

# 3. Latency at light load, the order alternating.
for ((r = 1; r <= REPEAT; r++)); do
    log "latency: $LAT_COUNT messages one at a time, round $r/$REPEAT"
    if [ $((r % 2)) = 1 ]; then run_order=("${order[@]}"); else
        run_order=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do run_order+=("${order[i]}"); done
    fi
    for s in "${run_order[@]}"; do latency_run "$s" "$s.$r"; done
done

# 4. Problems the servers logged; what the sink got in all.
bench_log_problems "${order[@]}"
log "smtp-sink received $("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import benchlib; print(benchlib.sink_count(sys.argv[2]))' "$BENCH" "$SINK_COUNTER") messages in all"

# 5. The table.
"$PY" "$BENCH/relay_report.py" "$RESULTS" \
    --note "file system: $FS_NOTE; $(nproc) CPUs; $(uname -r)" ${OUT:+--out "$OUT"}
[ -z "$OUT" ] || cp "$RESULTS" "$OUT.json"
