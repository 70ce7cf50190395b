"""Submission (587, STARTTLS + AUTH) and submissions (465, implicit TLS):
AUTH PLAIN and LOGIN with real clients (smtplib, swaks, curl), AUTH only
inside TLS, every malformed AUTH, the brute-force throttle, MAIL needs
AUTH, senders a user owns, authenticated relaying into the queue."""
import base64
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fulmar_test  # noqa: E402
from fulmar_test import (SMTPClient, expect, make_message, split_delivered,  # noqa: E402
                         wait_for_one)

USER = "alice@example.test"
PASSWORD = "correct horse battery staple"


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture(scope="module")
def sub():
    """One daemon: mx, submission (STARTTLS), submissions (implicit TLS),
    and a submission listener that allows AUTH without TLS."""
    d = fulmar_test.Daemon()
    cert = os.path.join(d.root, "cert.pem")
    key = os.path.join(d.root, "key.pem")
    users = os.path.join(d.root, "users")
    env = d.env()
    r = subprocess.run([d.bin, "tls", "selfsigned", "--cert", cert, "--key", key,
                        "--hostname", "mx.test.local"], capture_output=True, env=env)
    assert r.returncode == 0, r.stderr
    for name, pw in ((USER, PASSWORD), ("bob@example.test", "bob's secret")):
        r = subprocess.run([d.bin, "user", "add", "--users-file", users, name],
                           input=(pw + "\n").encode(), capture_output=True, env=env)
        assert r.returncode == 0, r.stderr
    d.ports = {"submission": fulmar_test.free_port(), "submissions": fulmar_test.free_port(),
               "plain": fulmar_test.free_port()}
    tls = {"tls_cert": cert, "tls_key": key}
    d.config["listeners"] += [
        dict(address="127.0.0.1", port=d.ports["submission"], role="submission", **tls),
        dict(address="127.0.0.1", port=d.ports["submissions"], role="submissions", **tls),
        dict(address="127.0.0.1", port=d.ports["plain"], role="submission",
             auth_plaintext=True),
    ]
    d.config["auth"] = {"users_file": users,
                        "senders": [{"user": USER,
                                     "addresses": [USER, "team@example.test"]}]}
    d.write_config()
    d.start()
    yield d
    d.stop()
    assert not d.sanitizer_reports()
    d.cleanup()


def starttls_client(d, port=None):
    s = smtplib.SMTP("127.0.0.1", port or d.ports["submission"], timeout=20)
    s.ehlo("sub.client.test")
    s.starttls(context=client_ctx())
    s.ehlo("sub.client.test")
    return s


def test_no_auth_before_tls(sub):
    with SMTPClient(sub.ports["submission"]) as c:
        ehlo = c.ehlo().text
        assert "STARTTLS" in ehlo and "AUTH" not in ehlo
        expect(c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))), 538, "5.7.11")


def test_mail_needs_auth(sub):
    with SMTPClient(sub.ports["plain"]) as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<%s>" % USER), 530, "5.7.0")


def test_mx_listener_has_no_auth(sub):
    with SMTPClient(sub.port) as c:
        assert "AUTH" not in c.ehlo().text
        expect(c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))), 503, "5.5.1")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_smtplib_starttls_login_delivers(sub, mech):
    msg = make_message(subject="submitted " + mech, sender=USER)
    s = starttls_client(sub)
    assert "PLAIN" in s.esmtp_features.get("auth", "")
    s.user, s.password = USER, PASSWORD
    code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower()))
    assert code == 235
    assert s.sendmail(USER, ["bob@example.test"], msg) == {}
    s.quit()
    data = wait_for_one(sub.maildir("bob"))
    os.unlink([os.path.join(sub.maildir("bob"), "new", f)
               for f in os.listdir(os.path.join(sub.maildir("bob"), "new"))][0])
    split_delivered(data, msg)
    assert b"with ESMTPSA id" in data.split(b"\n\n")[0]


def test_implicit_tls_relay_goes_to_queue(sub):
    msg = make_message(subject="to the world", sender=USER)
    with smtplib.SMTP_SSL("127.0.0.1", sub.ports["submissions"], timeout=20,
                          context=client_ctx()) as s:
        s.ehlo("ssl.client.test")
        s.login(USER, PASSWORD)
        assert s.sendmail(USER, ["someone@remote.test"], msg) == {}
    deadline = time.time() + 5
    text = ""
    while time.time() < deadline:
        text = "\n".join(map(str, sub.queue_list()))
        if "someone@remote.test" in text:
            break
        time.sleep(0.2)
    assert "someone@remote.test" in text, text
    assert "pending" in text or "deferred" in text, text


def test_sender_must_be_owned(sub):
    s = starttls_client(sub)
    s.login(USER, PASSWORD)
    code, resp = s.mail("bob@example.test")
    assert code == 553 and resp.startswith(b"5.7.1"), (code, resp)
    s.rset()
    assert s.mail("team@example.test")[0] == 250     # given by auth.senders
    s.rset()
    assert s.mail("")[0] == 553                       # the null sender is nobody's
    s.quit()


def test_wrong_password_then_throttle(fulmar_factory):
    # A daemon of its own: the throttle is per client address.
    d = fulmar_factory(start=False)
    users = os.path.join(d.root, "users")
    r = subprocess.run([d.bin, "user", "add", "--users-file", users, USER],
                       input=(PASSWORD + "\n").encode(), capture_output=True, env=d.env())
    assert r.returncode == 0, r.stderr
    port = fulmar_test.free_port()
    d.config["listeners"].append(dict(address="127.0.0.1", port=port, role="submission",
                                      auth_plaintext=True))
    d.config["auth"] = {"users_file": users}
    d.write_config()
    d.start()
    replies = []
    t0 = time.time()
    with SMTPClient(port) as c:
        c.ehlo()
        for i in range(6):
            replies.append(c.cmd("AUTH PLAIN " + b64("\0%s\0wrong%d" % (USER, i)),
                                 timeout=30))
    elapsed = time.time() - t0
    codes = [r.code for r in replies]
    assert codes[:4] == [535] * 4, replies
    assert all(r.enh == "5.7.8" for r in replies[:4])
    assert codes[4:] == [454, 454], replies          # refused for a while now
    assert elapsed >= 1 + 2 + 3 + 4 - 0.5, elapsed   # each failure waits longer
    with SMTPClient(port) as c:                        # even the right password
        c.ehlo()
        expect(c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))), 454, "4.7.0")
    log = d.log_text()
    assert "event=auth_failed" in log and PASSWORD not in log and "wrong0" not in log


@pytest.mark.parametrize("line,code,enh", [
    ("AUTH PLAIN !!!notbase64", 501, "5.5.2"),
    ("AUTH PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))[:-1], 501, "5.5.2"),  # padding
    ("AUTH PLAIN " + b64("no-nul-at-all"), 501, "5.5.2"),
    ("AUTH PLAIN " + b64("other@example.test\0%s\0%s" % (USER, PASSWORD)), 535, "5.7.8"),
    ("AUTH PLAIN =", 501, "5.5.2"),                                    # empty
    ("AUTH CRAM-MD5", 504, "5.5.4"),
    ("AUTH", 501, "5.5.4"),
])
def test_malformed_auth(sub, line, code, enh):
    with SMTPClient(sub.ports["plain"]) as c:
        c.ehlo()
        expect(c.cmd(line), code, enh)
        expect(c.cmd("NOOP"), 250)


def test_auth_cancel_and_continuations(sub):
    with SMTPClient(sub.ports["plain"]) as c:
        c.ehlo()
        expect(c.cmd("AUTH LOGIN"), 334)
        expect(c.cmd("*"), 501, "5.0.0")
        expect(c.cmd("AUTH PLAIN"), 334)
        expect(c.cmd("x" * 20000), 500, "5.5.2")       # over-long response line
        expect(c.cmd("AUTH LOGIN " + b64(USER)), 334)
        expect(c.cmd(b64(PASSWORD)), 235, "2.7.0")
        expect(c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))), 503, "5.5.1")


@pytest.mark.parametrize("flags", [["--tls"], ["--tlsc"]])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_auth(sub, flags, mech):
    port = sub.ports["submissions"] if flags == ["--tlsc"] else sub.ports["submission"]
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port] + flags +
                       ["--auth", mech, "--auth-user", USER, "--auth-password", PASSWORD,
                        "--from", USER, "--to", "carol@example.test",
                        "--body", "swaks %s %s" % (mech, flags[0])],
                       capture_output=True, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "235 2.7.0" in out and "queued as" in out, out


@pytest.mark.parametrize("scheme", ["smtps", "smtp"])
def test_curl_auth(sub, scheme, tmp_path):
    port = sub.ports["submissions"] if scheme == "smtps" else sub.ports["submission"]
    msg = tmp_path / "m.eml"
    msg.write_bytes(make_message(subject="curl " + scheme, sender=USER))
    args = ["curl", "-sS", "--max-time", "30", "-k", "%s://127.0.0.1:%d" % (scheme, port),
            "--user", "%s:%s" % (USER, PASSWORD), "--mail-from", USER,
            "--mail-rcpt", "carol@example.test", "--upload-file", str(msg)]
    if scheme == "smtp":
        args.append("--ssl-reqd")
    r = subprocess.run(args, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")


def test_auth_forgotten_after_starttls_is_required(sub):
    """AUTH state from before TLS never survives it (plaintext listener
    with STARTTLS is not configured; check on 587 that AUTH only appears
    after the handshake)."""
    sock = socket.create_connection(("127.0.0.1", sub.ports["submission"]), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"EHLO x.client.test\r\n")
    lines = []
    while True:
        ln = f.readline()
        lines.append(ln)
        if ln[3:4] == b" ":
            break
    assert not any(b"AUTH" in ln for ln in lines)
    sock.close()


def clear(d, user):
    new = os.path.join(d.maildir(user), "new")
    for f in os.listdir(new):
        os.unlink(os.path.join(new, f))


def submit_raw(d, port, body_bytes):
    clear(d, "carol")
    with SMTPClient(port) as c:
        c.ehlo()
        expect(c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))), 235)
        expect(c.cmd("MAIL FROM:<%s>" % USER), 250)
        expect(c.cmd("RCPT TO:<carol@example.test>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(fulmar_test.dot_stuff(body_bytes) + b".\r\n")
        return expect(c.reply(), 250, "2.0.0").queue_id


def take_one(d, user):
    data = wait_for_one(d.maildir(user))
    clear(d, user)
    return data


def test_submission_adds_message_id_and_date(sub):
    qid = submit_raw(sub, sub.ports["plain"], b"Subject: bare\r\n\r\nno id, no date\r\n")
    data = take_one(sub, "carol")
    head = data.split(b"\n\n")[0]
    assert b"\nMessage-ID: <%s." % qid.encode() in head, head
    assert b"@mx.test.local>" in head and b"\nDate: " in head, head
    assert data.endswith(b"Subject: bare\n\nno id, no date\n"), data


def test_submission_keeps_existing_fields(sub):
    msg = (b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nmessage-id: <x@client.test>\r\n"
           b"Subject: complete\r\n\r\nbody\r\n")
    submit_raw(sub, sub.ports["plain"], msg)
    data = take_one(sub, "carol")
    assert data.count(b"Message-ID") + data.lower().count(b"message-id") == 1, data
    assert data.endswith(msg.replace(b"\r\n", b"\n")), data
    assert data.count(b"\nDate: ") == 1, data


def test_mx_does_not_add_fields(sub):
    clear(sub, "carol")
    with SMTPClient(sub.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["carol@example.test"], b"Subject: mx\r\n\r\nx\r\n")
    data = take_one(sub, "carol")
    assert b"Message-ID" not in data and b"\nDate:" not in data, data


def test_msmtp(sub, tmp_path):
    rc = tmp_path / "msmtprc"
    rc.write_text("account default\nhost 127.0.0.1\nport %d\ntls on\ntls_starttls on\n"
                  "tls_certcheck off\nauth on\nuser %s\npassword %s\nfrom %s\n"
                  % (sub.ports["submission"], USER, PASSWORD, USER))
    os.chmod(rc, 0o600)
    clear(sub, "carol")
    r = subprocess.run(["msmtp", "-C", str(rc), "carol@example.test"],
                       input=b"Subject: msmtp\n\nsent by msmtp\n", capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert b"sent by msmtp" in take_one(sub, "carol")


def test_openssl_s_client_implicit_tls(sub):
    r = subprocess.run(["openssl", "s_client", "-connect",
                        "127.0.0.1:%d" % sub.ports["submissions"], "-brief", "-ign_eof"],
                       input=b"ehlo s.client.test\r\nquit\r\n", capture_output=True,
                       timeout=30)
    text = (r.stdout + r.stderr).decode(errors="replace")
    assert "Protocol version: TLSv1.3" in text, text
    assert "220 mx.test.local" in text and "250-AUTH PLAIN LOGIN" in text, text
    assert "221 2.0.0" in text, text


def test_mail_auth_parameter_accepted(sub):
    with SMTPClient(sub.ports["plain"]) as c:
        c.ehlo()
        expect(c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))), 235)
        expect(c.cmd("MAIL FROM:<%s> AUTH=<>" % USER), 250)
        expect(c.cmd("RSET"), 250)
        expect(c.cmd("MAIL FROM:<%s> AUTH=%s" % (USER, USER)), 250)


def test_tls_handshake_timeout(fulmar_factory):
    d = fulmar_factory(start=False, timeouts={"tls_handshake": 1.0})
    cert = os.path.join(d.root, "cert.pem")
    key = os.path.join(d.root, "key.pem")
    subprocess.run([d.bin, "tls", "selfsigned", "--cert", cert, "--key", key],
                   check=True, capture_output=True, env=d.env())
    port = fulmar_test.free_port()
    d.config["listeners"].append(dict(address="127.0.0.1", port=port, role="submissions",
                                      tls_cert=cert, tls_key=key))
    d.write_config()
    d.start()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.time()
    sock.settimeout(10)
    got = sock.recv(100)          # we never send a ClientHello
    assert got == b"" and time.time() - t0 < 5, got
    sock.close()


def test_mx_listener_with_auth_enabled(fulmar_factory):
    """auth = true on an mx listener: AUTH offered (here without TLS, as
    auth_plaintext allows), and an authenticated client may relay."""
    d = fulmar_factory(start=False)
    users = os.path.join(d.root, "users")
    subprocess.run([d.bin, "user", "add", "--users-file", users, USER],
                   input=(PASSWORD + "\n").encode(), check=True, capture_output=True,
                   env=d.env())
    d.config["listeners"][0].update({"auth": True, "auth_plaintext": True})
    d.config["auth"] = {"users_file": users}
    d.write_config()
    d.start()
    with SMTPClient(d.port) as c:
        assert "AUTH PLAIN LOGIN" in c.ehlo().text
        expect(c.cmd("RCPT TO:<x@remote.test>"), 503)           # no MAIL yet
        expect(c.cmd("MAIL FROM:<other@client.test>"), 250)      # mx: no AUTH needed
        expect(c.cmd("RCPT TO:<x@remote.test>"), 554, "5.7.1")   # but no relaying
        expect(c.cmd("RSET"), 250)
        expect(c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))), 235)
        expect(c.cmd("MAIL FROM:<%s>" % USER), 250)
        expect(c.cmd("RCPT TO:<x@remote.test>"), 250)
