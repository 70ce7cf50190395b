#!/usr/bin/env bash
# Scans Fulmar's submission (STARTTLS) and submissions (implicit TLS)
# listeners with testssl.sh, on loopback, and prints a summary: the
# summary of docs/security.md.
#
#   scripts/testssl-scan.sh [--fast] [--keep] [--out FILE]
#
# Installs testssl.sh if it is missing (Debian package testssl.sh, as
# root), makes a self-signed certificate (`fulmar tls selfsigned`) and a
# users file with one user, starts `fulmar serve` with
#   a submission listener  on 127.0.0.1:$SUBMISSION_PORT  (default 10587)
#   a submissions listener on 127.0.0.1:$SUBMISSIONS_PORT (default 10465)
# and runs testssl.sh against both (`--starttls smtp` for the first),
# then stops Fulmar and prints what was offered (protocols, cipher
# categories, ciphers per protocol, key exchange groups, session
# resumption) and the vulnerability checks' results, each against what
# Fulmar promises (TLS 1.2 and 1.3 only, AEAD ciphers only, every check
# "not vulnerable").  Exits 1 when one of those expectations fails.
#
# By default testssl.sh runs all of its checks (about 40 s per port);
# --fast limits them to -p -s -f -P -S -U (protocols, cipher categories,
# forward secrecy, server preferences, server defaults, vulnerabilities).
# --out FILE also writes the summary (markdown) to FILE; --keep keeps the
# work directory with testssl.sh's logs and JSON and Fulmar's log.
#
# Never scans anything but 127.0.0.1.  Environment: FULMAR_BIN (default
# build/fulmar), FULMAR_COMMIT (the commit named in the summary; default
# the work tree's HEAD), SUBMISSION_PORT, SUBMISSIONS_PORT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FULMAR_BIN=${FULMAR_BIN:-$ROOT/build/fulmar}
SUBMISSION_PORT=${SUBMISSION_PORT:-10587}
SUBMISSIONS_PORT=${SUBMISSIONS_PORT:-10465}
PY=${PYTHON:-python3}
FAST=0
KEEP=0
OUT=""

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --fast) FAST=1; shift ;;
        --keep) KEEP=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "testssl-scan.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done

log() { printf '[testssl-scan %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }

# ---------------------------------------------------------------- tools
find_testssl() {
    local c
    for c in testssl testssl.sh /usr/bin/testssl /usr/local/bin/testssl.sh; do
        if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
    done
    return 1
}
TESTSSL=$(find_testssl || true)
if [ -z "$TESTSSL" ]; then
    [ "$(id -u)" = 0 ] || die "testssl.sh is not installed (as root: apt-get install -y testssl.sh)"
    log "installing testssl.sh (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y testssl.sh >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null && apt-get install -y testssl.sh >/dev/null; } ||
        die "apt-get install testssl.sh failed"
    TESTSSL=$(find_testssl) || die "testssl.sh installed but not found on PATH"
fi
[ -x "$FULMAR_BIN" ] || die "no Fulmar binary at $FULMAR_BIN (build it: cmake -S . -B build && cmake --build build)"
command -v "$PY" >/dev/null || die "python3 not found"
command -v openssl >/dev/null || die "openssl not found"

port_busy() { ss -Htln "sport = :$1" | grep -q .; }
for p in "$SUBMISSION_PORT" "$SUBMISSIONS_PORT"; do
    ! port_busy "$p" || die "port $p is already in use"
done

# ---------------------------------------------------------------- Fulmar
W=$(mktemp -d /tmp/fulmar-testssl.XXXXXX)
chmod 0755 "$W"
FULMAR_PID=""
cleanup() {
    local rc=$?
    set +e
    if [ -n "$FULMAR_PID" ] && kill -0 "$FULMAR_PID" 2>/dev/null; then
        kill -TERM "$FULMAR_PID"
        for _ in $(seq 50); do kill -0 "$FULMAR_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$FULMAR_PID" 2>/dev/null && kill -KILL "$FULMAR_PID"
        wait "$FULMAR_PID" 2>/dev/null
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

HOST=mail.example.test
"$FULMAR_BIN" tls selfsigned --cert "$W/cert.pem" --key "$W/key.pem" --hostname "$HOST" >/dev/null ||
    die "fulmar tls selfsigned failed"
# One user, so that the submission roles have a users file (AUTH is not
# what this scan looks at).
head -c 18 /dev/urandom | base64 | "$FULMAR_BIN" user add --users-file "$W/users" scan >"$W/user-add.log" 2>&1 ||
    die "fulmar user add failed"
mkdir -p "$W/state" "$W/mail/example.test/scan"/{cur,new,tmp}
: >"$W/fulmar.log"
if [ "$(id -u)" = 0 ]; then
    getent passwd fulmar >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin fulmar
    chown -R fulmar: "$W/state" "$W/mail" "$W/fulmar.log"
fi
cat >"$W/fulmar.conf" <<EOF
# Fulmar for scripts/testssl-scan.sh: the two submission roles, loopback
# only, the TLS defaults untouched.
server = {
  hostname = "$HOST";
  user = "fulmar";
  state_dir = "$W/state";
  log_file = "$W/fulmar.log";
  log_level = "info";
};
listeners = (
  { address = "127.0.0.1"; port = $SUBMISSION_PORT; role = "submission";
    tls_cert = "$W/cert.pem"; tls_key = "$W/key.pem"; },
  { address = "127.0.0.1"; port = $SUBMISSIONS_PORT; role = "submissions";
    tls_cert = "$W/cert.pem"; tls_key = "$W/key.pem"; }
);
dns = {
  reverse_lookups = false;
};
auth = {
  users_file = "$W/users";
};
local = {
  domains = (
    {
      name = "example.test";
      mailboxes = ( { user = "scan"; maildir = "$W/mail/example.test/scan"; } );
    }
  );
};
EOF
"$FULMAR_BIN" check-config --config "$W/fulmar.conf" >/dev/null || die "fulmar check-config failed"
(cd "$W" && exec "$FULMAR_BIN" serve --config "$W/fulmar.conf") 2>>"$W/stderr.log" &
FULMAR_PID=$!
ready=0
for _ in $(seq 100); do
    if port_busy "$SUBMISSION_PORT" && port_busy "$SUBMISSIONS_PORT"; then ready=1; break; fi
    kill -0 "$FULMAR_PID" 2>/dev/null || break
    sleep 0.1
done
if [ "$ready" != 1 ]; then
    tail -n 20 "$W/stderr.log" "$W/fulmar.log" >&2 || true
    die "Fulmar does not listen on 127.0.0.1:$SUBMISSION_PORT and :$SUBMISSIONS_PORT"
fi
VERSION=$("$FULMAR_BIN" version 2>/dev/null | head -n1)
# The commit the binary was built from: FULMAR_COMMIT, or the work tree's HEAD.
COMMIT=${FULMAR_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
log "$VERSION (commit $COMMIT) up: submission 127.0.0.1:$SUBMISSION_PORT (STARTTLS), submissions 127.0.0.1:$SUBMISSIONS_PORT (implicit TLS)"

# ---------------------------------------------------------------- scans
TESTSSL_VERSION=$("$TESTSSL" --version 2>/dev/null | grep -o 'testssl[^ ]* *[0-9][0-9.a-z+~-]*' | head -n1 | tr -s ' ')
CHECKS=()
[ "$FAST" = 1 ] && CHECKS=(-p -s -f -P -S -U)
scan() {
    local name=$1 port=$2; shift 2
    local cmd=("$TESTSSL" --warnings off --color 0 --quiet --nodns min "${CHECKS[@]}" "$@"
               --jsonfile "$W/$name.json" --logfile "$W/$name.log" "127.0.0.1:$port")
    log "testssl: ${cmd[*]##*/}"
    printf '%s\n' "${cmd[*]}" | sed "s|$W/||g; s|$TESTSSL|testssl|" >"$W/$name.cmd"
    local t0=$SECONDS
    "${cmd[@]}" >"$W/$name.out" 2>&1 || true
    echo $((SECONDS - t0)) >"$W/$name.secs"
    [ -s "$W/$name.json" ] || { tail -n 20 "$W/$name.out" >&2; die "testssl produced no results for port $port"; }
    kill -0 "$FULMAR_PID" 2>/dev/null || die "Fulmar died during the scan of port $port"
}
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
scan submission "$SUBMISSION_PORT" --starttls smtp
scan submissions "$SUBMISSIONS_PORT"

ALIVE=yes
kill -0 "$FULMAR_PID" 2>/dev/null || ALIVE=no
kill -TERM "$FULMAR_PID" 2>/dev/null || true
for _ in $(seq 50); do kill -0 "$FULMAR_PID" 2>/dev/null || break; sleep 0.2; done
wait "$FULMAR_PID" 2>/dev/null || true
FULMAR_PID=""

# ---------------------------------------------------------------- summary
set +e
"$PY" - "$W" "$DATE" "$VERSION" "$COMMIT" "$TESTSSL_VERSION" "$ALIVE" \
    "$SUBMISSION_PORT" "$SUBMISSIONS_PORT" "$FAST" "${OUT:-}" <<'EOF'
import json, os, re, sys
(w, date, version, commit, tver, alive, p587, p465, fast, out) = sys.argv[1:11]

def load(name):
    with open(os.path.join(w, name + ".json")) as f:
        data = json.load(f)
    by = {}
    for x in data:
        by.setdefault(x["id"], x)
    return by

scans = [("submission", "STARTTLS (`--starttls smtp`)", p587),
         ("submissions", "implicit TLS", p465)]
res = {n: load(n) for n, _, _ in scans}
cmds = {n: open(os.path.join(w, n + ".cmd")).read().strip() for n, _, _ in scans}
secs = {n: open(os.path.join(w, n + ".secs")).read().strip() for n, _, _ in scans}
failures = []
lines = []
P = lines.append

def f(n, id_, default="–"):
    x = res[n].get(id_)
    return x["finding"] if x else default

def sev(n, id_):
    x = res[n].get(id_)
    return x["severity"] if x else None

def table(head, rows):
    P("| " + " | ".join(head) + " |")
    P("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        P("| " + " | ".join(r) + " |")
    P("")

P(f"Scan of {date}: {version} (commit {commit}), {tver}, "
  f"{'limited checks (--fast)' if fast == '1' else 'all checks'}; "
  f"self-signed ECDSA P-256 certificate from `fulmar tls selfsigned`.")
P("")
for n, kind, port in scans:
    P(f"- {n} (127.0.0.1:{port}, {kind}), {secs[n]} s: `{cmds[n]}`")
P("")

P("**Protocols offered**")
P("")
protos = [("SSLv2", "SSLv2", False), ("SSLv3", "SSLv3", False),
          ("TLS1", "TLS 1.0", False), ("TLS1_1", "TLS 1.1", False),
          ("TLS1_2", "TLS 1.2", True), ("TLS1_3", "TLS 1.3", True)]
rows = []
for id_, label, want in protos:
    row = [label]
    for n, _, _ in scans:
        v = f(n, id_)
        offered = v.startswith("offered")
        ok = offered == want
        if not ok:
            failures.append(f"{n}: {label} {v} (expected {'offered' if want else 'not offered'})")
        row.append(v + ("" if ok else " **(unexpected)**"))
    row.append("offered" if want else "not offered")
    rows.append(row)
table(["protocol"] + [n for n, _, _ in scans] + ["expected"], rows)

P("**Cipher categories**")
P("")
cats = [("cipherlist_NULL", "NULL ciphers (no encryption)", False),
        ("cipherlist_aNULL", "anonymous (no authentication)", False),
        ("cipherlist_EXPORT", "export ciphers", False),
        ("cipherlist_LOW", "LOW: 64 bit, DES, RC2, RC4", False),
        ("cipherlist_3DES_IDEA", "3DES, IDEA", False),
        ("cipherlist_AVERAGE", "obsolete CBC ciphers (AES, ARIA, ...)", False),
        ("cipherlist_STRONG", "strong (AEAD) ciphers", True)]
rows = []
for id_, label, want in cats:
    row = [label]
    for n, _, _ in scans:
        v = f(n, id_)
        offered = v.startswith("offered")
        ok = offered == want
        if not ok:
            failures.append(f"{n}: {label}: {v}")
        row.append(v + ("" if ok else " **(unexpected)**"))
    rows.append(row)
table(["category"] + [n for n, _, _ in scans], rows)

P("**Ciphers, key exchange, session resumption** (server's order)")
P("")
rows = []
for id_, label in [("cipherorder_TLSv1_2", "TLS 1.2 ciphers"),
                   ("cipherorder_TLSv1_3", "TLS 1.3 ciphers"),
                   ("cipher_order", "server cipher order"),
                   ("cipher_negotiated", "negotiated by default"),
                   ("PFS", "forward secrecy"),
                   ("PFS_ECDHE_curves", "ECDHE groups"),
                   ("DH_groups", "finite-field groups (TLS 1.3)"),
                   ("TLS_extensions", "TLS extensions"),
                   ("TLS_session_ticket", "session ticket (lifetime hint)"),
                   ("sessionresumption_ticket", "resumption by ticket"),
                   ("sessionresumption_ID", "resumption by session ID"),
                   ("ALPN", "ALPN")]:
    if not any(id_ in res[n] for n, _, _ in scans):
        continue
    rows.append([label] + [f(n, id_).replace("|", "/") for n, _, _ in scans])
table(["figure"] + [n for n, _, _ in scans], rows)
weak = re.compile(r"(NULL|EXP|RC4|DES|IDEA|MD5|CBC|SHA$|ANON|ADH|AECDH)", re.I)
for n, _, _ in scans:
    for id_ in ("cipherorder_TLSv1_2", "cipherorder_TLSv1_3"):
        for c in f(n, id_, "").split():
            if weak.search(c) and "GCM" not in c and "CHACHA" not in c.upper():
                failures.append(f"{n}: non-AEAD cipher offered: {c}")
    for id_, x in res[n].items():
        if id_.startswith("cipher_x"):
            if not re.search(r"AESGCM|ChaCha20|AESCCM", x["finding"]):
                failures.append(f"{n}: non-AEAD cipher offered: {x['finding']}")

P("**Vulnerability checks**")
P("")
vulns = ["heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego",
         "secure_client_renego", "CRIME_TLS", "BREACH", "POODLE_SSL",
         "fallback_SCSV", "SWEET32", "FREAK", "DROWN", "LOGJAM",
         "LOGJAM-common_primes", "BEAST", "LUCKY13", "winshock", "RC4"]
rows = []
for id_ in vulns:
    if not any(id_ in res[n] for n, _, _ in scans):
        continue
    row = [id_]
    for n, _, _ in scans:
        s = sev(n, id_)
        v = f(n, id_)
        bad = s not in (None, "OK", "INFO")
        if bad:
            failures.append(f"{n}: {id_}: {s}: {v}")
        row.append(f"{s}: {v}" if s else "–")
    rows.append(row)
table(["check"] + [n for n, _, _ in scans], rows)

# Everything else testssl.sh rated LOW or worse (the certificate's
# findings are expected with a self-signed test certificate).
other = []
for n, _, _ in scans:
    for id_, x in res[n].items():
        if id_ in vulns or x["severity"] in ("OK", "INFO", "DEBUG", "WARN"):
            continue
        other.append((n, id_, x["severity"], x["finding"]))
if other:
    P("**Other findings rated LOW or worse**")
    P("")
    table(["port", "id", "severity", "finding"],
          [[a, b, c, d.replace("|", "/")] for a, b, c, d in other])
nocon = sorted({x["id"].split("-", 1)[1] for n, _, _ in scans
                for x in res[n].values()
                if x["id"].startswith("clientsimulation-")
                and x["finding"].startswith("No connection")})
if nocon:
    P("Simulated clients that cannot connect (they lack TLS 1.2 with an AEAD cipher): " + ", ".join(nocon) + ".")
    P("")

# Fulmar during the scan.
logp = os.path.join(w, "fulmar.log")
txt = open(logp, errors="replace").read().splitlines()
conns = sum(1 for l in txt if " event=connect " in l)
tls = sum(1 for l in txt if " event=tls " in l)
problems = [l for l in txt if re.search(r" (warning|error) event=", l)]
try:
    stderr = open(os.path.join(w, "stderr.log"), errors="replace").read().strip()
except OSError:
    stderr = ""
P(f"Fulmar during the scans: {conns} connections, {tls} completed TLS "
  f"handshakes, {len(problems)} warning/error log lines; "
  f"{'still running at the end' if alive == 'yes' else '**not running at the end**'}"
  + (f"; standard error: `{stderr[:300]}`" if stderr else "") + ".")
P("")
if alive != "yes":
    failures.append("Fulmar died during the scans")
for l in problems[:10]:
    P("    " + l[:200])
if failures:
    P("**Expectations not met:**")
    P("")
    for x in failures:
        P("- " + x)
else:
    P("All expectations met: TLS 1.2 and 1.3 only, AEAD ciphers only, "
      "every vulnerability check passed.")
text = "\n".join(lines) + "\n"
sys.stdout.write(text)
if out:
    with open(out, "w") as fh:
        fh.write(text)
sys.exit(1 if failures else 0)
EOF
rc=$?
set -e
exit $rc
