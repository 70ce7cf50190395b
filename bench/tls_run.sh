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

log() { printf '[tls-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

has_server() { [[ ",$SERVERS," == *",$1,"* ]]; }

# ---------------------------------------------------------------- checks
[ "$(id -u)" = 0 ] || die "run as root"
command -v "$PY" >/dev/null || die "python3 not found"
command -v "$CC" >/dev/null || die "no C compiler ($CC): apt-get install gcc"
[ -f /usr/include/openssl/ssl.h ] || die "OpenSSL headers not found: apt-get install libssl-dev"
if has_server postfix; then
    command -v postfix >/dev/null || die "postfix not found: apt-get install postfix"
fi
if has_server fulmar; then
    [ -x "$FULMAR_BIN" ] || die "no Fulmar binary at $FULMAR_BIN (build it: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFULMAR_TESTS=OFF && cmake --build build -j2), or use --servers postfix"
    getent passwd fulmar >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin fulmar
fi

port_busy() { ss -Htln "sport = :$1" | grep -q .; }
for s in fulmar postfix; do
    has_server "$s" || continue
    port=$([ "$s" = fulmar ] && echo "$FULMAR_PORT" || echo "$POSTFIX_PORT")
    [ "$port" != 25 ] || die "refusing to use port 25"
    ! port_busy "$port" || die "port $port is already in use"
done

ulimit -n "$(ulimit -Hn)"

W=$(mktemp -d /tmp/fulmar-tls-bench.XXXXXX)
chmod 0755 "$W"
RESULTS=$W/results.jsonl
: >"$RESULTS"
D=$W
LOOP_MOUNTED=0
FULMAR_PID=""
PF_CONF=""

cleanup() {
    local rc=$?
    set +e
    if [ -n "$FULMAR_PID" ] && kill -0 "$FULMAR_PID" 2>/dev/null; then
        kill -TERM "$FULMAR_PID"
        for _ in $(seq 50); do kill -0 "$FULMAR_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$FULMAR_PID" 2>/dev/null && kill -KILL "$FULMAR_PID"
        wait "$FULMAR_PID" 2>/dev/null
    fi
    if [ -n "$PF_CONF" ] && [ -f "$D/postfix/spool/pid/master.pid" ]; then
        local mpid
        mpid=$(tr -dc 0-9 <"$D/postfix/spool/pid/master.pid" 2>/dev/null)
        postfix -c "$PF_CONF" stop >/dev/null 2>&1 || postfix -c "$PF_CONF" abort >/dev/null 2>&1
        if [ -n "$mpid" ]; then
            for _ in $(seq 50); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.2; done
        fi
    fi
    if [ "$LOOP_MOUNTED" = 1 ]; then
        if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
            mkdir -p "$W/logs"
            cp -p "$D/fulmar/fulmar.log" "$D/fulmar/stderr.log" "$D/fulmar/fulmar.conf" \
                "$D/postfix/maillog" "$D/postfix/etc/main.cf" "$D/postfix/etc/master.cf" \
                "$W/logs/" 2>/dev/null
        fi
        if umount "$D" 2>/dev/null || { sleep 2; umount "$D"; }; then
            [ "$KEEP" = 1 ] || rm -f "$W/fs.img"
        else
            log "could not unmount $D: left mounted"
            KEEP=1
        fi
    fi
    if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
        log "work directory kept: $W"
    else
        rm -rf "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The file system both servers write to: as in bench/run.sh, a fresh
# journaled ext4 in a loop-mounted image (--fs loop), or /tmp (--fs tmp).
case $FS in
    loop)
        truncate -s "${LOOP_SIZE:-4G}" "$W/fs.img"
        mkfs.ext4 -q -F "$W/fs.img"
        D=$W/fs
        mkdir -p "$D"
        if mount -o loop "$W/fs.img" "$D"; then
            LOOP_MOUNTED=1
            chmod 0755 "$D"
        else
            log "WARNING: cannot loop-mount an ext4 image; using /tmp instead"
            FS=tmp; D=$W; rm -f "$W/fs.img"
        fi
        ;;
    tmp) ;;
    *) die "--fs must be loop or tmp" ;;
esac
FS_NOTE="$FS: $(findmnt -n -o FSTYPE,OPTIONS --target "$D" | tr -s " " | cut -c1-60)"
if [ "$(findmnt -n -o FSTYPE --target "$D")" = ext4 ]; then
    dev=$(findmnt -n -o SOURCE --target "$D")
    jbd=(/proc/fs/jbd2/"$(basename "$(readlink -f "$dev")")"-*)
    if [ -e "${jbd[0]}" ]; then
        FS_NOTE="$FS_NOTE, journaled"
    else
        FS_NOTE="$FS_NOTE, no journal"
    fi
fi
log "file system under test: $FS_NOTE"

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

# Waits until 127.0.0.1:$1 sends a 220 greeting.
wait_greeting() {
    local port=$1 i
    for i in $(seq 100); do
        if "$PY" - "$port" <<'EOF' 2>/dev/null; then return 0; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
ok = s.recv(512).startswith(b"220")
s.sendall(b"QUIT\r\n"); s.close()
sys.exit(0 if ok else 1)
EOF
        sleep 0.2
    done
    return 1
}

# ---------------------------------------------------------------- Postfix
PF_UID=5000
PF_PID=""
PF_MAILDIR=$D/postfix/vmail/example.test/bench
start_postfix() {
    local d=$D/postfix
    PF_CONF=$d/etc
    mkdir -p "$PF_CONF" "$d/spool" "$d/data" "$d/vmail/example.test"
    chmod 0755 "$d" "$PF_CONF" "$d/vmail"
    chown postfix "$d/data"
    chown -R "$PF_UID:$PF_UID" "$d/vmail/example.test"
    printf 'bench@example.test example.test/bench/\n' >"$PF_CONF/vmailbox"
    cat >"$PF_CONF/main.cf" <<EOF
# Private Postfix instance for bench/tls_run.sh: bench/run.sh's (virtual
# Maildir delivery for example.test, otherwise Postfix's defaults, fsync
# durability included) plus STARTTLS with the benchmark's certificate.
compatibility_level = 3.6
queue_directory = $d/spool
data_directory = $d/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination
smtpd_peername_lookup = no
biff = no
virtual_mailbox_domains = example.test
virtual_mailbox_base = $d/vmail
virtual_mailbox_maps = texthash:$PF_CONF/vmailbox
virtual_uid_maps = static:$PF_UID
virtual_gid_maps = static:$PF_UID
maillog_file = $d/maillog
maillog_file_prefixes = $d
# TLS: the same certificate as Fulmar; STARTTLS offered (Fulmar's mx
# listener offers it, and does not require it, either). TLS version and
# cipher in Received:, as Fulmar writes them. No session cache (Postfix's
# default); the load client never resumes a session anyway.
smtpd_tls_cert_file = $CERT
smtpd_tls_key_file = $KEY
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 0
EOF
    cat >"$PF_CONF/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$POSTFIX_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    postfix -c "$PF_CONF" check 2>&1 | sed 's/^/  postfix check: /' >&2 || true
    postfix -c "$PF_CONF" start >"$d/start.log" 2>&1 || { cat "$d/start.log" >&2; die "postfix start failed"; }
    wait_greeting "$POSTFIX_PORT" || die "Postfix does not answer on port $POSTFIX_PORT"
    PF_PID=$(tr -dc 0-9 <"$d/spool/pid/master.pid")
    [ -n "$PF_PID" ] || die "no Postfix master pid"
    tr '\0' '\n' <"/proc/$PF_PID/environ" | grep -qx "MAIL_CONFIG=$PF_CONF" ||
        die "Postfix master $PF_PID does not run from $PF_CONF"
    log "Postfix $(postconf -c "$PF_CONF" -h mail_version) up: master pid $PF_PID, 127.0.0.1:$POSTFIX_PORT (STARTTLS)"
}

# ---------------------------------------------------------------- Fulmar
FULMAR_MAILDIR=$D/fulmar/mail/example.test/bench
start_fulmar() {
    local d=$D/fulmar
    mkdir -p "$d/state" "$FULMAR_MAILDIR"/{cur,new,tmp}
    chmod 0755 "$d" "$d/state" "$d/mail"
    : >"$d/fulmar.log"
    chown -R fulmar: "$d/state" "$d/mail" "$d/fulmar.log"
    cat >"$d/fulmar.conf" <<EOF
# Fulmar for bench/tls_run.sh: bench/run.sh's configuration with STARTTLS
# on the mx listener (the same certificate as the Postfix instance).
server = {
  hostname = "fulmar.bench.test";
  user = "fulmar";
  state_dir = "$d/state";
  log_file = "$d/fulmar.log";
  log_level = "info";
};
listeners = (
  { address = "127.0.0.1"; port = $FULMAR_PORT; role = "mx";
    tls_cert = "$CERT"; tls_key = "$KEY"; }
);
limits = {
  connections = 20000;
  connections_per_ip = 20000;
};
dns = {
  reverse_lookups = false;
};
local = {
  domains = (
    {
      name = "example.test";
      mailboxes = (
        { user = "bench"; maildir = "$FULMAR_MAILDIR"; }
      );
    }
  );
};
EOF
    "$FULMAR_BIN" check-config --config "$d/fulmar.conf" >&2 || die "fulmar check-config failed"
    (cd "$d" && exec "$FULMAR_BIN" serve --config "$d/fulmar.conf") 2>>"$d/stderr.log" &
    FULMAR_PID=$!
    if ! wait_greeting "$FULMAR_PORT"; then
        tail -n 20 "$d/stderr.log" "$d/fulmar.log" >&2 || true
        die "Fulmar does not answer on port $FULMAR_PORT"
    fi
    log "Fulmar $("$FULMAR_BIN" version 2>/dev/null | head -n1) up: pid $FULMAR_PID, 127.0.0.1:$FULMAR_PORT (STARTTLS)"
}

server_pid() { [ "$1" = fulmar ] && echo "$FULMAR_PID" || echo "$PF_PID"; }
server_port() { [ "$1" = fulmar ] && echo "$FULMAR_PORT" || echo "$POSTFIX_PORT"; }
server_maildir() { [ "$1" = fulmar ] && echo "$FULMAR_MAILDIR" || echo "$PF_MAILDIR"; }

check_alive() {
    local s=$1 pid
    pid=$(server_pid "$s")
    kill -0 "$pid" 2>/dev/null || die "$s (pid $pid) died; see $D/$s"
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

has_server postfix && start_postfix
has_server fulmar && start_fulmar

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
for s in "${order[@]}"; do
    check_alive "$s"
    case $s in
        fulmar) f=("$D/fulmar/fulmar.log" "$D/fulmar/stderr.log") ;;
        postfix) f=("$D/postfix/maillog") ;;
    esac
    n=$(cat "${f[@]}" 2>/dev/null | grep -Eci ' (warning|error) event=|warning:|fatal:|panic:|error:|AddressSanitizer|runtime error' || true)
    log "$s: $n warning/error log lines"
    if [ "$n" -gt 0 ]; then
        cat "${f[@]}" | grep -Ei ' (warning|error) event=|warning:|fatal:|panic:|error:|AddressSanitizer|runtime error' |
            sed -E 's/[0-9A-F]{8,}/ID/g; s/sid=[0-9]+/sid=N/; s/^[0-9T:.-]+Z? //; s/^[A-Z][a-z]{2} [ 0-9]{2} [0-9:]{8} //' |
            cut -c1-200 | sort | uniq -c | sort -rn | head -n 8 >&2
    fi
done

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
