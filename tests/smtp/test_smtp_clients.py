"""Real clients: swaks, Python's smtplib and curl's smtp://."""

import email
import email.message
import email.policy
import os
import shutil
import smtplib
import subprocess

import pytest

from fulmar_test import (SMTPClient, check_added_headers, crlf, make_message, maildir_files,
                         split_delivered, to_lf, wait_for_count, wait_for_one)

pytestmark = pytest.mark.timeout(60)


def need(tool):
    if shutil.which(tool) is None:
        pytest.fail("%s is not installed (apt-get install %s)" % (tool, tool))


def write(d, name, data):
    p = os.path.join(d.root, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


# ---------------------------------------------------------------------------
# swaks

def test_swaks_simple(fulmar):
    need("swaks")
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(fulmar.port),
                        "--ehlo", "swaks.client.test", "--from", "swaks@client.test",
                        "--to", "alice@example.test", "--header", "Subject: from swaks",
                        "--body", "Hello from swaks.\n"],
                       capture_output=True, timeout=30)
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, out + r.stderr.decode()
    assert "queued as" in out, out
    data = wait_for_one(fulmar.maildir("alice"))
    assert b"Subject: from swaks\n" in data
    assert b"\n\nHello from swaks.\n" in data, data
    fields = split_delivered(data, data[data.index(b"Date:"):])
    check_added_headers(fields, "swaks@client.test", "alice@example.test",
                        helo="swaks.client.test", for_rcpt="alice@example.test")


def test_swaks_pipelining_multiple_recipients_exact_data(fulmar):
    need("swaks")
    msg = make_message(subject="swaks data", body="line\n.dot\n..two\n")
    # swaks sends CRLF "." CRLF after the data: the file has no final newline
    path = write(fulmar, "swaks.eml", to_lf(msg)[:-1])
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(fulmar.port),
                        "--pipeline", "--ehlo", "swaks.client.test",
                        "--from", "swaks@client.test",
                        "--to", "bob@example.test,carol@example.test", "--data", "@" + path],
                       capture_output=True, timeout=30)
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, out + r.stderr.decode()
    for u in ("bob", "carol"):
        split_delivered(wait_for_one(fulmar.maildir(u)), msg)


def test_swaks_rejected_recipient_fails(fulmar):
    need("swaks")
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(fulmar.port),
                        "--from", "swaks@client.test", "--to", "someone@remote.test"],
                       capture_output=True, timeout=30)
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode != 0, out
    assert "554 5.7.1" in out, out


# ---------------------------------------------------------------------------
# smtplib

def test_smtplib_sendmail(fulmar):
    # smtplib sends bytes as they are: real clients send CRLF lines
    msg = make_message(subject="smtplib sendmail", body="Hi.\n.leading dot\n")
    with smtplib.SMTP("127.0.0.1", fulmar.port, local_hostname="py.client.test",
                      timeout=15) as s:
        code, _ = s.ehlo()
        assert code == 250
        for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "smtputf8",
                    "chunking", "dsn"):
            assert s.has_extn(ext), "EHLO lacks %s: %r" % (ext, s.esmtp_features)
        refused = s.sendmail("py@client.test", ["alice@example.test"], msg)
        assert refused == {}
    fields = split_delivered(wait_for_one(fulmar.maildir("alice")), msg)
    check_added_headers(fields, "py@client.test", "alice@example.test", helo="py.client.test")


def test_smtplib_send_message(fulmar):
    m = email.message.EmailMessage()
    m["From"] = "Py <py@client.test>"
    m["To"] = "bob@example.test, team@example.test"
    m["Subject"] = "send_message"
    m.set_content("Body of send_message.\n")
    m.add_attachment(bytes(range(256)) * 50, maintype="application", subtype="octet-stream",
                     filename="blob.bin")
    with smtplib.SMTP("127.0.0.1", fulmar.port, timeout=15) as s:
        refused = s.send_message(m)
        assert refused == {}
    for u in ("alice", "bob"):
        data = wait_for_one(fulmar.maildir(u))
        got = email.message_from_bytes(data, policy=email.policy.default)
        assert got["Subject"] == "send_message"
        assert got["Return-Path"] == "<py@client.test>"
        parts = list(got.iter_attachments())
        assert len(parts) == 1 and parts[0].get_content() == bytes(range(256)) * 50
        assert got.get_body().get_content() == "Body of send_message.\n"


def test_smtplib_partial_refusal(fulmar):
    msg = make_message(subject="partial")
    with smtplib.SMTP("127.0.0.1", fulmar.port, timeout=15) as s:
        refused = s.sendmail("py@client.test",
                             ["carol@example.test", "nobody@example.test"], msg)
        assert list(refused) == ["nobody@example.test"]
        assert refused["nobody@example.test"][0] == 550
    split_delivered(wait_for_one(fulmar.maildir("carol")), msg)


def test_smtplib_all_refused(fulmar):
    with smtplib.SMTP("127.0.0.1", fulmar.port, timeout=15) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail("py@client.test", ["x@remote.test"], b"Subject: no\r\n\r\nno\r\n")
        assert e.value.recipients["x@remote.test"][0] == 554


def test_smtplib_smtputf8(fulmar):
    sender = "pý@clïent.test"
    rcpt = "ünïcode@catchall.test"
    msg = crlf("From: <%s>\nTo: <%s>\nSubject: Grüße\nMIME-Version: 1.0\n"
               "Content-Type: text/plain; charset=utf-8\n\nÜnïcödé bödy ✓\n" % (sender, rcpt))
    with smtplib.SMTP("127.0.0.1", fulmar.port, timeout=15) as s:
        s.ehlo()
        assert s.has_extn("smtputf8")
        refused = s.sendmail(sender, [rcpt], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}
    fields = split_delivered(wait_for_one(fulmar.maildir("dave")), msg)
    check_added_headers(fields, sender, "dave@catchall.test", proto="UTF8SMTP")


def test_smtplib_verify_help_noop_rset(fulmar):
    with smtplib.SMTP("127.0.0.1", fulmar.port, timeout=15) as s:
        assert s.verify("alice")[0] == 252
        assert s.help().startswith(b"2.0.0")
        assert s.noop()[0] == 250
        assert s.rset()[0] == 250
        assert s.docmd("EXPN", "team")[0] == 502


def test_smtplib_many_messages_one_connection(fulmar):
    with smtplib.SMTP("127.0.0.1", fulmar.port, timeout=15) as s:
        for i in range(20):
            s.sendmail("py@client.test", ["bob@example.test"],
                       b"Subject: n%d\r\n\r\nbody %d\r\n" % (i, i))
    got = wait_for_count(fulmar.maildir("bob"), 20)
    assert len(got) == 20
    assert sorted(g[g.index(b"Subject:"):] for g in got) == \
        sorted(b"Subject: n%d\n\nbody %d\n" % (i, i) for i in range(20))


# ---------------------------------------------------------------------------
# curl

def test_curl_smtp(fulmar):
    need("curl")
    msg = make_message(subject="from curl", body="curl body\n.dot line\n")
    path = write(fulmar, "curl.eml", msg)   # curl uploads the file as is: CRLF
    r = subprocess.run(["curl", "-sS", "--max-time", "20",
                        "smtp://127.0.0.1:%d/curl.client.test" % fulmar.port,
                        "--mail-from", "curl@client.test",
                        "--mail-rcpt", "carol@example.test", "--mail-rcpt", "bob@example.test",
                        "--upload-file", path],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    for u in ("carol", "bob"):
        fields = split_delivered(wait_for_one(fulmar.maildir(u)), msg)
        check_added_headers(fields, "curl@client.test", "%s@example.test" % u,
                            helo="curl.client.test")


def test_curl_refused_relay(fulmar):
    need("curl")
    path = write(fulmar, "curl2.eml", b"Subject: relay\r\n\r\nno\r\n")
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "smtp://127.0.0.1:%d" % fulmar.port,
                        "--mail-from", "curl@client.test", "--mail-rcpt", "a@remote.test",
                        "--upload-file", path],
                       capture_output=True, timeout=30)
    assert r.returncode != 0
    assert "554" in r.stderr.decode(), r.stderr.decode()
    assert all(maildir_files(fulmar.maildir(u)) == [] for u in ("alice", "bob", "carol", "dave"))


def test_raw_and_real_clients_share_the_daemon(fulmar):
    """A raw session stays usable while smtplib delivers alongside."""
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        with smtplib.SMTP("127.0.0.1", fulmar.port, timeout=15) as s:
            s.sendmail("py@client.test", ["alice@example.test"], b"Subject: a\r\n\r\na\r\n")
        qid = c.send_mail("raw@client.test", ["alice@example.test"],
                          make_message(subject="raw"))
        assert qid
    assert len(wait_for_count(fulmar.maildir("alice"), 2)) == 2
