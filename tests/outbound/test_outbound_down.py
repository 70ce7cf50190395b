"""A destination that takes no connection is "down" for half of
queue.retry_first (Postfix's dead destination): the messages that come
for it meanwhile are deferred at once, "delivery temporarily suspended",
without a connection attempt each; once it listens again, every message
is delivered on its retry. Before, each new message (and each failed
attempt while others were still opening) opened another connection: a
storm of connects at full CPU for as long as the host was dead."""
import time

import pytest

from outbound_lib import unique, wait_until

RETRY_FIRST = 4.0
COUNT = 12

pytestmark = pytest.mark.timeout(60)


def test_dead_destination_defers_without_a_connect_each(relay_factory, world):
    relay = relay_factory({"queue": {"retry_first": RETRY_FIRST, "retry_max": RETRY_FIRST}})
    dom = "dead.down.test"
    addr = "127.0.0.30"  # nothing listens there yet: connection refused
    world.route_to(dom, addr)
    rcpts = ["%s@%s" % (unique("d%d" % i), dom) for i in range(COUNT)]
    sent = {}
    c = relay.connect()
    try:
        for r in rcpts:
            qid, msg = relay.submit(r, client=c)
            sent[r] = (qid, msg)
    finally:
        c.quit()

    for r in rcpts:
        relay.wait_delivery(to=r, status="deferred", timeout=10)
    first = {r: relay.deliveries(to=r, status="deferred")[0] for r in rcpts}
    suspended = [r for r in rcpts if "temporarily suspended" in first[r]["detail"]]
    tried = relay.events("connect_failed")
    tried = [e for e in tried if addr in e.get("relay", "")]
    # One round of attempts for the destination, not one per message.
    assert 1 <= len(tried) <= 3, "%d connection attempts for %d messages" % (len(tried), COUNT)
    assert len(suspended) >= COUNT - 3, [first[r]["detail"] for r in rcpts]
    for r in suspended:
        e = first[r]
        assert e["dsn"] == "4.4.1" and "Connection refused" in e["detail"], e

    # The host comes back: every message goes on its retry, once.
    sink = world.sink(addr)
    for r in rcpts:
        relay.wait_delivery(to=r, status="sent", timeout=3 * RETRY_FIRST + 10)
    for r in rcpts:
        relay.wait_gone(sent[r][0])
    time.sleep(0.3)
    for r in rcpts:
        got = sink.messages_for(r)
        assert len(got) == 1 and got[0].endswith(sent[r][1]), (r, len(got))


def test_down_ends_with_a_new_attempt(relay_factory, world):
    # After the down period a new message is a real attempt again (the
    # first connection that works clears the mark at once).
    relay = relay_factory({"queue": {"retry_first": 2.0, "retry_max": 2.0}})
    dom = "back.down.test"
    addr = "127.0.0.31"
    world.route_to(dom, addr)
    r1 = "%s@%s" % (unique("b1"), dom)
    relay.submit(r1)
    relay.wait_delivery(to=r1, status="deferred")
    world.sink(addr)
    time.sleep(1.2)  # past half of retry_first
    r2 = "%s@%s" % (unique("b2"), dom)
    relay.submit(r2)
    ev = relay.wait_delivery(to=r2, timeout=5)[0]
    assert ev["status"] == "sent", ev
    assert wait_until(lambda: relay.deliveries(to=r1, status="sent"), 10)


def test_sigterm_with_a_destination_down(relay_factory, world):
    # A down destination keeps a timer (its end) and is kept in memory:
    # the shutdown must still free it and exit at once (it spun forever).
    relay = relay_factory({"queue": {"retry_first": 600.0}})
    dom = "term.down.test"
    world.route_to(dom, "127.0.0.32")
    r = "%s@%s" % (unique("t"), dom)
    relay.submit(r)
    relay.wait_delivery(to=r, status="deferred")
    t0 = time.monotonic()
    rc = relay.d.stop()
    assert rc == 0, rc
    assert time.monotonic() - t0 < 5
