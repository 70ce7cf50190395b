"""Concurrency: 500 sessions open at once, each delivering one message;
every message is delivered exactly once."""

import asyncio
import re
import time

import pytest

from fulmar_test import crlf, dot_stuff, maildir_messages, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SESSIONS = 500
RCPTS = ["alice@example.test", "bob@example.test", "carol@example.test"]
USER_OF = {"alice@example.test": "alice", "bob@example.test": "bob",
           "carol@example.test": "carol"}


async def read_reply(reader):
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed; so far %r" % lines)
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


async def expect(reader, code):
    got, raw = await read_reply(reader)
    if got != code:
        raise AssertionError("expected %d, got %r" % (code, raw))
    return raw


def message(i):
    return crlf("From: <load%d@client.test>\nTo: <%s>\nSubject: load %d\n"
                "Message-ID: <load.%d@client.test>\n\nbody of message %d\n.\nend %d\n"
                % (i, RCPTS[i % 3], i, i, i, i))


async def session(port, i, connected, go):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await expect(reader, 220)
        connected.append(i)
        await go.wait()
        writer.write(b"EHLO load%d.client.test\r\n" % i)
        await expect(reader, 250)
        writer.write(b"MAIL FROM:<load%d@client.test>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                     % (i, RCPTS[i % 3].encode()))
        await expect(reader, 250)
        await expect(reader, 250)
        await expect(reader, 354)
        writer.write(dot_stuff(message(i)) + b".\r\n")
        raw = await expect(reader, 250)
        writer.write(b"QUIT\r\n")
        await expect(reader, 221)
        m = re.search(rb"queued as ([A-Za-z0-9]+)", raw)
        assert m, raw
        return m.group(1).decode()
    finally:
        writer.close()


async def run_all(port):
    connected = []
    go = asyncio.Event()
    tasks = [asyncio.ensure_future(session(port, i, connected, go)) for i in range(SESSIONS)]
    deadline = time.monotonic() + 60
    while len(connected) < SESSIONS and time.monotonic() < deadline:
        if any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.05)
    held = len(connected)
    go.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 150)
    return held, results


def test_500_parallel_sessions(fulmar_factory):
    d = fulmar_factory(limits={"connections_per_ip": 2000, "connections": 5000})
    held, results = asyncio.run(run_all(d.port))
    errors = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert held == SESSIONS, "only %d sessions were open at once; errors: %r" % (held, errors[:5])
    assert not errors, "%d sessions failed, e.g. %r" % (len(errors), errors[:5])
    ids = list(results)
    assert len(set(ids)) == SESSIONS, "queue ids are not unique"

    def delivered():
        return sum(len(maildir_messages(d.maildir(u))) for u in ("alice", "bob", "carol"))
    wait_until(lambda: delivered() >= SESSIONS, 90, 0.2)
    time.sleep(0.5)
    seen = {}
    for u in ("alice", "bob", "carol"):
        for data in maildir_messages(d.maildir(u)):
            m = re.search(rb"Message-ID: <load\.(\d+)@client\.test>", data)
            assert m, data[:400]
            i = int(m.group(1))
            assert USER_OF[RCPTS[i % 3]] == u, "message %d in the wrong mailbox %s" % (i, u)
            assert data.endswith(message(i).replace(b"\r\n", b"\n")), "message %d altered" % i
            seen[i] = seen.get(i, 0) + 1
    missing = sorted(set(range(SESSIONS)) - set(seen))
    dups = sorted(i for i, n in seen.items() if n > 1)
    assert not missing, "%d messages never delivered, e.g. %r" % (len(missing), missing[:10])
    assert not dups, "messages delivered twice: %r" % dups[:10]
