"""CHUNKING / BDAT (RFC 3030)."""

import time

import pytest

from fulmar_test import (SMTPClient, all_maildir_counts, check_added_headers, expect,
                         make_message, split_delivered, wait_for_one)

pytestmark = pytest.mark.timeout(60)


def start(c, rcpt="alice@example.test"):
    c.ehlo("bdat.client.test")
    expect(c.mail("s@client.test"), 250, "2.1.0")
    expect(c.rcpt(rcpt), 250, "2.1.5")


@pytest.mark.parametrize("cuts", [
    [],                       # one chunk, LAST
    [1],                      # one octet, then the rest
    [10, 11, 12],             # a CRLF split across chunks
    "every-7",
])
def test_bdat_chunks(fulmar, cuts):
    msg = make_message(subject="chunks", body="a\n.b\n..c\n\n.\nend\n")
    if cuts == "every-7":
        cuts = list(range(7, len(msg), 7))
    bounds = [0] + list(cuts) + [len(msg)]
    with SMTPClient(fulmar.port) as c:
        start(c)
        for i in range(len(bounds) - 1):
            piece = msg[bounds[i]:bounds[i + 1]]
            last = i == len(bounds) - 2
            c.send(b"BDAT %d%s\r\n" % (len(piece), b" LAST" if last else b"") + piece)
            r = expect(c.reply(), 250, "2.0.0")
        qid = r.queue_id
        assert qid, r
    # BDAT content is taken as is: no dot-unstuffing
    fields = split_delivered(wait_for_one(fulmar.maildir("alice")), msg)
    check_added_headers(fields, "s@client.test", "alice@example.test", helo="bdat.client.test",
                        qid=qid, for_rcpt="alice@example.test")


def test_bdat_zero_last_ends(fulmar):
    msg = make_message(subject="zero last")
    with SMTPClient(fulmar.port) as c:
        start(c, "bob@example.test")
        c.send(b"BDAT %d\r\n" % len(msg) + msg)
        expect(c.reply(), 250, "2.0.0")
        r = expect(c.cmd("BDAT 0 LAST"), 250, "2.0.0")
        assert r.queue_id
    split_delivered(wait_for_one(fulmar.maildir("bob")), msg)


def test_bdat_chunk_written_slowly(fulmar):
    msg = make_message(subject="slow chunk", body="x" * 500 + "\n")
    with SMTPClient(fulmar.port) as c:
        start(c)
        c.send(b"BDAT %d LAST\r\n" % len(msg))
        for i in range(0, len(msg), 50):
            c.send(msg[i:i + 50])
            time.sleep(0.005)
        expect(c.reply(), 250, "2.0.0")
    split_delivered(wait_for_one(fulmar.maildir("alice")), msg)


def test_bdat_before_rcpt(fulmar):
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.cmd("BDAT 0 LAST"), 503, "5.5.1")
        expect(c.mail("s@client.test"), 250)
        expect(c.cmd("BDAT 0 LAST"), 503, "5.5.1")


def test_bdat_refused_chunk_is_not_read_as_commands(fulmar):
    """A BDAT refused for its state still frames its chunk: the octets are
    skipped, never executed as commands."""
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        c.send(b"BDAT 6\r\nHELP\r\nRSET\r\n")
        expect(c.reply(), 503, "5.5.1")
        r = c.reply()
        assert r.code == 250, "the chunk was executed as a command: %r" % r
        assert c.pending(0.3) == b""


def test_data_after_bdat(fulmar):
    with SMTPClient(fulmar.port) as c:
        start(c)
        c.send(b"BDAT 4\r\nab\r\n")
        expect(c.reply(), 250, "2.0.0")
        expect(c.cmd("DATA"), 503, "5.5.1")
        expect(c.cmd("RSET"), 250, "2.0.0")
        expect(c.cmd("NOOP"), 250, "2.0.0")
    time.sleep(0.5)
    assert all(v == 0 for v in all_maildir_counts(fulmar).values())


def test_rset_discards_bdat_chunks(fulmar):
    msg = make_message(subject="after rset")
    with SMTPClient(fulmar.port) as c:
        start(c)
        chunk = b"Subject: no\r\n"
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        expect(c.reply(), 250, "2.0.0")
        expect(c.cmd("RSET"), 250, "2.0.0")
        c.send_mail("s@client.test", ["alice@example.test"], msg)
    data = wait_for_one(fulmar.maildir("alice"))
    split_delivered(data, msg)
    assert b"Subject: no" not in data


def test_bdat_after_last_needs_new_transaction(fulmar):
    with SMTPClient(fulmar.port) as c:
        start(c)
        c.send(b"BDAT 4 LAST\r\nab\r\n")
        expect(c.reply(), 250, "2.0.0")
        expect(c.cmd("BDAT 0 LAST"), 503, "5.5.1")
        expect(c.mail("s@client.test"), 250)


@pytest.mark.parametrize("line", ["BDAT", "BDAT x", "BDAT -1", "BDAT 5 FOO", "BDAT 5 LAST X",
                                  "BDAT 1.5", "BDAT 123456789012345678901234"])
def test_bdat_syntax_errors(fulmar, line):
    with SMTPClient(fulmar.port) as c:
        start(c)
        expect(c.cmd(line), 501, "5.5.4")
        expect(c.cmd("NOOP"), 250, "2.0.0")
        msg = b"Subject: ok\r\n\r\nok\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        expect(c.reply(), 250, "2.0.0")
    assert wait_for_one(fulmar.maildir("alice")).endswith(b"Subject: ok\n\nok\n")


def test_bdat_binary_octets_are_kept(fulmar):
    """8-bit octets (no NUL, no CR or LF alone) pass through BDAT untouched."""
    body = bytes(b for b in range(1, 256) if b not in (10, 13)) + b"\r\n"
    msg = make_message(subject="octets", body=b"") + body
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test", "BODY=8BITMIME"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        expect(c.reply(), 250, "2.0.0")
    split_delivered(wait_for_one(fulmar.maildir("alice")), msg)
