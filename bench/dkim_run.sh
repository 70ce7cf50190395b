#!/usr/bin/env bash
# DKIM signing, Fulmar vs Postfix + OpenDKIM on this machine, in one run:
# the "DKIM signing" tables of docs/benchmarks.md.
#
#   bench/dkim_run.sh [--servers fulmar,postfix] [--counts 10=N,100=N]
#                     [--repeat R] [--cost-seconds S] [--milter inet,unix]
#                     [--fs loop|tmp] [--quick] [--keep] [--out FILE]
#
# 1. Signing cost per message: bench/dkim_cost.c, built here against the
#    build's libfulmar_core.a and Debian's libopendkim, signs one 3 KB
#    message over and over in one thread with Fulmar's signer and with
#    libopendkim, RSA-2048 and Ed25519 (and Fulmar's dual signing), the
#    same keys, relaxed/relaxed: CPU µs per signature, signatures/s per
#    core. One signed sample of each is verified with python3-dkim.
# 2. Relaying with signing on and off: smtp-source -> server -> smtp-sink,
#    10 and 100 sessions, 5 KB messages from from@bench.test, as in
#    bench/relay_run.sh (bench/lib.sh's relay job), for Fulmar without
#    keys, with an RSA-2048 key, an Ed25519 key and both (dual), and for
#    Postfix unsigned and signing through Debian's OpenDKIM milter
#    (RSA-2048 from opendkim-genkey, smtpd_milters and non_smtpd_milters)
#    on loopback TCP (127.0.0.1:$MILTER_PORT) and, as a second variant, on
#    a UNIX-domain socket (--milter picks). Messages/s end to end and server
#    CPU s per 1,000 messages (Postfix's includes the opendkim process),
#    the ratios Fulmar/Postfix. Before each measured series a sample of
#    20 messages goes through the same server to a second sink that dumps
#    them (route check.test, smtp-sink -d), and every signature on them
#    is verified with python3-dkim against the key records (unsigned runs:
#    no signature may be there); Fulmar's `event=signed` log lines are
#    counted for every measured run. A failed check stops the run.
# Prints the tables; --out also writes them (markdown) to FILE and the raw
# figures to FILE.json. About 7 minutes with the defaults.
#
# Must run as root. Installs opendkim, opendkim-tools, libopendkim-dev,
# python3-dkim and python3-nacl when missing (the packages' own opendkim
# service is never used). Uses the build in $FULMAR_BUILD (build/;
# RelWithDebInfo, built when missing) for both fulmar and
# libfulmar_core.a. The system's Postfix and port 25 are never touched; no
# DNS query is made (keys are checked against their records directly;
# opendkim only signs); all traffic goes to 127.0.0.1.
#
# Environment: FULMAR_BUILD (default build), FULMAR_BIN (FULMAR_BUILD/fulmar),
# FULMAR_PORT (10056), POSTFIX_PORT (10055), SINK_PORT (10057),
# CHECK_PORT (10058), MILTER_PORT (10059), CC (cc).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
FULMAR_BUILD=${FULMAR_BUILD:-$ROOT/build}
FULMAR_BIN=${FULMAR_BIN:-$FULMAR_BUILD/fulmar}
FULMAR_PORT=${FULMAR_PORT:-10056}
POSTFIX_PORT=${POSTFIX_PORT:-10055}
SINK_PORT=${SINK_PORT:-10057}
CHECK_PORT=${CHECK_PORT:-10058}
MILTER_PORT=${MILTER_PORT:-10059}
MILTERS=inet,unix
CC=${CC:-cc}
PY=${PYTHON:-python3}
DEB_PY=/usr/bin/python3   # Debian's, with python3-dkim
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in bench/

SERVERS="fulmar,postfix"
COUNTS="10=2000,100=4000"
REPEAT=3
COST_SECONDS=1
WARMUP=300
CHECK_COUNT=20
KEEP=0
OUT=""
FS=loop

usage() { sed -n '2,46p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --servers) SERVERS=$2; shift 2 ;;
        --counts) COUNTS=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --cost-seconds) COST_SECONDS=$2; shift 2 ;;
        --milter) MILTERS=$2; shift 2 ;;
        --quick) COUNTS="10=300,100=600"; REPEAT=1; COST_SECONDS=0.3; WARMUP=100; CHECK_COUNT=10; shift ;;
        --keep) KEEP=1; shift ;;
        --fs) FS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "dkim_run.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done

BENCH_TAG=dkim-bench
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root"
bench_need_packages opendkim opendkim-tools libopendkim-dev python3-dkim python3-nacl
# The cost benchmark and the keys need the build even with --servers postfix.
bench_build_fulmar "$FULMAR_BUILD"
[ -f "$FULMAR_BUILD/libfulmar_core.a" ] || die "no $FULMAR_BUILD/libfulmar_core.a"
bench_check_tools
ports=("$SINK_PORT" "$CHECK_PORT")
has_server fulmar && ports+=("$FULMAR_PORT")
has_server postfix && ports+=("$POSTFIX_PORT" "$MILTER_PORT")
bench_check_ports "${ports[@]}"

LOOP_SIZE=${LOOP_SIZE:-4G}
bench_workdir fulmar-dkim-bench

# ---------------------------------------------------------------- keys
# Fulmar's: RSA-2048 (selector frsa) and Ed25519 (fed) from `fulmar dkim
# keygen`, owned by its user; OpenDKIM's: RSA-2048 (pf) from
# opendkim-genkey, owned by opendkim. All for bench.test, the domain of
# smtp-source's sender (from@bench.test, also its From: field). RECORDS
# holds their TXT records for the verifier.
KEYS=$D/dkim
mkdir -p "$KEYS"
"$FULMAR_BIN" dkim keygen bench.test frsa --dir "$KEYS" >/dev/null
"$FULMAR_BIN" dkim keygen bench.test fed --ed25519 --dir "$KEYS" >/dev/null
chown -R fulmar: "$KEYS"
chmod 0755 "$KEYS"
"$FULMAR_BIN" dkim record bench.test frsa --dir "$KEYS" >"$W/frsa.zone"
"$FULMAR_BIN" dkim record bench.test fed --dir "$KEYS" >"$W/fed.zone"
# opendkim refuses a configuration or key file below a directory others
# may write to (/tmp): its files live in a directory of their own in /run.
OD=$(mktemp -d /run/fulmar-dkim-bench.XXXXXX)
bench_stop_extra() { cp -p "$OD"/opendkim-*.conf "$W/" 2>/dev/null; rm -rf "$OD"; }
opendkim-genkey -b 2048 -d bench.test -s pf -D "$OD"
chown -R opendkim: "$OD"
chmod 0750 "$OD"
RECORDS=$W/records.json
"$DEB_PY" "$BENCH/dkim_report.py" records "$RECORDS" \
    "frsa._domainkey.bench.test=$W/frsa.zone" "fed._domainkey.bench.test=$W/fed.zone" \
    "pf._domainkey.bench.test=$OD/pf.txt"

# check_files LABEL EXPECT FILE...: verifies the signatures; a record in
# RESULTS; stops the run when a message is not signed as expected.
check_files() {
    local label=$1 expect=$2 out rc=0
    shift 2
    out=$("$DEB_PY" "$BENCH/dkim_report.py" check --records "$RECORDS" --expect "$expect" "$@") || rc=$?
    printf '{"kind":"check","label":"%s","res":%s}\n' "$label" "$out" >>"$RESULTS"
    log "  check $label: $out"
    [ "$rc" = 0 ] || die "$label: the messages are not signed as expected (${expect:-no signature}); see above"
}

# ---------------------------------------------------------------- 1. cost
FULMAR_SRC=$(sed -n 's/^fulmar_SOURCE_DIR:STATIC=//p' "$FULMAR_BUILD/CMakeCache.txt")
[ -d "$FULMAR_SRC/src" ] || die "no source directory in $FULMAR_BUILD/CMakeCache.txt"
DEPS=(opendkim libevent libevent_pthreads libconfig zlib libcares openssl)
if pkg-config --exists libxcrypt; then DEPS+=(libxcrypt); fi
# shellcheck disable=SC2046
"$CC" -O2 -std=c17 -Wall -D_GNU_SOURCE -DWITH_OPENDKIM -I"$FULMAR_SRC/src" \
    $(pkg-config --cflags opendkim) -o "$W/dkim_cost" "$BENCH/dkim_cost.c" \
    "$FULMAR_BUILD/libfulmar_core.a" $(pkg-config --libs "${DEPS[@]}") -lcrypt -pthread ||
    die "cannot build bench/dkim_cost.c"
log "signing cost: $COST_SECONDS CPU s per case and round, 3 rounds"
mkdir -p "$W/cost"
"$W/dkim_cost" --rsa "$KEYS/bench.test.frsa.key" --ed25519 "$KEYS/bench.test.fed.key" \
    --seconds "$COST_SECONDS" --rounds 3 --sample "$W/cost" >"$W/cost.jsonl" ||
    die "bench/dkim_cost failed"
sed 's/^/{"kind":"cost","res":/; s/$/}/' "$W/cost.jsonl" >>"$RESULTS"
"$PY" -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print("  round %d  %-8s %-15s %7.1f us/sig  %8.0f sigs/s per core  (%d in %.2f s)" % (r["round"], r["impl"], r["alg"], r["us_per_sig"], r["sigs_per_s"], r["n"], r["cpu_s"]))' "$W/cost.jsonl" >&2
check_files cost "rsa-sha256/frsa" "$W/cost/fulmar-rsa-sha256.eml" "$W/cost/opendkim-rsa-sha256.eml"
check_files cost "ed25519-sha256/fed" "$W/cost/fulmar-ed25519-sha256.eml" "$W/cost/opendkim-ed25519-sha256.eml"
check_files cost "rsa-sha256/frsa,ed25519-sha256/fed" "$W/cost/fulmar-dual.eml"
# OpenSSL's own speed: the floor under both.
openssl speed -seconds 1 -mr rsa2048 ed25519 2>/dev/null |
    awk -F: '/^\+F2:/ { r = $4 } /^\+F6:/ { e = $5 }
        END { printf "{\"kind\":\"openssl_speed\",\"res\":{\"rsa2048_sign_per_s\":%s,\"ed25519_sign_per_s\":%s}}\n", r, e }' >>"$RESULTS"

# ---------------------------------------------------------------- 2. relay
order=()
has_server fulmar && order+=(fulmar)
has_server postfix && order+=(postfix)
[ ${#order[@]} -gt 0 ] || die "no server selected"

# Bulk mail (relay.test) to the counting sink; the samples (check.test)
# to a second sink that dumps every message into DUMP.
RELAY_ROUTES=("relay.test=$SINK_PORT" "check.test=$CHECK_PORT")
start_sink
DUMP=$W/dump
mkdir -p "$DUMP"
chown nobody "$DUMP"
"$SMTP_SINK" -u nobody -d "$DUMP/msg." "127.0.0.1:$CHECK_PORT" 64 2>"$W/check-sink.err" &
bench_track $!
wait_greeting "$CHECK_PORT" || { cat "$W/check-sink.err" >&2; die "the dumping smtp-sink does not answer"; }

# OpenDKIM as a milter in the foreground, signing mail of bench.test from
# 127.0.0.1 (its InternalHosts) with the pf key: one opendkim on loopback
# TCP (variant postfix/opendkim), one on a UNIX-domain socket
# (postfix/opendkim-unix), as --milter says.
declare -A OPENDKIM_PID=() PF_MILTER=()
start_opendkim() {
    local kind=$1 sock conf=$OD/opendkim-$1.conf
    case $kind in
        inet) sock="inet:$MILTER_PORT@127.0.0.1"; PF_MILTER[$kind]="inet:127.0.0.1:$MILTER_PORT" ;;
        unix)
            # The socket's own directory, which Postfix's smtpd may enter.
            mkdir -p "$OD/sock"
            chown opendkim: "$OD/sock"
            chmod 0755 "$OD" "$OD/sock"
            sock="local:$OD/sock/milter"; PF_MILTER[$kind]="unix:$OD/sock/milter" ;;
        *) die "--milter takes inet, unix or both" ;;
    esac
    cat >"$conf" <<EOF
# opendkim for bench/dkim_run.sh: signs mail of bench.test for Postfix.
Mode                s
Domain              bench.test
Selector            pf
KeyFile             $OD/pf.private
SignatureAlgorithm  rsa-sha256
Canonicalization    relaxed/relaxed
OversignHeaders     From
InternalHosts       127.0.0.1
Socket              $sock
UserID              opendkim
UMask               000
Syslog              no
# Signing makes no DNS query; should anything ask, only loopback.
Nameservers         127.0.0.1
EOF
    opendkim -f -x "$conf" >>"$W/opendkim.stdout.log" 2>>"$W/opendkim.stderr.log" &
    OPENDKIM_PID[$kind]=$!
    bench_track $!
    for _ in $(seq 50); do milter_up "$kind" && break; sleep 0.2; done
    milter_up "$kind" || { cat "$W/opendkim.stderr.log" >&2; die "opendkim does not listen on $sock"; }
    log "$(opendkim -V | head -n1) up: pid ${OPENDKIM_PID[$kind]}, $sock"
}
milter_up() { if [ "$1" = inet ]; then port_busy "$MILTER_PORT"; else [ -S "$OD/sock/milter" ]; fi; }

# postfix_variant plain|opendkim|opendkim-unix: the milter off or on, then
# a reload; the milter's CPU is counted with Postfix's.
postfix_variant() {
    local m="" kind=""
    case $1 in
        opendkim) kind=inet ;;
        opendkim-unix) kind=unix ;;
    esac
    [ -z "$kind" ] || m=${PF_MILTER[$kind]}
    postconf -c "$PF_CONF" -e "smtpd_milters = $m" "non_smtpd_milters = $m" \
        "milter_default_action = tempfail"
    postfix -c "$PF_CONF" reload >/dev/null 2>&1 || die "postfix reload failed"
    sleep 1
    wait_greeting "$POSTFIX_PORT" || die "Postfix does not answer after its reload"
    LOAD_EXTRA_PID=""
    [ -z "$kind" ] || LOAD_EXTRA_PID=${OPENDKIM_PID[$kind]}
}

# fulmar_variant none|rsa|ed25519|dual: (re)starts Fulmar with that dkim
# list; the log of the previous variant is kept as fulmar.LABEL.N.log.
FULMAR_LABEL=""
fulmar_variant() {
    local rsa ed conf=""
    rsa="{ domain = \"bench.test\"; selector = \"frsa\"; key = \"$KEYS/bench.test.frsa.key\"; }"
    ed="{ domain = \"bench.test\"; selector = \"fed\"; key = \"$KEYS/bench.test.fed.key\"; }"
    case $1 in
        none) ;;
        rsa) conf="dkim = ( $rsa );" ;;
        ed25519) conf="dkim = ( $ed );" ;;
        dual) conf="dkim = ( $rsa, $ed );" ;;
    esac
    fulmar_save_log
    stop_fulmar
    start_fulmar_relay "$conf"
    FULMAR_LABEL=fulmar/$1
    LOAD_EXTRA_PID=""
}

# fulmar_save_log: the running variant's problems, and its log kept.
FULMAR_LOGS=0
fulmar_save_log() {
    [ -n "$FULMAR_PID" ] || return 0
    local logf=$D/fulmar/fulmar.log n
    n=$(grep -Eci "$BENCH_PROBLEM_RE" "$logf" || true)
    printf '{"kind":"log","label":"%s","lines":%d,"sample":%s}\n' "$FULMAR_LABEL" "$n" \
        "$(grep -Ei "$BENCH_PROBLEM_RE" "$logf" | head -n 3 | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read().splitlines()))')" >>"$RESULTS"
    [ "$n" = 0 ] || bench_log_problems fulmar
    FULMAR_LOGS=$((FULMAR_LOGS + 1))
    cp "$logf" "$D/fulmar/fulmar.${FULMAR_LABEL#fulmar/}.$FULMAR_LOGS.log"
}

expected_sigs() {
    case $1 in
        fulmar/rsa) echo "rsa-sha256/frsa" ;;
        fulmar/ed25519) echo "ed25519-sha256/fed" ;;
        fulmar/dual) echo "rsa-sha256/frsa,ed25519-sha256/fed" ;;
        postfix/opendkim*) echo "rsa-sha256/pf" ;;
        *) echo "" ;;
    esac
}

# sample SERVER LABEL: CHECK_COUNT messages through SERVER to the dumping
# sink, then every one verified (check_files).
sample() {
    local s=$1 label=$2 n=0 err
    find "$DUMP" -type f -delete
    err=$("$SMTP_SOURCE" -s 5 -m "$CHECK_COUNT" -l 5120 -f from@bench.test -t user@check.test \
        "127.0.0.1:$(server_port "$s")" 2>&1) || die "$label: smtp-source failed: $err"
    for _ in $(seq 150); do
        n=$(find "$DUMP" -type f | wc -l)
        [ "$n" -ge "$CHECK_COUNT" ] && break
        sleep 0.2
    done
    [ "$n" -ge "$CHECK_COUNT" ] || die "$label: only $n of $CHECK_COUNT sample messages reached the check sink"
    sleep 0.5   # the last dump file is complete once the server's 250 is in
    # shellcheck disable=SC2046
    check_files "$label" "$(expected_sigs "$label")" $(find "$DUMP" -type f | sort)
}

signed_lines() { grep -c ' event=signed ' "$D/fulmar/fulmar.log" || true; }

# measure SERVER LABEL SESSIONS COUNT: one measured run; for Fulmar also
# how many messages it logged as signed meanwhile.
measure() {
    local s=$1 label=$2 sessions=$3 count=$4 s0 s1
    [ "$s" = fulmar ] && s0=$(signed_lines)
    load_run "$s" "$sessions" "$count" relay "$label"
    if [ "$s" = fulmar ]; then
        s1=$(signed_lines)
        printf '{"kind":"signed","label":"%s","sessions":%d,"count":%d,"signed":%d}\n' \
            "$label" "$sessions" "$count" "$((s1 - s0))" >>"$RESULTS"
        log "  $label: $((s1 - s0)) of $count messages logged as signed"
    fi
}

# variant_series SERVER LABEL: warm-up, the signing check, the measured runs.
variant_series() {
    local s=$1 label=$2 lv
    load_run "$s" 10 "$WARMUP" warmup "$label"
    sample "$s" "$label"
    for lv in "${levels[@]}"; do measure "$s" "$label" "${lv%%=*}" "${lv#*=}"; done
}

IFS=, read -r -a milters <<<"$MILTERS"
pvariants=(plain)
if has_server postfix; then
    for m in "${milters[@]}"; do
        start_opendkim "$m"
        if [ "$m" = inet ]; then pvariants+=(opendkim); else pvariants+=(opendkim-unix); fi
    done
    start_postfix_relay ""
fi

IFS=, read -r -a levels <<<"$COUNTS"
fvariants=(none rsa ed25519 dual)
for ((r = 1; r <= REPEAT; r++)); do
    # The order of the servers and of each one's variants alternates.
    if [ $((r % 2)) = 1 ]; then ro=("${order[@]}"); fv=("${fvariants[@]}"); pv=("${pvariants[@]}")
    else
        ro=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do ro+=("${order[i]}"); done
        fv=(dual ed25519 rsa none)
        pv=(); for ((i = ${#pvariants[@]} - 1; i >= 0; i--)); do pv+=("${pvariants[i]}"); done
    fi
    log "round $r/$REPEAT: ${ro[*]}"
    for lv in "${levels[@]}"; do load_run direct "${lv%%=*}" "${lv#*=}" direct; done
    for s in "${ro[@]}"; do
        if [ "$s" = fulmar ]; then
            for v in "${fv[@]}"; do
                fulmar_variant "$v"
                variant_series fulmar "fulmar/$v"
            done
        else
            for v in "${pv[@]}"; do
                postfix_variant "$v"
                variant_series postfix "postfix/$v"
            done
        fi
    done
done

# Problems the servers logged; what the sinks got.
has_server fulmar && fulmar_save_log
has_server postfix && bench_log_problems postfix
for m in "${!OPENDKIM_PID[@]}"; do
    kill -0 "${OPENDKIM_PID[$m]}" 2>/dev/null || die "opendkim ($m) died; see $W/opendkim.stderr.log"
done
[ ! -s "$W/opendkim.stderr.log" ] || { log "opendkim's standard error:"; head -n 5 "$W/opendkim.stderr.log" >&2; }
log "smtp-sink received $("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import benchlib; print(benchlib.sink_count(sys.argv[2]))' "$BENCH" "$SINK_COUNTER") messages in all"

"$DEB_PY" "$BENCH/dkim_report.py" report "$RESULTS" \
    --note "file system: $FS_NOTE; $(nproc) CPUs; $(uname -r); Fulmar $("$FULMAR_BIN" version 2>/dev/null | head -n1); Postfix $(postconf -h mail_version); $(opendkim -V | head -n1); $(openssl version)" \
    ${OUT:+--out "$OUT"}
[ -z "$OUT" ] || cp "$RESULTS" "$OUT.json"
