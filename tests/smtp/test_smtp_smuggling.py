"""SMTP smuggling (CVE-2023-51764 family): only CRLF.CRLF ends DATA; a bare
LF or bare CR anywhere in the content rejects the message (554 5.5.2) after
the real end, and never ends or splits it."""

import time

import pytest

from fulmar_test import (ConnectionClosed, SMTPClient, all_maildir_counts, expect, make_message, maildir_files,
                         maildir_messages, split_delivered, wait_for_count)

pytestmark = pytest.mark.timeout(60)

# What a smuggler puts where CRLF.CRLF should be.
VARIANTS = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "lf-dot-cr": b"\n.\r",
    "cr-lf-dot-lf-crlf": b"\r\n.\n\r\n",
}

SMUGGLED = (b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
            b"From: ceo@example.test\r\nSubject: smuggled\r\n\r\nwire the money\r\n")


def after_message():
    return make_message(subject="legit after", to="carol@example.test")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_smuggling_variant(fulmar, name):
    evil_end = VARIANTS[name]
    first = b"From: a@client.test\r\nSubject: first\r\n\r\nfirst body"
    legit = after_message()
    payload = (b"EHLO smuggler.test\r\nMAIL FROM:<a@client.test>\r\n"
               b"RCPT TO:<alice@example.test>\r\nDATA\r\n"
               + first + evil_end + SMUGGLED + b".\r\n"
               + b"RSET\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n"
               + legit + b".\r\nQUIT\r\n")
    with SMTPClient(fulmar.port) as c:
        c.send(payload)
        expect(c.reply(), 250)
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 354)
        expect(c.reply(), 554, "5.5.2")          # the whole thing, rejected once
        expect(c.reply(), 250, "2.0.0")          # RSET: the session is sane
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 354)
        assert expect(c.reply(), 250, "2.0.0").queue_id
        expect(c.reply(), 221, "2.0.0")
    carol = wait_for_count(fulmar.maildir("carol"), 1, settle=0.5)
    assert len(carol) == 1
    split_delivered(carol[0], legit)
    counts = all_maildir_counts(fulmar)
    assert counts["bob"] == 0, "smuggled message delivered to bob"
    assert counts["alice"] == 0, "message with a bare line end delivered"
    for data in maildir_messages(fulmar.maildir("carol")):
        assert b"wire the money" not in data and b"first body" not in data


@pytest.mark.parametrize("name", list(VARIANTS))
def test_smuggling_variant_never_two_messages(fulmar, name):
    """The smuggled part alone behind, with no RSET: whatever the server
    does, at most one message results and it is never the smuggled one."""
    payload = (b"EHLO s.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<alice@example.test>\r\n"
               b"DATA\r\nSubject: one\r\n\r\nbody" + VARIANTS[name] + SMUGGLED + b".\r\nQUIT\r\n")
    with SMTPClient(fulmar.port) as c:
        c.send(payload)
        replies = []
        try:
            while True:
                r = c.reply(timeout=5)
                replies.append(r)
                if r.code == 221:
                    break
        except (ConnectionClosed, OSError):
            pass
    time.sleep(1.0)
    counts = all_maildir_counts(fulmar)
    assert sum(counts.values()) <= 1, counts
    assert counts["bob"] == 0, counts
    queued = [r for r in replies if r.queue_id]
    assert len(queued) <= 1, replies
    for data in maildir_messages(fulmar.maildir("alice")):
        # if anything was delivered, it is one whole message, MAIL included
        assert b"MAIL FROM:<ceo@example.test>" in data, data


@pytest.mark.parametrize("content", [
    b"Subject: a\rb\r\n\r\nbody\r\n",          # bare CR in a header
    b"Subject: a\nX-Evil: 1\r\n\r\nbody\r\n",  # bare LF in a header
    b"Subject: a\r\n\r\nbo\rdy\r\n",           # bare CR in the body
    b"Subject: a\r\n\r\nbo\ndy\r\n",           # bare LF in the body
    b"Subject: a\r\n\r\nbody\n\r\n",           # bare LF right before the end
    b"Subject: a\r\n\r\nbody\r\r\n",           # CR CR LF
    b"Subject: a\r\n\r\n\n.\r\n\r\n",          # LF . CRLF CRLF
])
def test_bare_line_ends_rejected(fulmar, content):
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(content + b".\r\n")
        expect(c.reply(), 554, "5.5.2")
        expect(c.cmd("RSET"), 250, "2.0.0")
        expect(c.mail("s@client.test"), 250, "2.1.0")
    time.sleep(0.5)
    assert maildir_files(fulmar.maildir("alice")) == []


def test_bare_lf_split_across_writes(fulmar):
    """The reader resumes at any octet: a variant split over several writes
    behaves the same."""
    legit = after_message()
    parts = [b"EHLO s.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<alice@example.test>\r\n",
             b"DATA\r\n", b"Subject: x\r\n\r\nbody\r", b"\n", b".", b"\n", SMUGGLED[:30],
             SMUGGLED[30:], b"\r\n", b".", b"\r", b"\n",
             b"MAIL FROM:<a@client.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n",
             legit, b".\r\n", b"QUIT\r\n"]
    with SMTPClient(fulmar.port) as c:
        for p in parts:
            c.send(p)
            time.sleep(0.02)
        codes = [c.reply().code for _ in range(10)]
    assert codes == [250, 250, 250, 354, 554, 250, 250, 354, 250, 221], codes
    split_delivered(wait_for_count(fulmar.maildir("carol"), 1)[0], legit)
    counts = all_maildir_counts(fulmar)
    assert counts["alice"] == 0 and counts["bob"] == 0, counts


def test_bdat_content_bare_lf_never_splits(fulmar):
    """BDAT is binary framing: a "\\n.\\n" inside a chunk is content and never
    ends anything; whatever the server decides, at most one message."""
    content = b"Subject: b\r\n\r\nx\n.\n" + SMUGGLED + b".\r\n"
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        c.send(b"BDAT %d LAST\r\n" % len(content) + content)
        r = c.reply()
        assert r.code in (250, 554), r
        expect(c.cmd("NOOP"), 250, "2.0.0")
    time.sleep(0.5)
    counts = all_maildir_counts(fulmar)
    assert counts["bob"] == 0 and counts["alice"] <= 1, counts
