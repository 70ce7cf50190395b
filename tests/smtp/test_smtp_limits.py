"""Limits: SIZE (RFC 1870) at MAIL and while the body streams in, text
lines, recipients, protocol errors, connections per IP, binary garbage."""

import random
import socket
import time

import pytest

from fulmar_test import (ConnectionClosed, SMTPClient, all_maildir_counts, expect,
                         make_message, split_delivered, wait_for_count, wait_for_one)

pytestmark = pytest.mark.timeout(60)


def nothing_delivered(d, wait=0.5):
    time.sleep(wait)
    counts = all_maildir_counts(d)
    assert all(v == 0 for v in counts.values()), counts


def sized_message(n, subject="sized"):
    """A message of about n octets with 78-octet lines."""
    head = make_message(subject=subject, body="")
    body = b""
    while len(head) + len(body) < n:
        body += b"z" * 76 + b"\r\n"
    return head + body


@pytest.fixture
def small(fulmar_factory):
    return fulmar_factory(limits={"message_size": 10000})


def test_size_at_mail(small):
    with SMTPClient(small.port) as c:
        r = c.ehlo()
        assert "SIZE 10000" in r.lines
        expect(c.mail("s@client.test", "SIZE=10001"), 552, "5.3.4")
        expect(c.mail("s@client.test", "SIZE=99999999999"), 552, "5.3.4")
        expect(c.mail("s@client.test", "SIZE=10000"), 250, "2.1.0")
        expect(c.rcpt("alice@example.test"), 250, "2.1.5")


def test_size_during_data(small):
    big = sized_message(20000, "too big")
    ok = sized_message(9000, "fits")
    with SMTPClient(small.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(big)
        assert c.pending(0.5) == b"", "the server answered before the end of data"
        c.send(b".\r\n")
        expect(c.reply(), 552, "5.3.4")
        # the session goes on
        expect(c.cmd("RSET"), 250, "2.0.0")
        c.send_mail("s@client.test", ["bob@example.test"], ok)
    split_delivered(wait_for_one(small.maildir("bob")), ok)
    assert all_maildir_counts(small)["alice"] == 0


def test_size_declared_small_but_sent_big(small):
    big = sized_message(30000, "liar")
    with SMTPClient(small.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test", "SIZE=100"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        r = c.data(big)
        expect(r, 552, "5.3.4")
        expect(c.cmd("NOOP"), 250, "2.0.0")
    nothing_delivered(small)


def test_size_during_bdat(small):
    chunk = b"y" * 78 + b"\r\n"
    part = chunk * 75   # 6000 octets
    with SMTPClient(small.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        c.send(b"BDAT %d\r\n" % len(part) + part)
        r1 = c.reply()
        c.send(b"BDAT %d LAST\r\n" % len(part) + part)
        r2 = c.reply()
        assert (r1.code, r1.enh) in ((250, "2.0.0"), (552, "5.3.4")), r1
        expect(r2, 552, "5.3.4")
        expect(c.cmd("RSET"), 250, "2.0.0")
        expect(c.cmd("NOOP"), 250, "2.0.0")
    nothing_delivered(small)


def test_text_line_too_long(fulmar):
    line = b"L" * 999 + b"\r\n"        # 1001 octets with CRLF
    msg = make_message(subject="long") + b"ok\r\n" + line + b"after\r\n"
    good = make_message(subject="after the long one")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(msg)
        assert c.pending(0.3) == b"", "the server answered before the end of data"
        c.send(b".\r\n")
        expect(c.reply(), 554, "5.6.0")
        c.send_mail("s@client.test", ["alice@example.test"], good)
    msgs = wait_for_count(fulmar.maildir("alice"), 1, settle=0.5)
    assert len(msgs) == 1
    split_delivered(msgs[0], good)


def test_text_line_limit_configured(fulmar_factory):
    d = fulmar_factory(limits={"text_line": 2000})
    fits = make_message(subject="fits", body="f" * 1998 + "\n")
    too = make_message(subject="too long", body="t" * 1999 + "\n")
    with SMTPClient(d.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["bob@example.test"], fits)
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("bob@example.test"), 250)
        expect(c.data(too), 554, "5.6.0")
    msgs = wait_for_count(d.maildir("bob"), 1)
    assert len(msgs) == 1
    split_delivered(msgs[0], fits)


def test_huge_line_without_newline_in_data(fulmar):
    """A megabyte with no line end must be rejected at the end, not
    buffered without bound, split or truncated."""
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(b"Subject: x\r\n\r\n" + b"A" * (1024 * 1024) + b"\r\n.\r\n")
        expect(c.reply(timeout=30), 554, "5.6.0")
        expect(c.cmd("NOOP"), 250, "2.0.0")
    nothing_delivered(fulmar)


def test_recipient_limit(fulmar_factory):
    d = fulmar_factory(limits={"recipients": 5})
    msg = make_message(subject="five")
    with SMTPClient(d.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        for i in range(5):
            expect(c.rcpt("u%d@catchall.test" % i), 250, "2.1.5")
        expect(c.rcpt("u5@catchall.test"), 452, "4.5.3")
        expect(c.rcpt("alice@example.test"), 452, "4.5.3")
        r = expect(c.data(msg), 250, "2.0.0")
        assert r.queue_id
    split_delivered(wait_for_one(d.maildir("dave")), msg)
    assert all_maildir_counts(d)["alice"] == 0


def test_default_recipient_limit_allows_1000(fulmar):
    with SMTPClient(fulmar.port, timeout=30) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        c.send("".join("RCPT TO:<r%d@catchall.test>\r\n" % i for i in range(1001)))
        codes = [c.reply().code for _ in range(1001)]
        assert codes[:1000] == [250] * 1000 and codes[1000] == 452, codes[995:]
        expect(c.cmd("RSET"), 250)


def test_protocol_error_limit(fulmar_factory):
    d = fulmar_factory(limits={"errors": 3})
    with SMTPClient(d.port) as c:
        c.ehlo()
        errors = 0
        last = None
        for _ in range(10):
            try:
                last = c.cmd("XYZZY")
            except (ConnectionClosed, OSError):
                break
            if last.code == 421:
                break
            expect(last, 500, "5.5.2")
            errors += 1
        expect(last, 421, "4.7.0")
        assert errors in (2, 3), "421 after %d errors with limits.errors = 3" % errors
        assert c.wait_closed(3), "still open after 421"
    with SMTPClient(d.port) as c:
        expect(c.greeting, 220)
        c.ehlo()


def test_errors_of_all_kinds_count(fulmar_factory):
    d = fulmar_factory(limits={"errors": 4})
    with SMTPClient(d.port) as c:
        c.ehlo()
        replies = []
        for line in ["RCPT TO:<alice@example.test>", "MAIL FROM:<bad", "XYZZY", "DATA",
                     "MAIL FROM:<s@client.test> FOO=1", "NOOP", "NOOP"]:
            try:
                r = c.cmd(line)
            except (ConnectionClosed, OSError):
                break
            replies.append(r)
            if r.code == 421:
                break
        assert replies[-1].code == 421 and replies[-1].enh == "4.7.0", replies
        assert c.wait_closed(3)


def test_connections_per_ip(fulmar_factory):
    d = fulmar_factory(limits={"connections_per_ip": 3})
    time.sleep(0.3)   # let the readiness probe's connection close
    held = [SMTPClient(d.port) for _ in range(3)]
    try:
        for c in held:
            expect(c.greeting, 220)
        extra = SMTPClient(d.port, read_greeting=False)
        try:
            r = extra.reply()
            expect(r, 421, "4.7.0")
            assert extra.wait_closed(3)
        finally:
            extra.close()
        held[0].quit()
        time.sleep(0.3)
        with SMTPClient(d.port) as c:
            expect(c.greeting, 220)
            c.ehlo()
        for c in held[1:]:
            expect(c.cmd("NOOP"), 250)
    finally:
        for c in held:
            c.close()


def test_total_connection_limit(fulmar_factory):
    d = fulmar_factory(limits={"connections": 4, "connections_per_ip": 100})
    time.sleep(0.3)
    held = [SMTPClient(d.port) for _ in range(4)]
    try:
        extra = SMTPClient(d.port, read_greeting=False)
        try:
            r = extra.reply()
            assert r.code == 421 and r.enh and r.enh.startswith("4."), r
            assert extra.wait_closed(3)
        finally:
            extra.close()
    finally:
        for c in held:
            c.close()
    time.sleep(0.3)
    with SMTPClient(d.port) as c:
        expect(c.greeting, 220)


def garbage(seed, n):
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        k = rnd.random()
        if k < 0.1:
            out += b"\r\n"
        elif k < 0.15:
            out += rnd.choice([b"\n", b"\r", b"\x00", b"MAIL FROM:<", b"DATA\r\n", b"BDAT 9"])
        else:
            out += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 80)))
    return bytes(out)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_binary_garbage(fulmar, seed):
    blob = garbage(seed, 64 * 1024)
    replies = []
    with SMTPClient(fulmar.port) as c:
        if seed % 2:
            c.ehlo()
        try:
            for i in range(0, len(blob), 4096):
                c.send(blob[i:i + 4096])
        except OSError:
            pass   # the server may close after its 421
        try:
            while True:
                replies.append(c.reply(timeout=10))
        except (ConnectionClosed, ConnectionResetError, socket.timeout):
            pass
    assert replies, "no reply at all to 64 KB of garbage"
    for r in replies:
        assert r.code >= 500 or r.code == 421 or r.code in (250, 354), r
    # whatever the garbage did, a well-behaved client is served
    msg = make_message(subject="after garbage %d" % seed)
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["carol@example.test"], msg)
    got = wait_for_count(fulmar.maildir("carol"), 1)
    assert sum(g.endswith(msg.replace(b"\r\n", b"\n")) for g in got) == 1


def test_garbage_ends_in_421(fulmar):
    """Lines of junk are protocol errors: the server gives up with 421."""
    rnd = random.Random(7)
    lines = b"".join(bytes(rnd.randrange(33, 127) for _ in range(20)) + b"\r\n"
                     for _ in range(50))
    replies = []
    with SMTPClient(fulmar.port) as c:
        try:
            c.send(lines)
        except OSError:
            pass
        try:
            while True:
                replies.append(c.reply(timeout=10))
        except (ConnectionClosed, ConnectionResetError, socket.timeout):
            pass
    assert replies and replies[-1].code == 421 and replies[-1].enh == "4.7.0", replies[-3:]
    assert all(r.code == 500 for r in replies[:-1]), replies
    assert len(replies) <= 22, "default limits.errors is 20, got %d replies" % len(replies)
