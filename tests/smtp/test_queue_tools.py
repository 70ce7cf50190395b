"""The queue tools on a running server: `fulmar queue list|show|flush|hold|
release|delete|bounce` through the control socket STATE_DIR/control.sock,
the offline fallback of `list`, and the control protocol itself (bounded
lines, garbage, many clients).

Messages stay in the queue because their Maildir cannot be written (its
tmp/ is made read-only, as in test_smtp_deferral.py), delivery at receipt
is off, and the first retry is an hour away: whatever happens to them
next is the operator's doing.
"""
import os
import re
import socket
import stat
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fulmar_test  # noqa: E402
from fulmar_test import (make_message, maildir_files, read_file, send_one,  # noqa: E402
                         split_delivered, wait_for_one, wait_until)

ID_RE = re.compile(r"^[0-9A-F]{16}$")
FIELD_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
UNKNOWN_ID = "0123456789ABCDEF"
STUCK = {"local": {"deliver_at_receipt": False},
         "queue": {"retry_first": 3600.0, "retry_max": 3600.0}}
CLIENTS_MAX = 32  # CONTROL_CLIENTS_MAX in src/control/control.h


# ---------------------------------------------------------------------------
# helpers

def q(d, *args):
    """`fulmar queue ARGS --config ...` -> (exit status, stdout, stderr)."""
    r = d.cli("queue", *args, "--config", d.config_path)
    return (r.returncode, r.stdout.decode("utf-8", "replace"),
            r.stderr.decode("utf-8", "replace"))


def fields(text):
    out = {}
    for k, v in FIELD_RE.findall(text):
        if v.startswith('"'):
            v = v[1:-1]
        out[k] = v
    return out


def parse_listing(text):
    """{id: {"line", "held", "fields", "rcpts": {addr: {"state", ...fields}}}}"""
    msgs = {}
    cur = None
    for ln in text.splitlines():
        if not ln.strip():
            continue
        if ln.startswith("    "):
            addr, _, rest = ln.strip().partition("  ")
            state, _, rest = rest.partition("  ")
            r = fields(rest)
            r["state"] = state
            cur["rcpts"][addr] = r
        elif ln.startswith("  "):
            cur["details"] = fields(ln)
        else:
            qid = ln.split()[0]
            assert ID_RE.match(qid), "not a listing line: %r" % ln
            cur = msgs[qid] = {"line": ln, "held": ln.endswith(" [held]"),
                               "fields": fields(ln), "rcpts": {}}
    return msgs


def listing(d):
    rc, out, err = q(d, "list")
    assert rc == 0, (rc, out, err)
    assert "not running" not in err, err
    return parse_listing(out)


def lock_maildir(d, user):
    os.chmod(os.path.join(d.maildir(user), "tmp"), 0o500)


def unlock_maildir(d, user):
    os.chmod(os.path.join(d.maildir(user), "tmp"), 0o700)


def stuck_message(d, user="alice", sender="s@client.test", subject="stuck"):
    """A message for `user` that stays deferred for an hour. Returns
    (queue id, message)."""
    lock_maildir(d, user)
    msg = make_message(subject=subject, sender=sender)
    qid = send_one(d, ["%s@example.test" % user], msg, sender=sender)
    rcpt = "%s@example.test" % user

    def deferred():
        m = listing(d).get(qid)
        return m if m and m["rcpts"].get(rcpt, {}).get("state") == "deferred" else None
    assert wait_until(deferred, 15), "not deferred: %r\n%s" % (listing(d), d.log_tail())
    return qid, msg


def queue_files(d, qid):
    base = os.path.join(d.state_dir, "queue")
    return [os.path.join(base, sub, qid) for sub in ("active", "journal")
            if os.path.exists(os.path.join(base, sub, qid))]


def sock_path(d):
    return os.path.join(d.state_dir, "control.sock")


class Ctl:
    """A raw client of the control socket."""

    def __init__(self, d, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.s.connect(sock_path(d))
                break
            except BlockingIOError:  # the backlog is full: the server is busy
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def reply(self):
        """(status line, [payload lines]) of one reply; raises on EOF."""
        while True:
            end = self.buf.find(b"\n.\n")
            if end >= 0:
                break
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("closed; pending %r" % self.buf[:300])
            self.buf += chunk
        body, self.buf = self.buf[:end + 1], self.buf[end + 3:]
        lines = body.decode("utf-8", "replace").split("\n")[:-1]
        return lines[0], lines[1:]

    def closed(self, timeout=5):
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


# ---------------------------------------------------------------------------
# list and show

def test_list_shows_deferred_with_why(fulmar_factory):
    d = fulmar_factory(**STUCK)
    qid, _ = stuck_message(d)
    m = listing(d)[qid]
    f = m["fields"]
    assert f["from"] == "<s@client.test>" and f["nrcpt"] == "1", m
    assert re.fullmatch(r"\d+s", f["age"]) and int(f["size"]) > 0, m
    assert not m["held"], m
    r = m["rcpts"]["alice@example.test"]
    assert r["why"] == "backoff", m
    assert 3000 <= int(r["next_attempt_in"].rstrip("s")) <= 3600, m
    assert r["attempts"] == "1", m
    assert "Permission denied" in r["last_error"], m
    assert maildir_files(d.maildir("alice")) == []


def test_show_one_message(fulmar_factory):
    d = fulmar_factory(**STUCK)
    qid, _ = stuck_message(d)
    other, _ = stuck_message(d, subject="another")
    rc, out, err = q(d, "show", qid.lower())  # ids are case-insensitive
    assert rc == 0, err
    msgs = parse_listing(out)
    assert list(msgs) == [qid], out
    det = msgs[qid]["details"]
    assert det["client"] == "127.0.0.1" and det["helo"] == "client.test", out
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", det["arrival"]), out
    assert msgs[qid]["rcpts"]["alice@example.test"]["state"] == "deferred", out
    assert set(listing(d)) >= {qid, other}


def test_empty_queue(fulmar_factory):
    d = fulmar_factory(**STUCK)
    rc, out, err = q(d, "list")
    assert rc == 0 and out == "", (out, err)
    assert "queue is empty" in err and "not running" not in err, err


# ---------------------------------------------------------------------------
# hold, release, flush

def test_hold_release_survives_restart(fulmar_factory):
    d = fulmar_factory(**STUCK)
    qid, msg = stuck_message(d)
    rc, out, err = q(d, "hold", qid)
    assert rc == 0, err
    assert qid in out and "held" in out, out
    m = listing(d)[qid]
    assert m["held"], m
    assert m["rcpts"]["alice@example.test"]["why"] == "held", m

    # A held message is not tried, not even by a flush.
    unlock_maildir(d, "alice")
    assert q(d, "flush")[0] == 0
    time.sleep(1.5)
    assert maildir_files(d.maildir("alice")) == []

    d.restart()
    m = listing(d)[qid]
    assert m["held"], "hold lost across the restart: %r" % m
    time.sleep(1.0)
    assert maildir_files(d.maildir("alice")) == []

    rc, out, err = q(d, "release", qid)
    assert rc == 0, err
    rc, _, err = q(d, "release", qid)
    # not held any more (or already delivered, if the engine retried at once)
    assert rc == 1 and ("is not held" in err or "no message" in err), err
    # Released, its recipient waits for its backoff again, or is tried.
    m = listing(d).get(qid)
    if m is not None:
        assert not m["held"], m
        assert m["rcpts"]["alice@example.test"].get("why") != "held", m
    assert q(d, "flush", qid)[0] in (0, 1)  # 1 if it was delivered already
    split_delivered(wait_for_one(d.maildir("alice"), timeout=15), msg)
    assert wait_until(lambda: qid not in listing(d), 10)


def test_flush_delivers_at_once(fulmar_factory):
    d = fulmar_factory(**STUCK)
    qid, msg = stuck_message(d)
    time.sleep(0.5)
    assert maildir_files(d.maildir("alice")) == []
    unlock_maildir(d, "alice")
    rc, out, err = q(d, "flush", qid)
    assert rc == 0, err
    t0 = time.monotonic()
    split_delivered(wait_for_one(d.maildir("alice"), timeout=15), msg)
    assert time.monotonic() - t0 < 15
    assert wait_until(lambda: listing(d) == {}, 10), listing(d)
    assert queue_files(d, qid) == []


def test_flush_all(fulmar_factory):
    d = fulmar_factory(**STUCK)
    a, _ = stuck_message(d, "alice")
    b, _ = stuck_message(d, "bob")
    unlock_maildir(d, "alice")
    unlock_maildir(d, "bob")
    rc, out, err = q(d, "flush")
    assert rc == 0, err
    wait_for_one(d.maildir("alice"), timeout=15)
    wait_for_one(d.maildir("bob"), timeout=15)
    assert wait_until(lambda: listing(d) == {}, 10), listing(d)


# ---------------------------------------------------------------------------
# delete, bounce

def test_delete(fulmar_factory):
    d = fulmar_factory(**STUCK)
    qid, _ = stuck_message(d)
    keep, _ = stuck_message(d, "bob")
    assert queue_files(d, qid)
    rc, out, err = q(d, "delete", qid)
    assert rc == 0, err
    assert "deleted" in out, out
    msgs = listing(d)
    assert qid not in msgs and keep in msgs, msgs
    assert wait_until(lambda: queue_files(d, qid) == [], 5), queue_files(d, qid)
    unlock_maildir(d, "alice")
    assert q(d, "flush")[0] == 0
    time.sleep(1.5)
    assert maildir_files(d.maildir("alice")) == []
    rc, _, err = q(d, "delete", qid)
    assert rc == 1 and "no message %s in the queue" % qid in err, err
    assert "queue_control" in d.log_text()


def test_bounce(fulmar_factory):
    d = fulmar_factory(**STUCK)
    qid, _ = stuck_message(d, "alice", sender="bob@example.test")
    rc, out, err = q(d, "bounce", qid)
    assert rc == 0, err
    assert wait_until(lambda: qid not in listing(d), 10), listing(d)
    assert wait_until(lambda: queue_files(d, qid) == [], 5), queue_files(d, qid)
    assert maildir_files(d.maildir("alice")) == []
    # The bounce goes to the sender's (writable) Maildir.
    got = wait_until(lambda: maildir_files(d.maildir("bob")), 10)
    assert got, "no bounce in the sender's Maildir\n%s" % d.log_tail()
    data = read_file(got[0])
    assert re.search(rb"(?im)^content-type:\s*multipart/report", data), data[:2000]


# ---------------------------------------------------------------------------
# errors

@pytest.mark.parametrize("cmd", ["show", "flush", "hold", "release", "delete", "bounce"])
def test_unknown_id(fulmar_factory, cmd):
    d = fulmar_factory(**STUCK)
    rc, out, err = q(d, cmd, UNKNOWN_ID)
    assert rc == 1, (rc, out, err)
    assert "fulmar: no message %s in the queue" % UNKNOWN_ID in err, err
    rc, out, err = q(d, cmd, "not-an-id")
    assert rc == 1 and "not a queue id" in err, err


def test_usage_errors(fulmar_factory):
    d = fulmar_factory(start=False)
    for args in (["hold"], ["frob"], ["list", "extra"], ["show"], ["--bogus"]):
        rc, out, err = q(d, *args)
        assert rc == 2 and "usage" in err, (args, rc, err)


def test_server_not_running(fulmar_factory):
    d = fulmar_factory(**STUCK)
    qid, _ = stuck_message(d)
    assert q(d, "hold", qid)[0] == 0
    assert stat.S_ISSOCK(os.lstat(sock_path(d)).st_mode)
    d.stop()
    assert not os.path.exists(sock_path(d)), "control.sock left after a clean stop"

    rc, out, err = q(d, "list")
    assert rc == 0, err
    assert "fulmar: server not running; reading %s/queue directly" % d.state_dir in err, err
    m = parse_listing(out)[qid]
    assert m["held"], out  # the hold is in the journal
    r = m["rcpts"]["alice@example.test"]
    assert r["state"] == "deferred" and "Permission denied" in r["last_error"], out
    assert "why" not in r, out  # only the server knows why
    for cmd in (["show", qid], ["flush"], ["flush", qid], ["hold", qid],
                ["release", qid], ["delete", qid], ["bounce", qid]):
        rc, out, err = q(d, *cmd)
        assert rc == 1, (cmd, rc, out, err)
        assert "server is not running" in err, (cmd, err)
    assert queue_files(d, qid), "an offline command changed the queue"


def test_stale_socket_after_kill(fulmar_factory):
    d = fulmar_factory(**STUCK)
    qid, _ = stuck_message(d)
    d.kill9()
    assert os.path.exists(sock_path(d))  # left behind: nobody answers on it
    rc, out, err = q(d, "list")
    assert rc == 0 and "server not running" in err and qid in out, (out, err)
    rc, _, err = q(d, "hold", qid)
    assert rc == 1 and "server is not running" in err, err
    d.start()  # the stale socket is replaced
    assert qid in listing(d)
    assert "control_stale_socket" in d.log_text()


def test_second_daemon_on_same_state_dir_refused(fulmar_factory):
    d = fulmar_factory()
    other = fulmar_factory(start=False)
    other.config["server"]["state_dir"] = d.state_dir
    other.write_config()
    with pytest.raises(fulmar_test.DaemonError) as e:
        other.start(timeout=10)
    assert "another fulmar serves this state_dir" in str(e.value), e.value
    assert listing(d) == {}  # the first one's socket still works


def test_socket_mode_and_owner(fulmar_factory):
    d = fulmar_factory()
    st = os.lstat(sock_path(d))
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    if fulmar_test.is_root():
        import pwd
        assert st.st_uid == pwd.getpwnam(fulmar_test.RUN_USER).pw_uid


# ---------------------------------------------------------------------------
# the protocol, raw

def test_protocol_raw(fulmar_factory):
    d = fulmar_factory(**STUCK)
    qid, _ = stuck_message(d)

    c = Ctl(d)
    c.send(b"LIST\n")
    status, lines = c.reply()
    assert status == "ok" and lines[0].startswith(qid + "  "), (status, lines)
    c.send(b"SHOW %s\r\nFLUSH\n" % qid.encode())  # pipelined, CR LF accepted
    status, lines = c.reply()
    assert status == "ok" and lines[0].startswith(qid), lines
    assert c.reply() == ("ok", [])
    c.send(b"HOLD %s\n" % UNKNOWN_ID.encode())  # an error, the connection stays
    status, lines = c.reply()
    assert status == "error: no message %s in the queue" % UNKNOWN_ID and lines == []
    c.send(b"list\n")
    assert c.reply()[0] == "ok"
    c.close()

    bad = [
        (b"FROB\n", "error: unknown command"),
        (b"HOLD\n", "error: a queue id is needed"),
        (b"LIST x\n", "error: this command takes no argument"),
        (b"SHOW ../../etc/passwd\n", "error: not a queue id"),
        (b"\x00\x01\xff\xfe garbage\n", "error: invalid octet in the request"),
        (b"\n", "error: empty request"),
        (b"A" * 600, "error: request line too long"),           # no newline at all
        (b"LIST " + b" " * 600 + b"\n", "error: request line too long"),
    ]
    for data, want in bad:
        c = Ctl(d)
        c.send(data)
        status, lines = c.reply()
        assert status == want and lines == [], (data[:40], status, lines)
        assert c.closed(), "still open after %r" % data[:40]
        c.close()

    # A 511-octet line (512 with its newline) is within bounds.
    c = Ctl(d)
    c.send(b"SHOW " + b"0" * 506 + b"\n")
    assert c.reply()[0] == "error: not a queue id"
    c.close()

    # Still serving, the CLI too.
    assert qid in listing(d)
    assert not d.sanitizer_reports()


def test_many_clients_do_not_block(fulmar_factory):
    d = fulmar_factory(**STUCK)
    qid, _ = stuck_message(d)
    idle = []
    refused = 0
    try:
        for _ in range(CLIENTS_MAX + 8):
            c = Ctl(d)
            idle.append(c)
            try:
                c.send(b"LI")  # a request that never ends
            except BrokenPipeError:
                pass  # refused and closed already: its error is still to read
        time.sleep(0.5)
        for c in idle:
            c.s.settimeout(0.05)
            try:
                data = c.s.recv(4096)
            except socket.timeout:
                continue
            if data.startswith(b"error: too many control clients"):
                refused += 1
        assert refused >= 8, refused
        # While they all wait, the loop is not blocked: SMTP answers.
        with fulmar_test.SMTPClient(d.port) as s:
            s.ehlo()
    finally:
        for c in idle:
            c.close()
    time.sleep(0.5)  # the server sees them go
    # A client that sends requests and never reads the replies is held
    # to one reply at a time; others are served meanwhile.
    greedy = Ctl(d)
    try:
        greedy.send(b"LIST\n" * 2000)
        for _ in range(3):
            assert qid in listing(d)
    finally:
        greedy.close()
    assert wait_until(lambda: qid in listing(d), 10)


def test_escaped_values(fulmar_factory):
    """What the queue holds reaches the terminal escaped."""
    d = fulmar_factory(**STUCK)
    lock_maildir(d, "alice")
    sender = '"we\\"ird\\\\ one"@client.test'
    msg = make_message(subject="escaped")
    qid = send_one(d, ["alice@example.test"], msg, sender=sender)
    assert wait_until(lambda: qid in listing(d), 10)
    rc, out, err = q(d, "show", qid)
    assert rc == 0, err
    for ch in out:
        assert ch == "\n" or ord(ch) >= 0x20, repr(out)
    head = out.splitlines()[0]
    assert 'from=<\\"we\\\\\\"ird' in head, head
