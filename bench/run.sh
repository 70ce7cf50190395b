#!/usr/bin/env bash
# Fulmar vs Postfix on this machine, in one run: the benchmark table of
# docs/benchmarks.md.
#
#   bench/run.sh [--servers fulmar,postfix] [--counts 1=N,10=N,100=N]
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
# Both servers write to the same file system: by default a fresh,
# journaled ext4 in a loop-mounted image (--fs loop); --fs tmp uses /tmp.
#
# Must run as root (Postfix's master and Fulmar drop privileges).  The
# system's Postfix instance and port 25 are never touched: the private
# instance has its own config and queue directories under a temp dir and
# is stopped on exit, failure included.  Traffic goes to 127.0.0.0/8 only.
#
# Environment: FULMAR_BIN (default build/fulmar), FULMAR_PORT, POSTFIX_PORT.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
FULMAR_BIN=${FULMAR_BIN:-$ROOT/build/fulmar}
FULMAR_PORT=${FULMAR_PORT:-10026}
POSTFIX_PORT=${POSTFIX_PORT:-10025}
PY=${PYTHON:-python3}
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in bench/

SERVERS="fulmar,postfix"
COUNTS="1=2000,10=5000,100=10000"
IDLE=10000
REPEAT=3
KEEP=0
OUT=""
FS=loop

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

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

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

has_server() { [[ ",$SERVERS," == *",$1,"* ]]; }

# ---------------------------------------------------------------- checks
[ "$(id -u)" = 0 ] || die "run as root"
SMTP_SOURCE=""
for p in /usr/sbin/smtp-source /usr/bin/smtp-source /usr/lib/postfix/sbin/smtp-source; do
    [ -x "$p" ] && { SMTP_SOURCE=$p; break; }
done
[ -n "$SMTP_SOURCE" ] || die "smtp-source not found: apt-get install postfix"
command -v "$PY" >/dev/null || die "python3 not found"
if has_server postfix; then
    command -v postfix >/dev/null || die "postfix not found: apt-get install postfix"
fi
if has_server fulmar; then
    [ -x "$FULMAR_BIN" ] || die "no Fulmar binary at $FULMAR_BIN (build it: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build), or use --servers postfix"
    getent passwd fulmar >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin fulmar
fi

port_busy() { ss -Htln "sport = :$1" | grep -q .; }
for s in fulmar postfix; do
    has_server "$s" || continue
    port=$([ "$s" = fulmar ] && echo "$FULMAR_PORT" || echo "$POSTFIX_PORT")
    [ "$port" != 25 ] || die "refusing to use port 25"
    ! port_busy "$port" || die "port $port is already in use"
done

# Both servers and the connection holder need many descriptors.
ulimit -n "$(ulimit -Hn)"

W=$(mktemp -d /tmp/fulmar-bench.XXXXXX)
chmod 0755 "$W"
RESULTS=$W/results.jsonl
: >"$RESULTS"
D=$W          # where both servers keep their queues, Maildirs and logs
LOOP_MOUNTED=0

FULMAR_PID=""
PF_CONF=""
IDLE_PID=""

cleanup() {
    local rc=$?
    set +e
    if [ -n "$IDLE_PID" ] && kill -0 "$IDLE_PID" 2>/dev/null; then
        kill "$IDLE_PID"; wait "$IDLE_PID" 2>/dev/null
    fi
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
        # postfix stop returns before master has exited: wait for it.
        if [ -n "$mpid" ]; then
            for _ in $(seq 50); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.2; done
        fi
    fi
    if [ "$LOOP_MOUNTED" = 1 ]; then
        # Keep the logs and configurations; the image itself only with --keep.
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

# The file system both servers write to.  "loop" (default): a fresh ext4
# with its journal (the usual production setup) in a loop-mounted image
# under the work directory, so both servers start from the same empty file
# system.  "tmp": the work directory itself, on whatever /tmp is.
case $FS in
    loop)
        truncate -s "${LOOP_SIZE:-8G}" "$W/fs.img"
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
PF_UID=5000   # owner of the virtual Maildirs (virtual_uid_maps)
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
# Private Postfix instance for bench/run.sh: virtual Maildir delivery for
# example.test, otherwise Postfix's defaults (fsync durability included).
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
# No client name lookups (Fulmar's are off too): the idle test connects
# from 127.0.0.2-9, whose PTR queries would leave this machine.
smtpd_peername_lookup = no
biff = no
virtual_mailbox_domains = example.test
virtual_mailbox_base = $d/vmail
virtual_mailbox_maps = texthash:$PF_CONF/vmailbox
virtual_uid_maps = static:$PF_UID
virtual_gid_maps = static:$PF_UID
maillog_file = $d/maillog
maillog_file_prefixes = $d
EOF
    # Only the services this job needs; smtpd on the bench port, never 25.
    cat >"$PF_CONF/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$POSTFIX_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
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
    # Sanity: our master really is ours (its config dir), not the system's.
    tr '\0' '\n' <"/proc/$PF_PID/environ" | grep -qx "MAIL_CONFIG=$PF_CONF" ||
        die "Postfix master $PF_PID does not run from $PF_CONF"
    log "Postfix $(postconf -c "$PF_CONF" -h mail_version) up: master pid $PF_PID, 127.0.0.1:$POSTFIX_PORT"
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
# Fulmar for bench/run.sh: the same job as the Postfix instance.
server = {
  hostname = "fulmar.bench.test";
  user = "fulmar";
  state_dir = "$d/state";
  log_file = "$d/fulmar.log";
  log_level = "info";
};
listeners = (
  { address = "127.0.0.1"; port = $FULMAR_PORT; role = "mx"; }
);
limits = {
  connections = 20000;
  connections_per_ip = 20000;
};
# No client name lookups (Postfix's are off too): the idle test connects
# from 127.0.0.2-9, whose PTR queries would leave this machine.
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
    log "Fulmar $("$FULMAR_BIN" version 2>/dev/null | head -n1) up: pid $FULMAR_PID, 127.0.0.1:$FULMAR_PORT"
}

server_pid() { [ "$1" = fulmar ] && echo "$FULMAR_PID" || echo "$PF_PID"; }
server_port() { [ "$1" = fulmar ] && echo "$FULMAR_PORT" || echo "$POSTFIX_PORT"; }
server_maildir() { [ "$1" = fulmar ] && echo "$FULMAR_MAILDIR" || echo "$PF_MAILDIR"; }

check_alive() {
    local s=$1 pid
    pid=$(server_pid "$s")
    kill -0 "$pid" 2>/dev/null || die "$s (pid $pid) died; see $D/$s"
}

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
[ ${#order[@]} -gt 0 ] || die "no server selected"

has_server postfix && start_postfix
has_server fulmar && start_fulmar

# 1. Idle connections, on freshly started servers.
if [ "$IDLE" -gt 0 ]; then
    for s in "${order[@]}"; do idle_test "$s"; done
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
            sed -E 's/[0-9A-F]{8,}/ID/g' | cut -c1-200 | sort | uniq -c | sort -rn | head -n 8 >&2
    fi
done

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
