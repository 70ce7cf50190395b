"""Receiving servers that misbehave: a 421 greeting, silence, a 1 MB reply
line, endless continuation lines, bare-LF replies, garbage, a connection
dropped in the middle of DATA or after the final dot. The engine must
defer (never lose, never bounce for a temporary fault), bound what it
reads, give up within its timeouts, and keep serving."""
import os
import time

import pytest

from fulmar_test import SMTPClient, expect
from outbound_lib import unique
from smtp_peers import endless_continuation, greeting_reply, huge_reply, silent

pytestmark = pytest.mark.timeout(30)


def first_delivery(relay, rcpt, timeout=10.0):
    return relay.wait_delivery(to=rcpt, timeout=timeout)[0]


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def deferred_not_lost(relay, rcpt, qid, ev):
    assert ev["status"] == "deferred", ev
    assert ev["dsn"].startswith("4."), ev
    assert qid in relay.queue_text()
    assert relay.dsns(rcpt) == [], "bounced for a temporary fault"


def test_greeting_421_defers(relay, world):
    dom = "g421.hostile.test"
    world.raw("127.0.0.10", greeting_reply("421 4.3.2 Service shutting down"))
    world.route_to(dom, "127.0.0.10")
    rcpt = "%s@%s" % (unique("g"), dom)
    qid, _ = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt)
    deferred_not_lost(relay, rcpt, qid, ev)
    assert "421" in ev.get("detail", ""), ev


def test_opening_failure_names_address_and_port(relay, world):
    dom = "g421log.hostile.test"
    world.raw("127.0.0.21", greeting_reply("421 4.3.2 Service shutting down"))
    world.route_to(dom, "127.0.0.21")
    rcpt = "%s@%s" % (unique("g"), dom)
    relay.submit(rcpt)
    ev = first_delivery(relay, rcpt)
    assert ev["relay"] == "mx.%s[127.0.0.21]:%d" % (dom, world.port), ev


def test_greeting_421_keeps_its_enhanced_code(relay, world):
    dom = "g421code.hostile.test"
    world.raw("127.0.0.22", greeting_reply("421 4.3.2 Service shutting down"))
    world.route_to(dom, "127.0.0.22")
    rcpt = "%s@%s" % (unique("g"), dom)
    relay.submit(rcpt)
    ev = first_delivery(relay, rcpt)
    assert ev["dsn"] == "4.3.2", ev


def test_silent_server_greeting_timeout(relay, world):
    dom = "silent.hostile.test"
    srv = world.raw("127.0.0.11", silent)
    world.route_to(dom, "127.0.0.11")
    rcpt = "%s@%s" % (unique("s"), dom)
    t0 = time.monotonic()
    qid, _ = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt, timeout=12)
    took = time.monotonic() - t0
    deferred_not_lost(relay, rcpt, qid, ev)
    assert 1.5 <= took <= 6, "greeting_timeout is 2 s; deferred after %.1f s" % took
    assert srv.rec.wait(lambda: any(c.notes.get("client_closed") for c in srv.connections), 3)


@pytest.mark.parametrize("at", ["greeting", "ehlo"])
def test_megabyte_reply_line(relay, world, at):
    dom = "huge-%s.hostile.test" % at
    addr = "127.0.0.12" if at == "greeting" else "127.0.0.13"
    srv = world.raw(addr, huge_reply(at))
    world.route_to(dom, addr)
    rcpt = "%s@%s" % (unique("h"), dom)
    before = rss_kb(relay.d.proc.pid)
    qid, _ = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt)
    deferred_not_lost(relay, rcpt, qid, ev)
    assert srv.rec.wait(lambda: any(c.notes.get("client_closed") for c in srv.connections), 5), \
        "the client did not hang up on a 1 MB reply line"
    assert rss_kb(relay.d.proc.pid) - before < 64 * 1024
    assert relay.d.running


@pytest.mark.parametrize("at", ["greeting", "ehlo"])
def test_endless_continuation_lines(relay, world, at):
    dom = "endless-%s.hostile.test" % at
    addr = "127.0.0.14" if at == "greeting" else "127.0.0.15"
    srv = world.raw(addr, endless_continuation(at, max_seconds=20))
    world.route_to(dom, addr)
    rcpt = "%s@%s" % (unique("e"), dom)
    before = rss_kb(relay.d.proc.pid)
    qid, _ = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt, timeout=15)
    deferred_not_lost(relay, rcpt, qid, ev)
    done = srv.rec.wait(lambda: [c for c in srv.connections if "closed_after" in c.notes], 15)
    assert done, "the peer is still sending"
    c = done[0]
    assert c.notes["client_closed"] and c.notes["closed_after"] < 10, c.notes
    assert rss_kb(relay.d.proc.pid) - before < 64 * 1024


def test_bare_lf_replies_lose_nothing(relay, world):
    # Replies ending in LF alone: accepted leniently or refused as a
    # protocol error, the message is either delivered intact or deferred.
    dom = "barelf.hostile.test"
    srv = world.raw_smtp("127.0.0.16", line_end=b"\n")
    world.route_to(dom, "127.0.0.16")
    rcpt = "%s@%s" % (unique("lf"), dom)
    qid, msg = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt)
    assert ev["status"] in ("sent", "deferred"), ev
    if ev["status"] == "sent":
        t = srv.wait_transactions(1, rcpt=rcpt)[0]
        assert t.data.endswith(msg)
    else:
        deferred_not_lost(relay, rcpt, qid, ev)


def test_garbage_greeting_defers(relay, world):
    dom = "garbage.hostile.test"
    world.raw("127.0.0.17", greeting_reply("HELLO I AM NOT SMTP", then_close=False))
    world.route_to(dom, "127.0.0.17")
    rcpt = "%s@%s" % (unique("gb"), dom)
    qid, _ = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt, timeout=12)
    deferred_not_lost(relay, rcpt, qid, ev)


def test_drop_mid_data_then_delivers(relay, world):
    dom = "dropdata.hostile.test"
    srv = world.raw_smtp("127.0.0.18", drop_mid_data=1)
    world.route_to(dom, "127.0.0.18")
    rcpt = "%s@%s" % (unique("dd"), dom)
    qid, msg = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt)
    deferred_not_lost(relay, rcpt, qid, ev)
    t = srv.wait_transactions(1, rcpt=rcpt, timeout=8)
    assert len(t) == 1 and t[0].data.endswith(msg), t
    relay.wait_delivery(to=rcpt, status="sent")
    relay.wait_gone(qid)


def test_no_reply_after_final_dot_is_resent(relay, world):
    # The server took the whole message and vanished before its reply:
    # Fulmar cannot know, so it must defer and send again (RFC 1047): the
    # one case where a duplicate is right.
    dom = "dropdot.hostile.test"
    rcpt = "%s@%s" % (unique("dot"), dom)
    sink = world.sink("127.0.0.19", data_replies={rcpt: ["DROP"]})
    world.route_to(dom, "127.0.0.19")
    qid, msg = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt)
    deferred_not_lost(relay, rcpt, qid, ev)
    relay.wait_delivery(to=rcpt, status="sent", timeout=8)
    every = sink.transactions(rcpt=rcpt, accepted_only=False)
    assert [t.data_reply == "DROP" for t in every] == [True, False], every
    assert all(t.data.endswith(msg) for t in every)
    relay.wait_gone(qid)


def scripted(replies):
    """A handler answering the greeting and each command with the next of
    `replies` (raw bytes, sent as they are), then waiting for the close."""
    def handler(conn):
        it = iter(replies)
        conn.send(next(it))
        for r in it:
            line = conn.readline(30)
            if line is None:
                return
            conn.rec.log(line.rstrip(b"\r\n").decode("utf-8", "replace"))
            conn.send(r)
        conn.rec.notes["client_closed"] = conn.wait_closed(30)
    return handler


EHLO_OK = b"250-odd.peer.test\r\n250 8BITMIME\r\n"

ODD_REPLIES = {
    # a multi-line reply whose code changes on its last line
    "code-change": [b"220 odd.peer.test\r\n", b"250-odd.peer.test\r\n550 5.0.0 changed\r\n"],
    # 150 short continuation lines (over the 100 lines a reply may have)
    "many-lines": [b"220 odd.peer.test\r\n",
                   b"".join(b"250-line %d\r\n" % i for i in range(150)) + b"250 end\r\n"],
    # a line of 2,049 octets before CRLF (over the 2,048 limit)
    "line-2049": [b"220 " + b"y" * 2045 + b"\r\n"],
    # binary junk and NULs
    "binary": [b"220 odd\x00\xff\xfe peer\r\n", b"250 \x00\x01\x02\r\n"],
    # no code at all, a code out of range, a code without a separator
    "no-code": [b"220 odd.peer.test\r\n", b"hello\r\n"],
    "code-999": [b"220 odd.peer.test\r\n", b"999 what\r\n"],
    "code-only-dash": [b"220-\r\n220\r\n", EHLO_OK, b"250 ok\r\n", b"250 ok\r\n",
                       b"250 2.0.0\r\n"],
    # 354 to MAIL, 250 to DATA: replies that make no sense where they come
    "wrong-codes": [b"220 odd.peer.test\r\n", EHLO_OK, b"354 go on\r\n",
                    b"250 ok\r\n", b"250 ok\r\n"],
    # a reply to a command not sent yet: everything answered at once
    "early": [b"220 odd.peer.test\r\n" + EHLO_OK + b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n",
              b"354 go\r\n"],
    # the greeting, then the server closes at once
    "close-after-greeting": [b"220 odd.peer.test\r\n"],
    # STARTTLS offered and accepted, then no TLS at all but plain text
    "fake-tls": [b"220 odd.peer.test\r\n", b"250-odd.peer.test\r\n250 STARTTLS\r\n",
                 b"220 go ahead\r\n", b"this is not a TLS record\r\n"],
}


@pytest.mark.parametrize("kind", sorted(ODD_REPLIES))
def test_odd_replies_defer_or_deliver(relay, world, kind):
    # Whatever the peer says, the message is never lost, never bounced
    # for a temporary fault, and the daemon goes on.
    i = sorted(ODD_REPLIES).index(kind)
    addr = "127.0.0.%d" % (30 + i)
    dom = "%s.odd.hostile.test" % kind
    srv = world.raw(addr, scripted(ODD_REPLIES[kind]))
    world.route_to(dom, addr)
    rcpt = "%s@%s" % (unique("odd"), dom)
    qid, _ = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt, timeout=12)
    assert ev["status"] in ("deferred", "sent"), ev
    if ev["status"] == "deferred":
        deferred_not_lost(relay, rcpt, qid, ev)
    assert relay.d.running
    assert not srv.errors, srv.errors


def test_server_closing_an_idle_connection(relay, world):
    # The server drops a connection Fulmar keeps for reuse (idle_time 2 s,
    # the server's own timeout 1 s): the next message goes through on a
    # new connection without a deferral.
    dom = "idleclose.hostile.test"
    sink = world.sink("127.0.0.20", timeout=1)
    world.route_to(dom, "127.0.0.20")
    r1 = "%s@%s" % (unique("ic1"), dom)
    relay.submit(r1)
    first_delivery(relay, r1)
    conn = sink.rec.connections_for(rcpt=r1)[0]
    assert sink.rec.wait(lambda: conn.ended is not None, 4)
    assert not conn.quit, "Fulmar closed it first: nothing tested"
    r2 = "%s@%s" % (unique("ic2"), dom)
    qid, msg = relay.submit(r2)
    ev = first_delivery(relay, r2)
    assert ev["status"] == "sent", ev
    assert sink.wait_transactions(1, rcpt=r2)[0].data.endswith(msg)


def test_daemon_still_serves(relay):
    # after all of the above: the listeners answer, the queue lists
    with SMTPClient(relay.d.port) as c:
        assert c.greeting.code == 220
        expect(c.cmd("QUIT"), 221)
    relay.connect().quit()
    assert relay.d.running
    relay.queue_text()
    assert os.path.exists(relay.d.state_dir)
