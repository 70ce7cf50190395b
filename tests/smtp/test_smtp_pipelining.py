"""PIPELINING (RFC 2920): whole transactions in one write, replies in order."""

import random
import time

import pytest

from fulmar_test import (SMTPClient, all_maildir_counts, dot_stuff, expect, maildir_files,
                         make_message, split_delivered, to_lf, wait_for_count, wait_for_one)

pytestmark = pytest.mark.timeout(60)


def transaction(sender, rcpts, msg):
    out = b"MAIL FROM:<%s>\r\n" % sender.encode()
    for r in rcpts:
        out += b"RCPT TO:<%s>\r\n" % r.encode()
    return out + b"DATA\r\n" + dot_stuff(msg) + b".\r\n"


def read_codes(c, n):
    return [c.reply() for _ in range(n)]


def test_whole_session_in_one_write(fulmar):
    msgs = [make_message(subject="pipe %d" % i, body="body %d\n.\n..\n" % i) for i in range(3)]
    payload = b"EHLO pipe.client.test\r\n"
    for m in msgs:
        payload += transaction("s@client.test", ["alice@example.test", "bob@example.test"], m)
    payload += b"QUIT\r\n"
    with SMTPClient(fulmar.port) as c:
        c.send(payload)
        expect(c.reply(), 250)
        ids = []
        for _ in msgs:
            expect(c.reply(), 250, "2.1.0")
            expect(c.reply(), 250, "2.1.5")
            expect(c.reply(), 250, "2.1.5")
            expect(c.reply(), 354)
            r = expect(c.reply(), 250, "2.0.0")
            ids.append(r.queue_id)
        expect(c.reply(), 221, "2.0.0")
        assert c.wait_closed(3)
    assert len(set(ids)) == 3 and all(ids), ids
    for user in ("alice", "bob"):
        got = wait_for_count(fulmar.maildir(user), 3)
        assert len(got) == 3, "%s has %d messages" % (user, len(got))
        for m in msgs:
            assert sum(g.endswith(to_lf(m)) for g in got) == 1


def test_pipelined_with_a_rejected_recipient(fulmar):
    msg = make_message(subject="partly")
    payload = (b"EHLO c.test\r\n"
               + transaction("s@client.test", ["nobody@example.test", "carol@example.test",
                                               "x@remote.test"], msg)
               + b"QUIT\r\n")
    with SMTPClient(fulmar.port) as c:
        c.send(payload)
        expect(c.reply(), 250)
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 550, "5.1.1")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 554, "5.7.1")
        expect(c.reply(), 354)
        expect(c.reply(), 250, "2.0.0")
        expect(c.reply(), 221, "2.0.0")
    split_delivered(wait_for_one(fulmar.maildir("carol")), msg)
    assert maildir_files(fulmar.maildir("alice")) == []


def test_pipelined_data_with_no_valid_recipient(fulmar):
    """DATA is refused, and what follows is read as commands, never as a
    message (RFC 2920 3.1)."""
    payload = (b"EHLO c.test\r\nMAIL FROM:<s@client.test>\r\nRCPT TO:<nobody@example.test>\r\n"
               b"DATA\r\nSubject: never\r\n\r\nnever delivered\r\n.\r\nQUIT\r\n")
    with SMTPClient(fulmar.port) as c:
        c.send(payload)
        expect(c.reply(), 250)
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 550, "5.1.1")
        r = c.reply()
        assert r.code in (503, 554) and r.enh in ("5.5.1", "5.1.1", "5.5.0"), r
        rest = []
        while True:
            r = c.reply()
            rest.append(r)
            if r.code == 221 or len(rest) > 10:
                break
        assert rest[-1].code == 221, rest
        assert all(x.code >= 500 for x in rest[:-1]), rest
    time.sleep(0.5)
    assert all(v == 0 for v in all_maildir_counts(fulmar).values())


def test_many_commands_replies_in_order(session):
    cmds = ["NOOP", "HELP", "VRFY alice", "RSET", "EXPN x", "XYZZY", "MAIL FROM:<s@client.test>",
            "MAIL FROM:<s@client.test>", "RCPT TO:<alice@example.test>",
            "RCPT TO:<nobody@example.test>", "RSET", "DATA", "NOOP"]
    want = [(250, "2.0.0"), (214, "2.0.0"), (252, "2.5.0"), (250, "2.0.0"), (502, "5.5.1"),
            (500, "5.5.2"), (250, "2.1.0"), (503, "5.5.1"), (250, "2.1.5"), (550, "5.1.1"),
            (250, "2.0.0"), (503, "5.5.1"), (250, "2.0.0")]
    session.send("".join(c + "\r\n" for c in cmds))
    got = [(r.code, r.enh) for r in read_codes(session, len(cmds))]
    assert got == want
    assert session.pending(0.3) == b""


def test_bdat_mixed_with_pipelining(fulmar):
    m1 = make_message(subject="bdat piped", body="one\n.two\n")
    m2 = make_message(subject="data piped", body="three\n")
    half = len(m1) // 2
    payload = (b"EHLO c.test\r\nMAIL FROM:<s@client.test>\r\nRCPT TO:<alice@example.test>\r\n"
               + b"BDAT %d\r\n" % half + m1[:half]
               + b"BDAT %d LAST\r\n" % (len(m1) - half) + m1[half:]
               + transaction("s@client.test", ["bob@example.test"], m2)
               + b"MAIL FROM:<s@client.test>\r\nRCPT TO:<carol@example.test>\r\n"
               + b"BDAT 0\r\nBDAT %d LAST\r\n" % len(m1) + m1
               + b"QUIT\r\n")
    with SMTPClient(fulmar.port) as c:
        c.send(payload)
        expect(c.reply(), 250)
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 250, "2.0.0")
        assert expect(c.reply(), 250, "2.0.0").queue_id
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 354)
        assert expect(c.reply(), 250, "2.0.0").queue_id
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 250, "2.0.0")
        assert expect(c.reply(), 250, "2.0.0").queue_id
        expect(c.reply(), 221, "2.0.0")
    # BDAT content is not dot-unstuffed: ".two" stays ".two"
    split_delivered(wait_for_one(fulmar.maildir("alice")), m1)
    split_delivered(wait_for_one(fulmar.maildir("bob")), m2)
    split_delivered(wait_for_one(fulmar.maildir("carol")), m1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pipeline_split_at_random_points(fulmar, seed):
    rnd = random.Random(seed)
    msgs = [make_message(subject="frag %d/%d" % (seed, i), body="x\n.\n.y\n" * (i + 1))
            for i in range(4)]
    payload = b"EHLO frag.test\r\n"
    for m in msgs:
        payload += transaction("s@client.test", ["alice@example.test"], m)
    payload += b"QUIT\r\n"
    with SMTPClient(fulmar.port) as c:
        i = 0
        while i < len(payload):
            n = rnd.randint(1, 40)
            c.send(payload[i:i + n])
            i += n
            if rnd.random() < 0.2:
                time.sleep(0.01)
        replies = read_codes(c, 1 + 4 * len(msgs) + 1)
    codes = [r.code for r in replies]
    assert codes == [250] + [250, 250, 354, 250] * len(msgs) + [221], replies
    got = wait_for_count(fulmar.maildir("alice"), len(msgs))
    assert len(got) == len(msgs)
    for m in msgs:
        assert sum(g.endswith(to_lf(m)) for g in got) == 1
