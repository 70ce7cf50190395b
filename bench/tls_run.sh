#!/usr/bin/env bash
# Fulmar vs Postfix over TLS on this machine, in one run: the TLS table of
# docs/benchmarks.md.
#
#   bench/tls_run.sh [--servers fulmar,postfix] [--duration S] [--conns N]
#                    [--count M] [--sessions N] [--per-conn K] [--threads T]
#                    [--repeat R] [--fs loop|tmp] [--quick] [--keep]
#                    [--out FILE]
#
# Starts both servers on loopback (Fulmar on $FULMAR_PORT, default 10036;
# a private Postfix instance on $POSTFIX_PORT, default 10035), each with
# the same self-signed certificate (ECDSA P-256) for STARTTLS, accepting
# mail for example.test and delivering it to a Maildir for
# bench@example.test, then measures with bench/tls_load (a C client built
# here with OpenSSL):
#   - TLS handshakes/s: N (default 50) connections in a loop of connect,
#     220, EHLO, STARTTLS, full TLS 1.3 handshake (no resumption), QUIT,
#     close, for S (default 10) seconds;
#   - messages/s over TLS: N (default 100) sessions, each STARTTLS then K
#     (default 10) messages of 5 KB per connection, M (default 10,000)
#     messages in all;
# and the server CPU seconds per 1,000 handshakes and per 1,000 messages.
# Prints the table; --out also writes it (markdown) to FILE and the raw
# figures to FILE.json.  Takes about 3 minutes with the defaults.
#
# Must run as root.  The system's Postfix and port 25 are never touched;
# traffic goes to 127.0.0.0/8 only.  No AUTH: Postfix needs Dovecot or
# Cyrus for SASL, so both servers take the mail as an MX would.
#
# Environment: FULMAR_BIN (default build/fulmar), FULMAR_PORT, POSTFIX_PORT,
# CC (default cc).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
FULMAR_BIN=${FULMAR_BIN:-$ROOT/build/fulmar}
FULMAR_PORT=${FULMAR_PORT:-10036}
POSTFIX_PORT=${POSTFIX_PORT:-10035}
PY=${PYTHON:-python3}
CC=${CC:-cc}
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in bench/

SERVERS="fulmar,postfix"
DURATION=10
HS_CONNS=50
COUNT=10000
SESSIONS=100
PER_CONN=10
THREADS=2
REPEAT=3
KEEP=0
OUT=""
FS=loop

usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --servers) SERVERS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --conns) HS_CONNS=$2; shift 2 ;;
        --count) COUNT=$2; shift 2 ;;
        --sessions) SESSIONS=$2; shift 2 ;;
        --per-conn) PER_CONN=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --quick) DURATION=3; COUNT=2000; REPEAT=1; shift ;;
        --keep) KEEP=1; shift ;;
        --fs) FS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "tls_run.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done

BENCH_TAG=tls-bench
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

bench_check_tools
command -v "$CC" >/dev/null || die "no C compiler ($CC): apt-get install gcc"
[ -f /usr/include/openssl/ssl.h ] || die "OpenSSL headers not found: apt-get install libssl-dev"
ports=()
has_server fulmar && ports+=("$FULMAR_PORT")
has_server postfix && ports+=("$POSTFIX_PORT")
bench_check_ports "${ports[@]}"

LOOP_SIZE=${LOOP_SIZE:-4G}
bench_workdir fulmar-tls-bench

# ---------------------------------------------------------------- client
CLIENT=$W/tls_load
"$CC" -O2 -Wall -pthread -o "$CLIENT" "$BENCH/tls_load.c" -lssl -lcrypto ||
    die "cannot build bench/tls_load.c"

# ---------------------------------------------------------------- certificate
# One certificate and key for both servers: ECDSA P-256, as `fulmar tls
# selfsigned` makes them (openssl when Fulmar is not measured).
TLS_DIR=$D/tls
mkdir -p "$TLS_DIR"
chmod 0755 "$TLS_DIR"
CERT=$TLS_DIR/cert.pem
KEY=$TLS_DIR/key.pem
if has_server fulmar; then
    "$FULMAR_BIN" tls selfsigned --cert "$CERT" --key "$KEY" --hostname bench.test >&2 ||
        die "fulmar tls selfsigned failed"
else
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
        -keyout "$KEY" -out "$CERT" 2>/dev/null || die "openssl req failed"
    chmod 0600 "$KEY"
fi
log "certificate: $(openssl x509 -in "$CERT" -noout -subject | sed 's/^subject=//'), $(openssl pkey -in "$KEY" -noout -text 2>/dev/null | grep -m1 -o 'NIST CURVE: .*\|ASN1 OID: .*')"

# ---------------------------------------------------------------- servers
# run.sh's Maildir job on both, plus STARTTLS with that certificate.
start_postfix_tls() {
    start_postfix_maildir "# TLS: the same certificate as Fulmar; STARTTLS offered (Fulmar's mx
# listener offers it, and does not require it, either). TLS version and
# cipher in Received:, as Fulmar writes them. No session cache (Postfix's
# default); the load client never resumes a session anyway.
smtpd_tls_cert_file = $CERT
smtpd_tls_key_file = $KEY
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 0" \
        "tlsmgr    unix  -       -       n       1000?   1       tlsmgr"
}

start_fulmar_tls() {
    start_fulmar_maildir "tls_cert = \"$CERT\"; tls_key = \"$KEY\";"
}

# ---------------------------------------------------------------- tests
handshake_test() {
    local s=$1 dur=$2 tag=$3 out
    check_alive "$s"
    out=$("$PY" "$BENCH/tls_load.py" handshake --client "$CLIENT" \
        --pid "$(server_pid "$s")" --port "$(server_port "$s")" \
        --conns "$HS_CONNS" --threads "$THREADS" --duration "$dur")
    printf '{"kind":"%s","server":"%s","res":%s}\n' "$tag" "$s" "$out" >>"$RESULTS"
    "$PY" -c 'import json,sys; r=json.loads(sys.argv[1])
print("  %-7s handshakes %.0f/s (%d in %.0fs)  server cpu %.2fs/1000 (%.2f cores)  client cpu %.2fs/1000 (%.2f cores)  machine busy %.0f%%  %s %s %s  errors %d%s" % (sys.argv[2], r["rate"], r["handshakes"], r["elapsed_s"], r["cpu_per_1000"] or 0, r["server_cores"], r["client_cpu_per_1000"] or 0, r["client_cores"], 100 * (r["machine_busy"] or 0), r["tls_version"], r["tls_cipher"], r["tls_group"], r["errors_total"], (" " + json.dumps(r["errors"]) + " last: " + r["last_error"]) if r["errors_total"] else ""))' "$out" "$s" >&2
    check_alive "$s"
}

mail_test() {
    local s=$1 count=$2 tag=$3 out
    check_alive "$s"
    out=$("$PY" "$BENCH/tls_load.py" mail --client "$CLIENT" \
        --pid "$(server_pid "$s")" --port "$(server_port "$s")" \
        --sessions "$SESSIONS" --count "$count" --per-conn "$PER_CONN" \
        --threads "$THREADS" --maildir "$(server_maildir "$s")")
    printf '{"kind":"%s","server":"%s","res":%s}\n' "$tag" "$s" "$out" >>"$RESULTS"
    "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); d=r["deliver_s"]
print("  %-7s s=%-3d m=%-5d accepted %.1f/s (%.2fs)  delivered %s  server cpu %.2fs/1000  client cpu %.2fs/1000 (%.2f cores)  handshakes %d  errors %d%s" % (sys.argv[2], r["sessions"], r["count"], r["accept_rate"], r["accept_s"], ("%.1f/s (%.2fs)" % (r["deliver_rate"], d)) if d else "INCOMPLETE %d/%d" % (r["delivered"], r["count"]), r["cpu_per_1000"], r["client_cpu_per_1000"], r["client_cores"], r["handshakes"], r["errors_total"], (" " + json.dumps(r["errors"]) + " last: " + r["last_error"]) if r["errors_total"] else ""))' "$out" "$s" >&2
    check_alive "$s"
}

# ---------------------------------------------------------------- run
order=()
has_server fulmar && order+=(fulmar)
has_server postfix && order+=(postfix)
[ ${#order[@]} -gt 0 ] || die "no server selected"

has_server postfix && start_postfix_tls
has_server fulmar && start_fulmar_tls

# Warm-up (not counted): page cache, Postfix's smtpd pool, both TLS paths.
log "warm-up"
for s in "${order[@]}"; do handshake_test "$s" 2 warmup; mail_test "$s" 1000 warmup; done

flip=0
next_order() {
    if [ $flip = 0 ]; then run_order=("${order[@]}"); else
        run_order=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do run_order+=("${order[i]}"); done
    fi
    flip=$((1 - flip))
}
for ((r = 1; r <= REPEAT; r++)); do
    next_order
    log "TLS handshakes: $HS_CONNS connections, ${DURATION}s, round $r/$REPEAT"
    for s in "${run_order[@]}"; do handshake_test "$s" "$DURATION" handshake; done
    next_order
    log "mail over TLS: $SESSIONS sessions, $COUNT messages ($PER_CONN per connection), round $r/$REPEAT"
    for s in "${run_order[@]}"; do mail_test "$s" "$COUNT" mail; done
done

# Problems the servers logged.
bench_log_problems "${order[@]}"

# What landed in the Maildirs: every message once, bodies all alike.
for s in "${order[@]}"; do
    v=$("$PY" "$BENCH/benchlib.py" verify "$(server_maildir "$s")")
    printf '{"kind":"verify","server":"%s","res":%s}\n' "$s" "$v" >>"$RESULTS"
    log "$s Maildir: $v"
done

"$PY" "$BENCH/tls_load.py" report "$RESULTS" \
    --note "file system: $FS_NOTE; $(nproc) CPUs; $(uname -r); load client: bench/tls_load.c, $THREADS threads, OpenSSL $(openssl version | awk '{print $2}')" \
    ${OUT:+--out "$OUT"}
[ -z "$OUT" ] || cp "$RESULTS" "$OUT.json"
