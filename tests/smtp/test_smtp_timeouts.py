"""Timeouts (RFC 5321 4.5.3.2) and the overall session deadline, configured
short. A timed-out session gets 421 4.4.2 and is closed."""

import time

import pytest

from fulmar_test import (ConnectionClosed, SMTPClient, all_maildir_counts, expect)

pytestmark = pytest.mark.timeout(60)


def wait_421_and_close(c, within):
    """Read until the server's 421 and close; returns seconds elapsed."""
    t0 = time.monotonic()
    replies = []
    try:
        while time.monotonic() - t0 < within:
            r = c.reply(timeout=within)
            replies.append(r)
            if r.code == 421:
                break
    except ConnectionClosed:
        pass
    elapsed = time.monotonic() - t0
    assert replies and replies[-1].code == 421, \
        "no 421 within %.1f s (got %r)" % (within, replies)
    expect(replies[-1], 421, "4.4.2")
    assert c.wait_closed(2), "connection left open after 421"
    return elapsed


def test_command_timeout_before_ehlo(fulmar_factory):
    d = fulmar_factory(timeouts={"command": 1.0})
    with SMTPClient(d.port) as c:
        t = wait_421_and_close(c, 5)
    assert 0.7 <= t <= 4, t


def test_command_timeout_after_ehlo(fulmar_factory):
    d = fulmar_factory(timeouts={"command": 1.0})
    with SMTPClient(d.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        t = wait_421_and_close(c, 5)
    assert 0.7 <= t <= 4, t


def test_activity_resets_command_timeout(fulmar_factory):
    d = fulmar_factory(timeouts={"command": 1.0})
    with SMTPClient(d.port) as c:
        c.ehlo()
        for _ in range(5):
            time.sleep(0.5)
            expect(c.cmd("NOOP"), 250, "2.0.0")


def test_data_timeout(fulmar_factory):
    d = fulmar_factory(timeouts={"command": 30.0, "data": 1.0})
    with SMTPClient(d.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(b"Subject: stalled\r\n\r\nhalf")
        t = wait_421_and_close(c, 6)
    assert 0.7 <= t <= 5, t
    time.sleep(0.3)
    assert all_maildir_counts(d)["alice"] == 0
    assert d.queue_list() == []


def test_bdat_chunk_stall_times_out(fulmar_factory):
    d = fulmar_factory(timeouts={"command": 1.0, "data": 1.0})
    with SMTPClient(d.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        c.send(b"BDAT 100 LAST\r\nonly ten..")
        wait_421_and_close(c, 6)
    time.sleep(0.3)
    assert all_maildir_counts(d)["alice"] == 0


def test_many_idle_connections_all_time_out(fulmar_factory):
    d = fulmar_factory(timeouts={"command": 1.0}, limits={"connections_per_ip": 100})
    conns = [SMTPClient(d.port) for _ in range(30)]
    try:
        time.sleep(3.0)
        for c in conns:
            assert c.wait_closed(2), "an idle connection outlived the command timeout"
    finally:
        for c in conns:
            c.close()
    with SMTPClient(d.port) as c:
        c.ehlo()


SESSION = {"command": 5.0, "data": 5.0, "session": 2.0}


def trickle(c, chunks, interval, limit):
    """Send chunks one by one every `interval` s until the server answers
    or closes, or `limit` s pass. Returns (elapsed, what the server sent,
    closed)."""
    t0 = time.monotonic()
    closed = False
    for chunk in chunks:
        if time.monotonic() - t0 > limit:
            break
        try:
            c.send(chunk)
        except OSError:
            closed = True
            break
        time.sleep(interval)
        data, closed = c.poll(0)
        if data or closed:
            break
    elapsed = time.monotonic() - t0
    if not closed:
        closed = c.wait_closed(2)
    return elapsed, bytes(c.buf), closed


def test_session_deadline_trickling_bytes(fulmar_factory):
    """One byte every 0.3 s of a command line that never ends: the session
    deadline closes it, whatever the per-read timers think."""
    d = fulmar_factory(timeouts=SESSION)
    with SMTPClient(d.port) as c:
        line = b"EHLO trickle.test " * 20
        elapsed, data, closed = trickle(c, [line[i:i + 1] for i in range(len(line))], 0.3, 6)
    assert data.startswith(b"421 4.4.2"), "got %r after %.1f s" % (data, elapsed)
    assert closed, "connection not closed"
    assert elapsed <= 4.5, elapsed


def test_trickled_command_line_times_out(fulmar_factory):
    """One byte every 0.3 s restarts the read timeout, not the command's
    own deadline: a line not completed within timeouts.command gets 421
    long before the session deadline (slowloris)."""
    d = fulmar_factory(timeouts={"command": 1.5, "session": 60.0})
    with SMTPClient(d.port) as c:
        line = b"EHLO trickle.test " * 20
        elapsed, data, closed = trickle(c, [line[i:i + 1] for i in range(len(line))], 0.3, 8)
    assert data.startswith(b"421 4.4.2"), "got %r after %.1f s" % (data, elapsed)
    assert closed, "connection not closed"
    assert 1.0 <= elapsed <= 4.0, elapsed


def test_complete_commands_keep_the_session(fulmar_factory):
    """Commands that complete, each sent a byte at a time within the limit,
    are served: the deadline is per command line."""
    d = fulmar_factory(timeouts={"command": 2.0})
    with SMTPClient(d.port) as c:
        for _ in range(3):
            for ch in b"NOOP\r\n":
                c.send(bytes([ch]))
                time.sleep(0.1)
            expect(c.reply(), 250, "2.0.0")


def test_session_deadline_busy_client(fulmar_factory):
    """Complete NOOPs every 0.3 s do not extend the session past its deadline."""
    d = fulmar_factory(timeouts=SESSION)
    with SMTPClient(d.port) as c:
        c.ehlo()
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < 6:
            try:
                last = c.cmd("NOOP")
            except (ConnectionClosed, OSError):
                break
            if last.code != 250:
                break
            time.sleep(0.3)
        elapsed = time.monotonic() - t0
        assert last is not None and last.code == 421, last
        expect(last, 421, "4.4.2")
        assert elapsed <= 4.0, elapsed
        assert c.wait_closed(2)


def test_session_deadline_trickling_data(fulmar_factory):
    d = fulmar_factory(timeouts=SESSION)
    with SMTPClient(d.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("alice@example.test"), 250)
        expect(c.cmd("DATA"), 354)
        elapsed, data, closed = trickle(c, [b"x"] * 100, 0.2, 6)
    assert data.startswith(b"421 4.4.2"), "got %r after %.1f s" % (data, elapsed)
    assert closed, "connection not closed"
    assert elapsed <= 4.5, elapsed
    time.sleep(0.3)
    assert all_maildir_counts(d)["alice"] == 0
