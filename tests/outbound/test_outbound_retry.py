"""Retries on their schedule, the "delayed" warning and expiry, in
seconds: queue.retry_first = 1, retry_max = 2, delay_warning = 2,
max_lifetime = 6. A server answers 451 to two recipients of one message
for good; one of them asked NOTIFY=FAILURE (no delay warning)."""
import re
import time

import pytest

from outbound_lib import unique, wait_until

RETRY_FIRST, RETRY_MAX, DELAY_WARNING, LIFETIME = 1.0, 2.0, 2.0, 6.0

pytestmark = pytest.mark.timeout(30)


class Scenario:
    pass


@pytest.fixture(scope="module")
def scenario(relay_factory, world):
    relay = relay_factory({"queue": {"retry_first": RETRY_FIRST, "retry_max": RETRY_MAX,
                                     "delay_warning": DELAY_WARNING,
                                     "max_lifetime": LIFETIME}})
    dom = "later.retry.test"
    sink = world.sink("127.0.0.10", rcpt_replies=None)
    sink.rcpt_script.default = lambda a, t: "451 4.3.0 try again later (%s)" % a
    world.route_to(dom, "127.0.0.10")
    s = Scenario()
    s.relay, s.sink = relay, sink
    s.warned = "%s@%s" % (unique("warned"), dom)
    s.quiet = "%s@%s" % (unique("quiet"), dom)
    s.t0 = time.time()
    s.qid, _ = relay.submit([s.warned, s.quiet], rcpt_params={s.quiet: "NOTIFY=FAILURE"})
    # while it waits for its next attempt: the queue listing
    relay.wait_delivery(to=s.warned)
    time.sleep(0.2)
    s.listing = relay.queue_text()
    # then wait for the end: both recipients bounce at expiry
    s.final = {}
    for r in (s.warned, s.quiet):
        ev = wait_until(lambda r=r: relay.deliveries(to=r, status="bounced"), LIFETIME + 12)
        s.final[r] = (ev[0], time.time()) if ev else (None, None)
    s.dsn_failed = {r: wait_until(lambda r=r: relay.dsns(r, "failed"), 5) for r in (s.warned, s.quiet)}
    s.dsn_delayed = {r: relay.dsns(r, "delayed") for r in (s.warned, s.quiet)}
    s.attempts = [t.started for t in sink.transactions(rcpt=s.warned, accepted_only=False)]
    return s


def test_deferred_recipients_listed(scenario):
    s = scenario
    block = s.listing
    assert s.qid in block, block
    for r in (s.warned, s.quiet):
        line = next((ln for ln in block.splitlines() if r in ln), "")
        assert "deferred" in line, block
        assert re.search(r"attempts=1\b", line), line
        m = re.search(r"next_attempt_in=(\d+)s", line)
        assert m and int(m.group(1)) <= RETRY_FIRST + 1, line
        assert "451" in line, line


def test_retry_schedule_doubles_up_to_retry_max(scenario):
    s = scenario
    at = s.attempts
    assert len(at) >= 4, "only %d attempts in %.0f s: %r" % (len(at), LIFETIME, at)
    gaps = [b - a for a, b in zip(at, at[1:])]
    expect = [min(RETRY_FIRST * 2 ** i, RETRY_MAX) for i in range(len(gaps))]
    for g, e in zip(gaps, expect):
        assert 0.8 * e <= g <= e + 1.0, "gaps %r, expected about %r" % (gaps, expect)
    # both recipients go in the same transaction at every attempt
    for t in s.sink.transactions(rcpt=s.warned, accepted_only=False):
        assert sorted(a for a, _ in t.refused) == sorted([s.warned, s.quiet]), t


def test_expiry_bounces_with_4_4_7(scenario):
    s = scenario
    for r in (s.warned, s.quiet):
        ev, when = s.final[r]
        assert ev is not None, "no expiry for %s; log:\n%s" % (r, s.relay.d.log_tail(30))
        assert ev["dsn"] == "4.4.7", ev
        # The engine measures a message's age in whole seconds (arrival and
        # now both truncated), so expiry may come up to 1 s early.
        assert LIFETIME - 1.2 <= when - s.t0 <= LIFETIME + RETRY_MAX + 3, when - s.t0
        d = s.dsn_failed[r]
        assert d, "no failed DSN for %s" % r
        rr = d[0].recipient(r)
        assert rr["action"].lower() == "failed" and rr["status"] == "4.4.7", rr
        assert "451" in rr.get("diagnostic-code", ""), rr
    s.relay.wait_gone(s.qid)
    # no attempt after expiry
    n = len(s.sink.transactions(rcpt=s.warned, accepted_only=False))
    time.sleep(RETRY_MAX + 0.5)
    assert len(s.sink.transactions(rcpt=s.warned, accepted_only=False)) == n


def test_delay_warning_once_and_only_when_asked(scenario):
    s = scenario
    d = s.dsn_delayed[s.warned]
    assert len(d) == 1, "expected one delayed DSN, got %d" % len(d)
    r = d[0].recipient(s.warned)
    assert r["action"].lower() == "delayed" and r["status"].startswith("4."), r
    assert d[0].recipient(s.quiet) is None
    ret = d[0].returned()
    assert ret is None or ret.get_content_type() == "text/rfc822-headers", \
        "a delay notice returns the headers at most"
    assert s.dsn_delayed[s.quiet] == [], "NOTIFY=FAILURE got a delay warning"
    ev = s.relay.events("bounce", id=s.qid, action="delayed")
    assert len(ev) == 1, ev


def test_deferred_recipient_survives_a_restart(relay_factory, world):
    # Deferred, then the daemon restarts: the recipient is retried from
    # the queue and delivered once.
    relay = relay_factory()
    dom = "restart.retry.test"
    rcpt = "%s@%s" % (unique("rs"), dom)
    sink = world.sink("127.0.0.11", rcpt_replies={rcpt: ["451 4.3.0 not now"]})
    world.route_to(dom, "127.0.0.11")
    qid, msg = relay.submit(rcpt)
    ev = relay.wait_delivery(to=rcpt)[0]
    assert ev["status"] == "deferred", ev
    relay.d.restart()
    relay.wait_delivery(to=rcpt, status="sent", timeout=10)
    relay.wait_gone(qid)
    time.sleep(0.5)
    got = sink.messages_for(rcpt)
    assert len(got) == 1 and got[0].endswith(msg), got


def test_sigterm_during_delivery_then_restart(relay_factory, world):
    # SIGTERM while the server sits on the final dot: a clean exit within
    # the shutdown timeout, the message still queued, delivered after the
    # restart (twice at most: the server may have kept the first copy).
    relay = relay_factory()
    dom = "sigterm.retry.test"
    rcpt = "%s@%s" % (unique("term"), dom)
    sink = world.sink("127.0.0.12", data_delay=6.0)
    world.route_to(dom, "127.0.0.12")
    qid, msg = relay.submit(rcpt)
    assert sink.rec.wait(lambda: sink.transactions(rcpt=rcpt, accepted_only=False)
                         and sink.transactions(rcpt=rcpt, accepted_only=False)[0].data, 5)
    t0 = time.monotonic()
    rc = relay.d.stop()
    assert rc == 0 and time.monotonic() - t0 < 6, (rc, time.monotonic() - t0)
    assert qid in relay.queue_text()
    sink.data_delay = 0
    relay.d.start()
    relay.wait_delivery(to=rcpt, status="sent", timeout=10)
    relay.wait_gone(qid)
    assert 1 <= len(sink.messages_for(rcpt)) <= 2


def test_reload_during_deliveries(relay_factory, world):
    # SIGHUPs while connections are open and messages in flight
    relay = relay_factory()
    doms = ["hup%d.retry.test" % i for i in range(4)]
    sink = world.sink("127.0.0.13", delay=0.05)
    for d in doms:
        world.route_to(d, "127.0.0.13")
    rcpts = ["%s@%s" % (unique("hup"), d) for d in doms for _ in range(3)]
    c = relay.connect()
    try:
        for i, r in enumerate(rcpts):
            relay.submit(r, client=c)
            if i % 3 == 0:
                relay.d.reload()
    finally:
        c.quit()
    for r in rcpts:
        relay.wait_delivery(to=r, status="sent", timeout=15)
    assert relay.d.running
    for r in rcpts:
        assert len(sink.messages_for(r)) == 1, r
