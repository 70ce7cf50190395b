"""`fulmar sendmail` (also run as `sendmail`) and the local socket
STATE_DIR/sendmail.sock it submits on: recipients as arguments and from
To:/Cc:/Bcc: (-t, Bcc: removed), -f/-r, -F, -i and the lone "." line,
the From:/Message-ID:/Date: fields added, line ends, a symlink named
sendmail driven from a shell script, an unprivileged user (the 0666
socket, the uid in Received: and in the log), the exit statuses
(75 server not running, 67 unknown user, 64 usage, 65 bad address),
relaying to a remote domain into the queue, -bs, the socket's life
(mode, reload, removed at a clean stop, a stale one replaced)."""
import email
import email.header
import email.policy
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fulmar_test  # noqa: E402
from fulmar_test import HOSTNAME, wait_for_count, wait_for_one, wait_until  # noqa: E402

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL = 64, 65, 67, 75

# Remote deliveries must not succeed quickly (an outbound engine may try).
NO_DNS = {"dns": {"resolvers": "127.0.0.1:1", "reverse_lookups": False}}


def sock_path(d):
    return os.path.join(d.state_dir, "sendmail.sock")


def sendmail(d, args, data, user=None, env=None, config=True, exe=None, timeout=30):
    cmd = ([exe] if exe else [d.bin, "sendmail"])
    cmd += (["-C", d.config_path] if config else []) + list(args)
    if user:
        cmd = ["runuser", "-u", user, "--"] + cmd
    if isinstance(data, str):
        data = data.encode("utf-8")
    return subprocess.run(cmd, input=data, capture_output=True, timeout=timeout,
                          env=env or d.env(), cwd=d.root)


def ok(r):
    assert r.returncode == 0, "exit %d, stderr: %s" % (r.returncode, r.stderr.decode())
    return r


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def login():
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


def test_basic_delivery_completes_the_message(fulmar):
    """printf 'Subject: hi\\n\\nbody\\n' | fulmar sendmail -C conf alice@..."""
    ok(sendmail(fulmar, ["alice@example.test"], "Subject: hi\n\nbody\n"))
    raw = wait_for_one(fulmar.maildir("alice"))
    m = parse(raw)
    sender = "%s@%s" % (login(), HOSTNAME)
    assert m["Return-Path"] == "<%s>" % sender
    assert m["Subject"] == "hi"
    assert sender in m["From"], m["From"]
    assert re.match(r"^<[A-Za-z0-9]+\.\d+@%s>$" % re.escape(HOSTNAME), m["Message-ID"]), \
        m["Message-ID"]
    assert m["Date"], "no Date:"
    received = " ".join(m["Received"].split())
    assert received.startswith("from localhost (uid %d) by %s (Fulmar) with ESMTP id "
                               % (os.getuid(), HOSTNAME)), received
    assert "for <alice@example.test>" in received
    assert m.get_payload() == "body\n"
    assert raw.count(b"\nMessage-ID:") + raw.startswith(b"Message-ID:") == 1
    log = fulmar.log_text()
    assert re.search(r"event=connect sid=\d+ client=\"?localhost\"? uid=%d\b" % os.getuid(),
                     log), log
    assert "role=local" in log


def test_existing_fields_kept_crlf_input(fulmar):
    msg = (b"From: Me <me@example.test>\r\nTo: alice@example.test\r\n"
           b"Message-ID: <mine@example.test>\r\nDate: Sun, 29 Nov 2026 09:00:00 +0000\r\n"
           b"Subject: crlf\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\nlast")
    ok(sendmail(fulmar, ["alice@example.test"], msg))
    raw = wait_for_one(fulmar.maildir("alice"))
    m = parse(raw)
    assert m["From"] == "Me <me@example.test>"
    assert m["Message-ID"] == "<mine@example.test>"
    assert m.get_all("Message-ID") == ["<mine@example.test>"]
    assert m.get_all("Date") == ["Sun, 29 Nov 2026 09:00:00 +0000"]
    assert m.get_payload() == "line one\n.leading dot\n..two dots\nlast\n"


def test_t_to_cc_bcc_folded_bcc_removed(fulmar):
    msg = ("From: sender@example.test\n"
           "To: \"Smith, Alice\" <alice@example.test>,\n"
           "  nobody-else-here:;\n"
           "Cc: bob@example.test (Bob, the builder)\n"
           "Bcc: carol@example.test\n"
           "Subject: minus t\n"
           "\n"
           "hello all\n")
    ok(sendmail(fulmar, ["-t"], msg))
    for user in ("alice", "bob", "carol"):
        raw = wait_for_one(fulmar.maildir(user))
        m = parse(raw)
        assert m["Subject"] == "minus t"
        assert m["Bcc"] is None and b"Bcc" not in raw, "Bcc: was kept for %s" % user
        if user != "carol":
            assert b"carol" not in raw, raw
        assert m["Cc"] == "bob@example.test (Bob, the builder)"
        assert m.get_payload() == "hello all\n"


def test_t_plus_arguments_and_dedup(fulmar):
    msg = "To: alice@example.test\nSubject: both\n\nx\n"
    ok(sendmail(fulmar, ["-t", "bob@example.test", "ALICE@example.test"], msg))
    assert len(wait_for_count(fulmar.maildir("alice"), 1)) == 1
    assert len(wait_for_count(fulmar.maildir("bob"), 1)) == 1


def test_f_sets_return_path(fulmar):
    ok(sendmail(fulmar, ["-f", "robot@elsewhere.test", "alice@example.test"], "Subject: f\n\nx\n"))
    ok(sendmail(fulmar, ["-fattached@elsewhere.test", "bob@example.test"], "Subject: f\n\nx\n"))
    ok(sendmail(fulmar, ["-r", "rflag@elsewhere.test", "carol@example.test"], "Subject: r\n\nx\n"))
    assert parse(wait_for_one(fulmar.maildir("alice")))["Return-Path"] == "<robot@elsewhere.test>"
    m = parse(wait_for_one(fulmar.maildir("bob")))
    assert m["Return-Path"] == "<attached@elsewhere.test>"
    assert "<attached@elsewhere.test>" in m["From"]
    assert parse(wait_for_one(fulmar.maildir("carol")))["Return-Path"] == "<rflag@elsewhere.test>"


def test_F_full_name_in_added_from(fulmar):
    ok(sendmail(fulmar, ["-F", "Cron Daemon", "-f", "cron@example.test", "alice@example.test"],
                "Subject: F\n\nx\n"))
    ok(sendmail(fulmar, ["-FJane Q. Doe", "-f", "jane@example.test", "bob@example.test"],
                "Subject: F\n\nx\n"))
    ok(sendmail(fulmar, ["-F", "Jürgen Groß", "-f", "j@example.test", "carol@example.test"],
                "Subject: F\n\nx\n"))
    assert parse(wait_for_one(fulmar.maildir("alice")))["From"] == \
        "Cron Daemon <cron@example.test>"
    assert parse(wait_for_one(fulmar.maildir("bob")))["From"] == \
        "\"Jane Q. Doe\" <jane@example.test>"
    raw_from = parse(wait_for_one(fulmar.maildir("carol")))["From"]
    decoded = str(email.header.make_header(email.header.decode_header(raw_from)))
    assert decoded == "Jürgen Groß <j@example.test>", (raw_from, decoded)
    assert all(ord(c) < 128 for c in raw_from)


def test_F_with_control_characters_refused(fulmar):
    r = sendmail(fulmar, ["-F", "Evil\r\nBcc: x@y.test", "alice@example.test"], "Subject: x\n\nx\n")
    assert r.returncode == EX_USAGE, r
    assert fulmar_test.maildir_files(fulmar.maildir("alice")) == []


def test_i_keeps_lone_dot_line(fulmar):
    msg = "Subject: dots\n\nline1\n.\nline2\n"
    ok(sendmail(fulmar, ["-i", "alice@example.test"], msg))
    ok(sendmail(fulmar, ["-oi", "bob@example.test"], msg))
    for user in ("alice", "bob"):
        assert parse(wait_for_one(fulmar.maildir(user))).get_payload() == "line1\n.\nline2\n"


def test_without_i_lone_dot_ends_input(fulmar):
    ok(sendmail(fulmar, ["alice@example.test"], "Subject: dots\n\nline1\n.\nline2\n"))
    raw = wait_for_one(fulmar.maildir("alice"))
    assert parse(raw).get_payload() == "line1\n"
    assert b"line2" not in raw


def test_message_without_header_and_mbox_from_line(fulmar):
    ok(sendmail(fulmar, ["alice@example.test"], "From someone Sun Nov 29 09:00:00 2026\n"
                "just a body line\nsecond\n"))
    raw = wait_for_one(fulmar.maildir("alice"))
    m = parse(raw)
    assert m["From"] and m["Message-ID"] and m["Date"]
    assert m.get_payload() == "just a body line\nsecond\n"
    assert b"From someone" not in raw


def test_symlink_named_sendmail_in_a_script(fulmar, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(fulmar.bin, bindir / "sendmail")
    env = fulmar.env()
    env["PATH"] = "%s:%s" % (bindir, env.get("PATH", "/usr/bin:/bin"))
    env["FULMAR_CONFIG"] = fulmar.config_path  # no -C: the way cron runs it
    script = ("printf 'To: alice@example.test\\nCc: bob@example.test\\n"
              "Subject: from a script\\n\\nhello from bash\\n' | sendmail -t -i; echo rc=$?")
    r = subprocess.run(["bash", "-c", script], capture_output=True, env=env, cwd=fulmar.root,
                       timeout=30)
    assert r.stdout.strip() == b"rc=0", (r.stdout, r.stderr)
    for user in ("alice", "bob"):
        m = parse(wait_for_one(fulmar.maildir(user)))
        assert m["Subject"] == "from a script"
        assert m.get_payload() == "hello from bash\n"
    # cron's own command line
    r = sendmail(fulmar, ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "carol@example.test"],
                 "Subject: Cron <root@host> true\n\nüber\n", config=False, env=env,
                 exe=str(bindir / "sendmail"))
    ok(r)
    m = parse(wait_for_one(fulmar.maildir("carol")))
    assert m["From"].startswith("CronDaemon <")
    assert m.get_payload(decode=True).decode("utf-8") == "über\n"


@pytest.mark.skipif(not fulmar_test.is_root() or not shutil.which("runuser"),
                    reason="needs root and runuser to act as another user")
def test_unprivileged_user_through_0666_socket(fulmar):
    st = os.stat(sock_path(fulmar))
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o666, oct(st.st_mode)
    r = sendmail(fulmar, ["alice@example.test"], "Subject: from nobody\n\nhi\n", user="nobody")
    ok(r)
    m = parse(wait_for_one(fulmar.maildir("alice")))
    assert m["Return-Path"] == "<nobody@%s>" % HOSTNAME
    received = " ".join(m["Received"].split())
    assert received.startswith("from localhost (uid 65534) "), received
    assert re.search(r"event=connect sid=\d+ client=\"?localhost\"? uid=65534\b",
                     fulmar.log_text())


def test_server_not_running_exit_75(fulmar_factory):
    d = fulmar_factory(start=False)
    r = sendmail(d, ["alice@example.test"], "Subject: x\n\nx\n")
    assert r.returncode == EX_TEMPFAIL, r
    want = ("fulmar sendmail: the Fulmar server is not running (%s): message not sent"
            % sock_path(d))
    assert want in r.stderr.decode(), r.stderr


def test_unknown_local_recipient_exit_67(fulmar):
    r = sendmail(fulmar, ["nosuchuser@example.test"], "Subject: x\n\nx\n")
    assert r.returncode == EX_NOUSER, r
    assert "nosuchuser@example.test: 550 5.1.1" in r.stderr.decode(), r.stderr
    # one good, one unknown: the good one gets it, the status says the other
    r = sendmail(fulmar, ["alice@example.test", "ghost@example.test"], "Subject: y\n\ny\n")
    assert r.returncode == EX_NOUSER, r
    assert "ghost@example.test: 550 5.1.1" in r.stderr.decode()
    assert parse(wait_for_one(fulmar.maildir("alice")))["Subject"] == "y"


def test_usage_and_data_errors(fulmar):
    r = sendmail(fulmar, [], "Subject: x\n\nx\n")
    assert r.returncode == EX_USAGE and b"no recipients" in r.stderr, r
    r = sendmail(fulmar, ["-t"], "Subject: no to\n\nx\n")
    assert r.returncode == EX_USAGE and b"no recipients" in r.stderr, r
    r = sendmail(fulmar, ["-Z", "alice@example.test"], "x\n")
    assert r.returncode == EX_USAGE and b"unknown option -Z" in r.stderr, r
    r = sendmail(fulmar, ["-q"], "")
    assert r.returncode == EX_USAGE, r
    r = sendmail(fulmar, ["-f"], "")
    assert r.returncode == EX_USAGE and b"needs a value" in r.stderr, r
    r = sendmail(fulmar, ["-t"], "To: Just A Name\nSubject: x\n\nx\n")
    assert r.returncode == EX_DATAERR, r
    r = sendmail(fulmar, ["bad address@@example.test"], "Subject: x\n\nx\n")
    assert r.returncode == EX_DATAERR, r
    r = sendmail(fulmar, ["-f", "not an address", "alice@example.test"], "Subject: x\n\nx\n")
    assert r.returncode == EX_DATAERR, r
    r = sendmail(fulmar, ["alice@example.test"], "Subject: long\n\n" + "x" * 2000 + "\n")
    assert r.returncode == EX_DATAERR and b"longer than 998 octets" in r.stderr, r
    assert fulmar_test.maildir_files(fulmar.maildir("alice")) == []


def test_bare_name_is_qualified_with_the_first_local_domain(fulmar):
    ok(sendmail(fulmar, ["alice"], "Subject: bare\n\nx\n"))
    m = parse(wait_for_one(fulmar.maildir("alice")))
    assert m["Delivered-To"] == "alice@example.test"


def test_remote_recipient_is_queued(fulmar_factory):
    d = fulmar_factory(**NO_DNS)
    r = sendmail(d, ["-v", "someone@remote.example"], "Subject: out\n\nto the world\n")
    ok(r)
    m = re.search(rb"250 2\.0\.0 Ok: queued as ([A-Za-z0-9]+)", r.stderr)
    assert m, r.stderr
    qid = m.group(1).decode()
    assert wait_until(lambda: any("event=queued" in ln and qid in ln
                                  for ln in d.log_lines_with(qid)), 10), d.log_tail()


def test_smtp_on_stdin_bs(fulmar):
    conv = (b"EHLO script.test\r\nMAIL FROM:<bs@example.test>\r\n"
            b"RCPT TO:<alice@example.test>\r\nDATA\r\nSubject: bs\r\n\r\nvia -bs\r\n.\r\n"
            b"QUIT\r\n")
    r = ok(sendmail(fulmar, ["-bs"], conv))
    out = r.stdout.decode()
    assert out.startswith("220 "), out
    assert "250 2.0.0 Ok: queued as" in out and "221 2.0.0" in out, out
    assert "STARTTLS" not in out and "AUTH" not in out, out
    m = parse(wait_for_one(fulmar.maildir("alice")))
    assert m["Subject"] == "bs" and m["Return-Path"] == "<bs@example.test>"


def test_socket_survives_reload_removed_at_stop_stale_replaced(fulmar):
    path = sock_path(fulmar)
    fulmar.reload()
    assert wait_until(lambda: "event=reloaded" in fulmar.log_text(), 10)
    ok(sendmail(fulmar, ["alice@example.test"], "Subject: after reload\n\nx\n"))
    wait_for_one(fulmar.maildir("alice"))
    assert fulmar.stop() == 0
    assert not os.path.exists(path), "sendmail.sock left after a clean stop"
    fulmar.start()
    fulmar.kill9()
    assert os.path.exists(path)  # left behind by the crash: nobody answers
    r = sendmail(fulmar, ["bob@example.test"], "Subject: x\n\nx\n")
    assert r.returncode == EX_TEMPFAIL and b"not running" in r.stderr, r
    fulmar.start()  # the stale socket is replaced
    ok(sendmail(fulmar, ["bob@example.test"], "Subject: after crash\n\nx\n"))
    assert parse(wait_for_one(fulmar.maildir("bob")))["Subject"] == "after crash"
