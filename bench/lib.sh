# shellcheck shell=bash
# bench/lib.sh: what the benchmark scripts share (sourced by bench/run.sh,
# bench/tls_run.sh, bench/relay_run.sh and bench/dkim_run.sh, never run on
# its own): checks, the work directory and the file system under test, a
# private Postfix instance, a Fulmar daemon, the Maildir job of run.sh and
# tls_run.sh, the relay job of relay_run.sh and dkim_run.sh, and the
# clean-up that stops them on any exit.
#
# The sourcing script sets first: BENCH (this folder), PY, SERVERS, KEEP,
# FS (loop|tmp), FULMAR_BIN, FULMAR_PORT, POSTFIX_PORT, BENCH_TAG (the
# prefix of log lines). It may define bench_stop_extra (called first on
# exit, to stop its own helpers) or hand helpers it starts to bench_track.
# Everything stays on 127.0.0.0/8; port 25 is refused.

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$BENCH_TAG" -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

has_server() { [[ ",$SERVERS," == *",$1,"* ]]; }

# bench_build_fulmar [BUILD_DIR]: when FULMAR_BIN does not exist, builds
# BUILD_DIR (default build/; RelWithDebInfo, no tests) from this tree.
bench_build_fulmar() {
    # shellcheck disable=SC2153  # FULMAR_BIN is the sourcing script's
    [ ! -x "$FULMAR_BIN" ] || return 0
    local b=${1:-$ROOT/build}
    log "building $FULMAR_BIN in $b"
    cmake -S "$ROOT" -B "$b" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFULMAR_TESTS=OFF >&2
    cmake --build "$b" -j2 >&2
}

# Root, python3, smtp-source (SMTP_SOURCE), postfix, the Fulmar binary, a
# C compiler for the floor server, and the fulmar system user (both run
# as it), as the selected servers need.
bench_check_tools() {
    [ "$(id -u)" = 0 ] || die "run as root"
    SMTP_SOURCE=""
    local p
    for p in /usr/sbin/smtp-source /usr/bin/smtp-source /usr/lib/postfix/sbin/smtp-source; do
        [ -x "$p" ] && { SMTP_SOURCE=$p; break; }
    done
    [ -n "$SMTP_SOURCE" ] || die "smtp-source not found: apt-get install postfix"
    command -v "$PY" >/dev/null || die "python3 not found"
    if has_server postfix; then
        command -v postfix >/dev/null || die "postfix not found: apt-get install postfix"
    fi
    if has_server fulmar; then
        [ -x "$FULMAR_BIN" ] || die "no Fulmar binary at $FULMAR_BIN (build it: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFULMAR_TESTS=OFF && cmake --build build -j2), or use --servers postfix"
    fi
    if has_server floor; then
        command -v "${CC:-cc}" >/dev/null || die "no C compiler (${CC:-cc}) for bench/floor_server.c"
    fi
    if has_server fulmar || has_server floor; then
        getent passwd fulmar >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin fulmar
    fi
}

# bench_need_packages PKG...: installs the Debian packages that are
# missing (the benchmark's own dependencies; the tests' are
# scripts/install-deps.sh's).
bench_need_packages() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    log "installing ${missing[*]}"
    apt-get update -q >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
        die "cannot install ${missing[*]}"
}

port_busy() { ss -Htln "sport = :$1" | grep -q .; }

# bench_check_ports PORT...: none is 25, none is in use.
bench_check_ports() {
    local port
    for port in "$@"; do
        [ "$port" != 25 ] || die "refusing to use port 25"
        ! port_busy "$port" || die "port $port is already in use"
    done
}

FULMAR_PID=""
PF_CONF=""
PF_PID=""
LOOP_MOUNTED=0
BENCH_HELPERS=()

# bench_track PID: a helper (a sink, a milter) this script started, stopped
# (TERM) on exit.
bench_track() { BENCH_HELPERS+=("$1"); }

# stop_fulmar: SIGTERM, up to 10 s for a clean exit, then SIGKILL.
stop_fulmar() {
    if [ -n "$FULMAR_PID" ] && kill -0 "$FULMAR_PID" 2>/dev/null; then
        kill -TERM "$FULMAR_PID"
        for _ in $(seq 50); do kill -0 "$FULMAR_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$FULMAR_PID" 2>/dev/null && kill -KILL "$FULMAR_PID"
        wait "$FULMAR_PID" 2>/dev/null
    fi
    FULMAR_PID=""
}

bench_cleanup() {
    local rc=$?
    set +e
    if declare -F bench_stop_extra >/dev/null; then bench_stop_extra; fi
    local h
    for h in "${BENCH_HELPERS[@]}"; do
        if kill -0 "$h" 2>/dev/null; then kill "$h"; wait "$h" 2>/dev/null; fi
    done
    stop_fulmar
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

# bench_workdir NAME: the work directory W=/tmp/NAME.XXXXXX (0755),
# RESULTS in it, and D, where both servers keep their queues, Maildirs and
# logs: with FS=loop (default) a fresh ext4 with its journal (the usual
# production setup) in a loop-mounted image of LOOP_SIZE (default 8G)
# under W, so both servers start from the same empty file system; with
# FS=tmp, W itself. Sets FS_NOTE and the exit trap.
bench_workdir() {
    # Both servers and the load tools need many descriptors.
    ulimit -n "$(ulimit -Hn)"
    W=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 0755 "$W"
    RESULTS=$W/results.jsonl
    : >"$RESULTS"
    D=$W
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
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
        local dev jbd
        dev=$(findmnt -n -o SOURCE --target "$D")
        jbd=(/proc/fs/jbd2/"$(basename "$(readlink -f "$dev")")"-*)
        if [ -e "${jbd[0]}" ]; then
            FS_NOTE="$FS_NOTE, journaled"
        else
            FS_NOTE="$FS_NOTE, no journal"
        fi
    fi
    log "file system under test: $FS_NOTE"
}

# Waits until 127.0.0.1:$1 sends a 220 greeting.
wait_greeting() {
    local port=$1
    for _ in $(seq 100); do
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

# start_postfix MAIN_CF_LINES [MASTER_CF_LINES]: a private Postfix
# instance in $D/postfix (its own config_directory, queue_directory and
# data_directory, started with `postfix -c DIR start`, smtpd only on
# 127.0.0.1:$POSTFIX_PORT), with Postfix's defaults (fsync durability
# included) but for the common lines below and the job's lines given; the
# services below plus those given. Sets PF_CONF and PF_PID.
start_postfix() {
    local d=$D/postfix job=$1 services=${2:-}
    PF_CONF=$d/etc
    mkdir -p "$PF_CONF" "$d/spool" "$d/data"
    chmod 0755 "$d" "$PF_CONF"
    chown postfix "$d/data"
    cat >"$PF_CONF/main.cf" <<EOF
# Private Postfix instance for bench/$(basename "$0").
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
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination
# No client name lookups (Fulmar's are off too): the idle test connects
# from 127.0.0.2-9, whose PTR queries would leave this machine.
smtpd_peername_lookup = no
biff = no
maillog_file = $d/maillog
maillog_file_prefixes = $d
$job
EOF
    # Only the services these jobs need; smtpd on the bench port, never 25.
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
$services
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

# start_fulmar [SERVER_SETTINGS [LISTENER_SETTINGS]] < CONFIG: `fulmar
# serve` in $D/fulmar (state, log file and config there; what the
# configuration names elsewhere the caller makes): the server group, one
# mx listener on 127.0.0.1:$FULMAR_PORT and the connection limits below
# (each with the settings given added), then the rest of the configuration
# from standard input. Sets FULMAR_PID.
start_fulmar() {
    local d=$D/fulmar
    mkdir -p "$d/state"
    chmod 0755 "$d" "$d/state"
    : >"$d/fulmar.log"
    chown -R fulmar: "$d/state" "$d/fulmar.log"
    cat >"$d/fulmar.conf" <<EOF
# Fulmar for bench/$(basename "$0"): the same job as the Postfix instance.
server = {
  hostname = "fulmar.bench.test";
  user = "fulmar";
  state_dir = "$d/state";
  log_file = "$d/fulmar.log";
  log_level = "info";
  ${1:-}
};
listeners = (
  { address = "127.0.0.1"; port = $FULMAR_PORT; role = "mx"; ${2:-} }
);
limits = {
  connections = 20000;
  connections_per_ip = 20000;
};
# Postfix checks no SPF, DKIM or DMARC here: neither does Fulmar (the
# same job; with checks on, inbound mail also takes the queue path).
inbound = {
  checks = false;
};
EOF
    cat >>"$d/fulmar.conf"
    "$FULMAR_BIN" check-config --config "$d/fulmar.conf" >&2 || die "fulmar check-config failed"
    (cd "$d" && exec "$FULMAR_BIN" serve --config "$d/fulmar.conf") 2>>"$d/stderr.log" &
    FULMAR_PID=$!
    if ! wait_greeting "$FULMAR_PORT"; then
        tail -n 20 "$d/stderr.log" "$d/fulmar.log" >&2 || true
        die "Fulmar does not answer on port $FULMAR_PORT"
    fi
    log "Fulmar $("$FULMAR_BIN" version 2>/dev/null | head -n1) up: pid $FULMAR_PID, 127.0.0.1:$FULMAR_PORT"
}

# ---------------------------------------------------------------- Maildir job
# The job of run.sh and tls_run.sh: accept mail for example.test and
# deliver it to the Maildir of bench@example.test.
PF_UID=5000   # owner of Postfix's virtual Maildirs (virtual_uid_maps)

# start_postfix_maildir [MAIN_CF_LINES [MASTER_CF_LINES]]: start_postfix
# with virtual Maildir delivery for example.test. Sets PF_MAILDIR.
start_postfix_maildir() {
    local d=$D/postfix
    PF_MAILDIR=$d/vmail/example.test/bench
    mkdir -p "$d/etc" "$d/vmail/example.test"
    chmod 0755 "$d" "$d/vmail"
    chown -R "$PF_UID:$PF_UID" "$d/vmail/example.test"
    printf 'bench@example.test example.test/bench/\n' >"$d/etc/vmailbox"
    start_postfix "# The job: virtual Maildir delivery for example.test.
relayhost =
virtual_mailbox_domains = example.test
virtual_mailbox_base = $d/vmail
virtual_mailbox_maps = texthash:$d/etc/vmailbox
virtual_uid_maps = static:$PF_UID
virtual_gid_maps = static:$PF_UID
${1:-}" "${2:-}"
}

# fulmar_owned_maildir DIR: makes DIR/mail/example.test/bench with cur/,
# new/ and tmp/, owned by the fulmar user, and prints its path.
fulmar_owned_maildir() {
    local md=$1/mail/example.test/bench
    mkdir -p "$md"/{cur,new,tmp}
    chmod 0755 "$1" "$1/mail"
    chown -R fulmar: "$1/mail"
    echo "$md"
}

# start_fulmar_maildir [LISTENER_SETTINGS]: start_fulmar with the same job
# (one local domain, one mailbox) on an mx listener with these settings
# added (tls_cert = ...;). Sets FULMAR_MAILDIR.
start_fulmar_maildir() {
    local d=$D/fulmar
    FULMAR_MAILDIR=$(fulmar_owned_maildir "$d")
    start_fulmar "" "${1:-}" <<EOF
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
}

# start_floor_maildir: bench/floor_server.c (the least CPU this job can
# cost: its system calls and little else) built here and run as the
# fulmar user on 127.0.0.1:$FLOOR_PORT with its own Maildir. Sets
# FLOOR_PID and FLOOR_MAILDIR.
start_floor_maildir() {
    local d=$D/floor
    FLOOR_MAILDIR=$(fulmar_owned_maildir "$d")
    "${CC:-cc}" -std=c17 -O2 -Wall -Wextra -Werror -o "$d/floor_server" \
        "$BENCH/floor_server.c" || die "cannot build bench/floor_server.c"
    setpriv --reuid fulmar --regid fulmar --clear-groups \
        "$d/floor_server" "$FLOOR_PORT" "$FLOOR_MAILDIR" 2>"$d/stderr.log" &
    FLOOR_PID=$!
    bench_track "$FLOOR_PID"
    wait_greeting "$FLOOR_PORT" || die "the floor server does not answer on port $FLOOR_PORT"
    log "floor server up: pid $FLOOR_PID, 127.0.0.1:$FLOOR_PORT"
}

server_maildir() {
    case $1 in
        fulmar) echo "$FULMAR_MAILDIR" ;;
        floor) echo "$FLOOR_MAILDIR" ;;
        *) echo "$PF_MAILDIR" ;;
    esac
}

# ---------------------------------------------------------------- servers
server_pid() {
    case $1 in
        fulmar) echo "$FULMAR_PID" ;;
        floor) echo "$FLOOR_PID" ;;
        *) echo "$PF_PID" ;;
    esac
}
server_port() {
    case $1 in
        fulmar) echo "$FULMAR_PORT" ;;
        floor) echo "$FLOOR_PORT" ;;
        *) echo "$POSTFIX_PORT" ;;
    esac
}

check_alive() {
    local s=$1 pid
    pid=$(server_pid "$s")
    kill -0 "$pid" 2>/dev/null || die "$s (pid $pid) died; see $D/$s"
}

# A log line that reports a problem, in either server's log.
BENCH_PROBLEM_RE=' (warning|error) event=|warning:|fatal:|panic:|error:|AddressSanitizer|runtime error'

# bench_log_problems SERVER...: counts (and shows the commonest) warning
# and error lines in each server's logs.
bench_log_problems() {
    local s n f
    for s in "$@"; do
        check_alive "$s"
        case $s in
            fulmar) f=("$D/fulmar/fulmar.log" "$D/fulmar/stderr.log") ;;
            postfix) f=("$D/postfix/maillog") ;;
            floor) f=("$D/floor/stderr.log") ;;
        esac
        n=$(cat "${f[@]}" 2>/dev/null | grep -Eci "$BENCH_PROBLEM_RE" || true)
        log "$s: $n warning/error log lines"
        if [ "$n" -gt 0 ]; then
            cat "${f[@]}" | grep -Ei "$BENCH_PROBLEM_RE" |
                sed -E 's/[0-9A-F]{8,}/ID/g; s/sid=[0-9]+/sid=N/; s/^[0-9T:.-]+Z? //; s/^[A-Z][a-z]{2} [ 0-9]{2} [0-9:]{8} //' |
                cut -c1-200 | sort | uniq -c | sort -rn | head -n 8 >&2
        fi
    done
}

# ---------------------------------------------------------------- relay job
# The job of relay_run.sh and dkim_run.sh: smtp-source -> server ->
# smtp-sink. The sourcing script sets SINK_PORT and RELAY_ROUTES, the
# routes as DOMAIN=PORT, every next hop on 127.0.0.1: relay.test=$SINK_PORT
# is the bulk route (Postfix's relayhost), the others test domains of
# their own.

# start_sink: smtp-sink on 127.0.0.1:$SINK_PORT, as nobody; it accepts
# everything, offers PIPELINING and no STARTTLS, and with -c rewrites
# "sess=N quit=N mesg=N" after each message into SINK_COUNTER: the count
# of what arrived (benchlib.py sink_count). Sets SMTP_SINK, SINK_PID.
SINK_PID=""
start_sink() {
    SMTP_SINK=$(command -v smtp-sink || true)
    [ -n "$SMTP_SINK" ] || die "smtp-sink not found: apt-get install postfix"
    SINK_COUNTER=$W/sink.count
    "$SMTP_SINK" -u nobody -c "127.0.0.1:$SINK_PORT" 1024 >"$SINK_COUNTER" 2>"$W/sink.err" &
    SINK_PID=$!
    bench_track "$SINK_PID"
    wait_greeting "$SINK_PORT" || { cat "$W/sink.err" >&2; die "smtp-sink does not answer on port $SINK_PORT"; }
    log "smtp-sink up: pid $SINK_PID, 127.0.0.1:$SINK_PORT"
}

# start_postfix_relay [MAIN_CF_LINES]: the private Postfix taking mail
# from 127.0.0.0/8 (mynetworks) and relaying relay.test to the sink
# (relayhost), the other routes through transport_maps; bracketed next
# hops and no DNS at all.
start_postfix_relay() {
    local d=$D/postfix r
    mkdir -p "$d/etc"
    : >"$d/etc/transport"
    for r in "${RELAY_ROUTES[@]}"; do
        [ "${r%%=*}" = relay.test ] || printf '%s smtp:[127.0.0.1]:%s\n' "${r%%=*}" "${r#*=}" >>"$d/etc/transport"
    done
    start_postfix "# The job: relay what 127.0.0.0/8 sends to the sink (relayhost), other
# test domains to their own sinks. Bracketed next hops and no DNS at all.
relayhost = [127.0.0.1]:$SINK_PORT
transport_maps = texthash:$d/etc/transport
smtp_dns_support_level = disabled
smtp_tls_security_level = none
${1:-}"
}

# start_fulmar_relay [CONFIG_LINES]: Fulmar taking mail from 127.0.0.1
# without AUTH (server.relay_networks) and relaying through static routes,
# with the configuration lines given added (a dkim list).
start_fulmar_relay() {
    local r routes=""
    for r in "${RELAY_ROUTES[@]}"; do
        routes+="${routes:+,
}  { domain = \"${r%%=*}\"; host = \"127.0.0.1\"; port = ${r#*=}; }"
    done
    start_fulmar 'relay_networks = [ "127.0.0.1/32" ];' <<EOC
# No DNS: no client name lookups, and a resolver where nothing listens
# (the routes are addresses).
dns = {
  reverse_lookups = false;
  resolvers = "127.0.0.1:9";
};
# Outbound limits are the defaults (100 connections, 20 per destination,
# 100 messages per connection); smtp-sink offers no STARTTLS anyway.
outbound = {
  tls = "none";
};
routes = (
$routes
);
${1:-}
EOC
}

queue_dirs() {
    if [ "$1" = fulmar ]; then
        echo "$D/fulmar/state/queue"
    else
        local q
        for q in incoming active deferred hold maildrop corrupt; do echo "$D/postfix/spool/$q"; done
    fi
}

# tree_cpu_s PID: CPU seconds of the process tree rooted at PID so far.
tree_cpu_s() { "$PY" "$BENCH/benchlib.py" tree "$1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["cpu_s"])'; }

# load_run SERVER SESSIONS COUNT KIND [LABEL]: smtp-source (5 KB
# messages, one connection each) into SERVER (or "direct": into the sink
# itself), until the sink has COUNT more and the server's queue is empty;
# one JSON line in RESULTS: {"kind":KIND,"server":SERVER,"label":LABEL,
# "res":{benchlib.py load}}. With LOAD_EXTRA_PID set (a milter the server
# calls), that process tree's CPU over the run is added to the server's
# (res.cpu_s, res.cpu_per_1000; alone in res.extra_cpu_s).
load_run() {
    local s=$1 sessions=$2 count=$3 kind=$4 label=${5:-$1} pid port out qargs=() x0=0 x1=0
    if [ "$s" = direct ]; then
        pid=$SINK_PID; port=$SINK_PORT
    else
        check_alive "$s"
        pid=$(server_pid "$s"); port=$(server_port "$s")
        while read -r q; do qargs+=(--queue "$q"); done < <(queue_dirs "$s")
    fi
    [ -z "${LOAD_EXTRA_PID:-}" ] || x0=$(tree_cpu_s "$LOAD_EXTRA_PID")
    out=$("$PY" "$BENCH/benchlib.py" load --pid "$pid" --port "$port" \
        --sessions "$sessions" --count "$count" --sink-counter "$SINK_COUNTER" \
        --rcpt user@relay.test --poll 0.02 --smtp-source "$SMTP_SOURCE" "${qargs[@]}")
    [ -z "${LOAD_EXTRA_PID:-}" ] || x1=$(tree_cpu_s "$LOAD_EXTRA_PID")
    "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); x=float(sys.argv[4])-float(sys.argv[3])
if sys.argv[5]:
    r["extra_cpu_s"]=x; r["cpu_s"]+=x; r["cpu_per_1000"]=r["cpu_s"]*1000.0/r["count"]
print(json.dumps({"kind":sys.argv[6],"server":sys.argv[2],"label":sys.argv[7],"res":r}))
d=r["deliver_s"]
print("  %-7s s=%-3d m=%-5d accepted %.0f/s (%.2fs)  arrived %s  drained %s  cpu %.2fs/1000%s  rc=%d%s" % (sys.argv[7], r["sessions"], r["count"], r["accept_rate"], r["accept_s"], ("%.0f/s (%.2fs)" % (r["deliver_rate"], d)) if d else "INCOMPLETE %d/%d" % (r["delivered"], r["count"]), ("%.2fs" % r["drained_s"]) if r["drained_s"] else ("-" if r["queue_left"] is None else "NO, %d files left" % r["queue_left"]), r["cpu_per_1000"], (" (milter %.2fs)" % (x * 1000.0 / r["count"])) if sys.argv[5] else "", r["smtp_source_rc"], ("  stderr: " + r["smtp_source_stderr"].strip().replace("\n", " | ")[:300]) if r["smtp_source_stderr"].strip() else ""), file=sys.stderr)' \
        "$out" "$s" "$x0" "$x1" "${LOAD_EXTRA_PID:-}" "$kind" "$label" >>"$RESULTS"
}
