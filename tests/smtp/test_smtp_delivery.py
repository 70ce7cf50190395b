"""Accepted mail reaches the right Maildirs, byte-exact, with the headers
Fulmar adds (Return-Path, Delivered-To, Received) and logs that carry the
queue id."""

import hashlib
import os
import re
import time

import pytest

from fulmar_test import (SMTPClient, all_maildir_counts, check_added_headers, crlf, expect,
                         maildir_files, maildir_tmp_files, make_message, split_delivered,
                         to_lf, wait_for_count, wait_for_one, wait_until)

pytestmark = pytest.mark.timeout(60)


def test_delivery_byte_exact_with_added_headers(fulmar):
    msg = make_message(subject="hello alice", body="Line one.\nLine two.\n\n-- \nsig\n")
    with SMTPClient(fulmar.port) as c:
        c.ehlo("sender.client.test")
        qid = c.send_mail("sender@client.test", ["alice@example.test"], msg)
        expect(c.cmd("QUIT"), 221, "2.0.0")
    data = wait_for_one(fulmar.maildir("alice"))
    fields = split_delivered(data, msg)
    check_added_headers(fields, "sender@client.test", "alice@example.test",
                        helo="sender.client.test", qid=qid, for_rcpt="alice@example.test")
    names = [n for n, _ in fields]
    assert names == ["return-path", "delivered-to", "received"], fields
    md = fulmar.maildir("alice")
    for sub in ("tmp", "new", "cur"):
        assert os.path.isdir(os.path.join(md, sub)), "no %s/ in the Maildir" % sub
    assert maildir_tmp_files(md) == []
    assert os.path.dirname(maildir_files(md)[0]).endswith("/new")
    for u in ("bob", "carol", "dave"):
        assert maildir_files(fulmar.maildir(u)) == []
    assert wait_until(lambda: fulmar.queue_list() == [], 10), fulmar.queue_list()


def test_queue_id_in_logs(fulmar):
    msg = make_message(subject="log me")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        qid = c.send_mail("sender@client.test", ["team@example.test"], msg)
    wait_for_count(fulmar.maildir("bob"), 1)
    wait_for_count(fulmar.maildir("alice"), 1)
    wait_until(lambda: len(fulmar.log_lines_with(qid)) >= 3, 5)
    lines = fulmar.log_lines_with(qid)
    assert any(re.search(r"\bqueued\b", ln) for ln in lines), \
        "no 'queued' line with id %s:\n%s" % (qid, fulmar.log_tail())
    deliveries = [ln for ln in lines if re.search(r"deliver", ln, re.I)]
    assert len(deliveries) >= 2, "expected a delivery line per mailbox for %s:\n%s" % (
        qid, "\n".join(lines))
    for ln in lines:
        assert re.search(r"\b\w+=\S", ln), "not key=value: %r" % ln


def test_null_sender(fulmar):
    msg = make_message(subject="bounce", sender="MAILER-DAEMON@client.test")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<>"), 250, "2.1.0")
        expect(c.rcpt("bob@example.test"), 250, "2.1.5")
        r = expect(c.data(msg), 250, "2.0.0")
    fields = split_delivered(wait_for_one(fulmar.maildir("bob")), msg)
    assert fields[0] == ("return-path", "<>"), fields
    check_added_headers(fields, "", "bob@example.test", qid=r.queue_id)


def test_alias_fans_out_once_per_mailbox(fulmar):
    msg = make_message(subject="to the team", to="team@example.test")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["team@example.test"], msg)
    for user in ("alice", "bob"):
        fields = split_delivered(wait_for_one(fulmar.maildir(user)), msg)
        check_added_headers(fields, "s@client.test", "%s@example.test" % user)
    assert maildir_files(fulmar.maildir("carol")) == []


def test_plus_tag_goes_to_user(fulmar):
    msg = make_message(subject="tagged")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["carol+lists@example.test"], msg)
    fields = split_delivered(wait_for_one(fulmar.maildir("carol")), msg)
    check_added_headers(fields, "s@client.test", "carol@example.test")


def test_unknown_plus_tag_is_still_unknown(session):
    expect(session.mail("s@client.test"), 250, "2.1.0")
    expect(session.rcpt("nobody+x@example.test"), 550, "5.1.1")


@pytest.mark.parametrize("rcpt", ["dave@catchall.test", "whoever@catchall.test",
                                  "x.y+z@CATCHALL.TEST"])
def test_catch_all(fulmar, rcpt):
    msg = make_message(subject="catch " + rcpt)
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", [rcpt], msg)
    fields = split_delivered(wait_for_one(fulmar.maildir("dave")), msg)
    check_added_headers(fields, "s@client.test", "dave@catchall.test")


def test_same_mailbox_twice_in_one_transaction_delivers_once(fulmar):
    msg = make_message(subject="dedupe")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["alice@example.test", "postmaster@example.test",
                                      "alice+x@example.test", "team@example.test",
                                      "ALICE@example.test", "alice@example.test"], msg)
    wait_for_count(fulmar.maildir("alice"), 1, settle=1.0)
    assert len(maildir_files(fulmar.maildir("alice"))) == 1
    split_delivered(wait_for_one(fulmar.maildir("alice")), msg)
    split_delivered(wait_for_one(fulmar.maildir("bob")), msg)


def test_domain_is_case_insensitive(fulmar):
    msg = make_message(subject="case domain")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["bob@Example.TEST"], msg)
    split_delivered(wait_for_one(fulmar.maildir("bob")), msg)


def test_several_transactions_one_session(fulmar):
    msgs = [make_message(subject="n%d" % i, body="body %d\n" % i) for i in range(5)]
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        ids = [c.send_mail("s@client.test", ["carol@example.test"], m) for m in msgs]
        expect(c.cmd("QUIT"), 221, "2.0.0")
    assert len(set(ids)) == 5, ids
    got = wait_for_count(fulmar.maildir("carol"), 5)
    assert len(got) == 5
    for m in msgs:
        assert sum(1 for g in got if g.endswith(to_lf(m))) == 1


def test_multiple_recipients_one_copy_each(fulmar):
    msg = make_message(subject="three")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        qid = c.send_mail("s@client.test", ["alice@example.test", "bob@example.test",
                                            "carol@example.test"], msg)
    for u in ("alice", "bob", "carol"):
        fields = split_delivered(wait_for_one(fulmar.maildir(u)), msg)
        check_added_headers(fields, "s@client.test", "%s@example.test" % u, qid=qid)


DOT_BODY = ".\n..\n...\n.hidden\n..double\n . not at start\nend.\nlast line\n"


def test_dot_stuffing_round_trip(fulmar):
    msg = make_message(subject="dots", body=DOT_BODY)
    assert b"\r\n.\r\n" in msg and b"\r\n..\r\n" in msg
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["alice@example.test"], msg)  # send_mail stuffs
    split_delivered(wait_for_one(fulmar.maildir("alice")), msg)


def test_dot_unstuffing_of_raw_stuffed_lines(fulmar):
    # Written stuffed by hand: "..x" -> ".x", "...." -> "...", and a lone
    # "." inside a line is data.
    raw = b"Subject: raw dots\r\n\r\n..x\r\n....\r\na.b\r\n.. \r\n"
    want = b"Subject: raw dots\n\n.x\n...\na.b\n. \n"
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(raw + b".\r\n")
        expect(c.reply(), 250, "2.0.0")
    assert wait_for_one(fulmar.maildir("alice")).endswith(want)


def test_body_sent_one_octet_at_a_time(fulmar):
    msg = make_message(subject="slow", body="a\n.\n..b\nc\n")
    payload = b"DATA\r\n" + msg.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        for i in range(len(payload)):
            c.send(payload[i:i + 1])
            if payload[:i + 1] == b"DATA\r\n":
                expect(c.reply(), 354)
        expect(c.reply(), 250, "2.0.0")
    split_delivered(wait_for_one(fulmar.maildir("alice")), msg)


def test_8bit_message(fulmar):
    body = "Grüße aus Köln — naïve café ✓\n".encode("utf-8") + b"latin1: \xe9\xe8\xff\n"
    msg = make_message(subject="8bit", body=body,
                       extra_headers=["MIME-Version: 1.0",
                                      "Content-Type: text/plain; charset=utf-8",
                                      "Content-Transfer-Encoding: 8bit"])
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test", "BODY=8BITMIME"), 250, "2.1.0")
        expect(c.rcpt("alice@example.test"), 250, "2.1.5")
        expect(c.data(msg), 250, "2.0.0")
    split_delivered(wait_for_one(fulmar.maildir("alice")), msg)


def test_smtputf8_message(fulmar):
    sender = "jöhn@exämple.test"
    rcpt = "dövé@catchall.test"
    msg = crlf(("From: Jöhn <%s>\nTo: <%s>\nSubject: Ünïcödé ✉\nMessage-ID: <u1@exämple.test>\n"
                "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
                "Привет, мир! 你好\n" % (sender, rcpt)).encode("utf-8"))
    with SMTPClient(fulmar.port) as c:
        c.ehlo("utf8.client.test")
        expect(c.cmd("MAIL FROM:<%s> SMTPUTF8 BODY=8BITMIME" % sender), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<%s>" % rcpt), 250, "2.1.5")
        r = expect(c.data(msg), 250, "2.0.0")
    fields = split_delivered(wait_for_one(fulmar.maildir("dave")), msg)
    check_added_headers(fields, sender, "dave@catchall.test", helo="utf8.client.test",
                        qid=r.queue_id, proto="UTF8SMTP")


def test_longest_allowed_text_line(fulmar):
    line = "x" * 998   # 1000 octets with CRLF: the default text_line limit
    msg = make_message(subject="long line", body=line + "\n")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["alice@example.test"], msg)
    split_delivered(wait_for_one(fulmar.maildir("alice")), msg)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_20mb_message_byte_exact(fulmar_factory):
    d = fulmar_factory(limits={"message_size": 30 * 1024 * 1024})
    import random
    rnd = random.Random(20)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    lines = []
    size = 0
    i = 0
    while size < 20 * 1024 * 1024:
        i += 1
        if i % 1000 == 0:
            ln = "." + "".join(rnd.choice(alphabet) for _ in range(20))  # needs stuffing
        else:
            ln = "".join(rnd.choice(alphabet) for _ in range(76))
        lines.append(ln)
        size += len(ln) + 2
    msg = make_message(subject="twenty megabytes", body="\n".join(lines) + "\n")
    assert len(msg) > 20 * 1024 * 1024
    with SMTPClient(d.port, timeout=120) as c:
        c.ehlo()
        expect(c.mail("s@client.test", "SIZE=%d" % len(msg)), 250, "2.1.0")
        expect(c.rcpt("alice@example.test"), 250, "2.1.5")
        r = c.data(msg)
        expect(r, 250, "2.0.0")
    data = wait_for_count(d.maildir("alice"), 1, timeout=60)
    assert len(data) == 1
    want = to_lf(msg)
    assert data[0].endswith(want), "20 MB message differs: got %d octets (sha256 %s), " \
        "want tail of %d (sha256 %s)" % (len(data[0]), hashlib.sha256(data[0]).hexdigest(),
                                         len(want), hashlib.sha256(want).hexdigest())
    split_delivered(data[0], msg)


def test_nothing_delivered_after_rset(fulmar):
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        expect(c.cmd("RSET"), 250, "2.0.0")
        expect(c.cmd("DATA"), 503, "5.5.1")
    time.sleep(0.5)
    assert all(v == 0 for v in all_maildir_counts(fulmar).values())
