#!/usr/bin/env bash
# Load and soak of Fulmar on this machine (issue 6, item 4): starts a
# Fulmar daemon on loopback and runs bench/soak.py's phases against it.
#
#   bench/soak.sh [--phases 1,2,3,4] [--soak-seconds 600] [--fs tmp|loop]
#                 [--keep] [-- SOAK_PY_ARGS...]
#
# 1. 5,000 connections held at once; 2. 1,000 new connections a second for
# 20 s; 3. 500 slowloris clients (one byte every 10 s) cut by the session
# deadline while a probe must get its 220 within 1 s; 4. a soak of mixed
# traffic (200 messages/s to a Maildir plus connection churn), VmRSS
# sampled every 10 s, slope printed and flagged. See bench/soak.py.
# Phases 1-3 share one daemon; the soak gets a freshly started one.
#
# Must run as root (Fulmar drops privileges to the fulmar user). Raises
# the descriptor limit to its hard limit for the server and the client.
# Fulmar runs with limits.connections and connections_per_ip at 20,000,
# inbound.checks off, no reverse lookups, timeouts.command 30 s and
# timeouts.session 60 s (so that slowloris sessions are bounded), and
# delivers example.test to a Maildir. Everything stays on 127.0.0.0/8.
#
# Environment: FULMAR_BIN (default build/fulmar, built RelWithDebInfo when
# missing), FULMAR_PORT (default 10027), COMMAND_TIMEOUT, SESSION_TIMEOUT.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
FULMAR_BIN=${FULMAR_BIN:-$ROOT/build/fulmar}
FULMAR_PORT=${FULMAR_PORT:-10027}
POSTFIX_PORT=0
COMMAND_TIMEOUT=${COMMAND_TIMEOUT:-30}
SESSION_TIMEOUT=${SESSION_TIMEOUT:-60}
PY=${PYTHON:-python3}
export PYTHONDONTWRITEBYTECODE=1
SERVERS=fulmar
KEEP=0
FS=tmp
PHASES=1,2,3,4
SOAK_SECONDS=600
EXTRA=()

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --phases) PHASES=$2; shift 2 ;;
        --soak-seconds) SOAK_SECONDS=$2; shift 2 ;;
        --fs) FS=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) usage 0 ;;
        *) echo "soak.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done

BENCH_TAG=soak
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root"
bench_build_fulmar "$ROOT/build"
getent passwd fulmar >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin fulmar
bench_check_ports "$FULMAR_PORT"
bench_workdir fulmar-soak   # also raises ulimit -n to the hard limit
log "descriptors: soft $(ulimit -n), hard $(ulimit -Hn); $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"

# start_fulmar_maildir's job, with bounded timeouts.
FULMAR_MAILDIR=$(fulmar_owned_maildir "$D/fulmar")
soak_fulmar() {
    start_fulmar <<EOF
dns = {
  reverse_lookups = false;
};
timeouts = {
  command = $COMMAND_TIMEOUT;
  session = $SESSION_TIMEOUT;
};
local = {
  domains = (
    { name = "example.test";
      mailboxes = ( { user = "bench"; maildir = "$FULMAR_MAILDIR"; } ); }
  );
};
EOF
}

# soak_run PHASES JSON: soak.py's PHASES against the running daemon, then
# what the server logged: the session deadlines and timeouts it enforced,
# and any warning or error (the log is kept as fulmar-PHASES.log).
rc=0
soak_run() {
    "$PY" "$BENCH/soak.py" --port "$FULMAR_PORT" --pid "$FULMAR_PID" \
        --maildir "$FULMAR_MAILDIR" --phases "$1" --soak-seconds "$SOAK_SECONDS" \
        --slow-seconds "$((SESSION_TIMEOUT + 20))" --json "$2" "${EXTRA[@]}" || rc=$?
    local logf=$D/fulmar/fulmar.log
    log "fulmar.log (phases $1): $(grep -c 'session deadline' "$logf" || true) session deadlines, $(grep -c '4.4.2 timeout' "$logf" || true) command timeouts, $(grep -c 'event=connect' "$logf" || true) connects"
    bench_log_problems fulmar
    log "Fulmar VmRSS after phases $1: $(grep VmRSS "/proc/$FULMAR_PID/status" | tr -s ' \t' ' ')"
    cp "$logf" "$W/fulmar-${1//,/}.log"
}

# The soak starts on a fresh daemon: after phase 1's 5,000 connections the
# allocator keeps their memory (VmRSS does not fall back), and a leak could
# hide in it for a while.
first=$(tr , '\n' <<<"$PHASES" | grep -vx 4 | paste -sd, - || true)
soak_fulmar
if [ -n "$first" ]; then
    soak_run "$first" "$W/soak.json"
    cp "$W/soak.json" "${SOAK_OUT:-/tmp/soak-last.json}" 2>/dev/null || true
fi
if [[ ",$PHASES," == *",4,"* ]]; then
    if [ -n "$first" ]; then
        stop_fulmar
        log "restarting Fulmar for the soak"
        soak_fulmar
    fi
    soak_run 4 "$W/soak4.json"
    cp "$W/soak4.json" "${SOAK_OUT:-/tmp/soak-last.json}.4" 2>/dev/null || true
fi
exit "$rc"
