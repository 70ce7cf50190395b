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
    tried = connect_failures(relay, addr)
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


def connect_failures(relay, addr):
    return [e for e in relay.events("connect_failed") if addr in e.get("relay", "")]


def send_one(relay, dom, tag, timeout=10):
    """A message for dom; its first delivery line."""
    r = "%s@%s" % (unique(tag), dom)
    relay.submit(r)
    return r, relay.wait_delivery(to=r, timeout=timeout)[0]


def take_down(relay, world, dom, addr):
    """dom's host refuses connections: a first message is deferred, and
    dom is down. Returns that message's recipient."""
    world.route_to(dom, addr)
    r1, ev = send_one(relay, dom, "first")
    assert ev["status"] == "deferred", ev
    return r1


def test_down_ends_with_a_new_attempt(relay_factory, world):
    # While down, a new message is deferred at once without a connection
    # attempt, even though the host listens again; after the down period
    # a new message is a real attempt again (and the first connection
    # that works clears the mark).
    relay = relay_factory({"queue": {"retry_first": 4.0, "retry_max": 4.0}})
    dom, addr = "back.down.test", "127.0.0.31"
    r1 = take_down(relay, world, dom, addr)
    t_down = time.monotonic()
    attempts = len(connect_failures(relay, addr))
    assert attempts >= 1
    world.sink(addr)
    mid, ev = send_one(relay, dom, "mid", timeout=5)
    assert time.monotonic() - t_down < 2.0, "the down period was over before the check"
    assert ev["status"] == "deferred" and "temporarily suspended" in ev["detail"], ev
    assert len(connect_failures(relay, addr)) == attempts
    time.sleep(max(0.0, t_down + 2.2 - time.monotonic()))  # past half of retry_first
    _, ev = send_one(relay, dom, "after", timeout=5)
    assert ev["status"] == "sent", ev
    assert wait_until(lambda: relay.deliveries(to=r1, status="sent"), 15)
    assert wait_until(lambda: relay.deliveries(to=mid, status="sent"), 15)


def test_reload_ends_down(relay_factory, world):
    # A reload (the route, credentials or TLS policy may have been fixed)
    # makes a down destination be tried again at once.
    relay = relay_factory({"queue": {"retry_first": 600.0}})
    dom, addr = "reload.down.test", "127.0.0.33"
    take_down(relay, world, dom, addr)
    world.sink(addr)
    _, ev = send_one(relay, dom, "mid", timeout=5)
    assert "temporarily suspended" in ev["detail"], ev  # down for 300 s
    relay.d.reload()
    assert wait_until(lambda: "event=reloaded" in relay.d.log_text(), 10)
    _, ev = send_one(relay, dom, "after", timeout=5)
    assert ev["status"] == "sent", ev


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


DOWN_MAX = 1024             # destinations remembered down at once (outbound.c)
FLOOD = DOWN_MAX + 50       # dead destinations in the flood
FLOOD_RETRY = 30.0          # queue.retry_first: down for 15 s


@pytest.mark.timeout(180)
def test_down_destinations_are_capped(relay_factory, world):
    # A flood of mail for more dead domains than DOWN_MAX: past it the
    # destination that went down first is forgotten (its next message is
    # a real attempt again, not deferred at once), so their number stays
    # bounded; one down_forgotten line says so (at most one a minute,
    # however many are forgotten). The mail is deferred as usual, and
    # delivered on its retry once the hosts listen again.
    relay = relay_factory({"queue": {"retry_first": FLOOD_RETRY,
                                     "retry_max": FLOOD_RETRY}})
    first_dom, first_addr = "first.flood.down.test", "127.0.0.34"
    r1 = take_down(relay, world, first_dom, first_addr)
    t_down = time.monotonic()
    attempts = len(connect_failures(relay, first_addr))
    flood_addr = "127.0.0.35"
    world.a("mx.flood.down.test", flood_addr)
    doms = ["f%04d.flood.down.test" % i for i in range(FLOOD)]
    for dom in doms:
        world.mx(dom, (10, "mx.flood.down.test"))
    rcpts = ["%s@%s" % (unique("f"), dom) for dom in doms]
    c = relay.connect()
    try:
        for i in range(0, FLOOD, 500):
            relay.submit(rcpts[i:i + 500], client=c)
    finally:
        c.quit()
    assert wait_until(lambda: len(relay.deliveries(status="deferred")) >= FLOOD + 1,
                      60, 0.5), relay.d.log_tail(20)
    t_flood = time.monotonic() - t_down
    lines = relay.events("down_forgotten")
    assert len(lines) == 1, [e["_line"] for e in lines]
    assert lines[0]["destination"] == first_dom, lines[0]["_line"]
    assert lines[0]["down_max"] == str(DOWN_MAX) and lines[0]["level"] == "warning"

    # The first is forgotten though its period is not over: a new message
    # for it is a real attempt. The last of the flood is still down.
    _, ev = send_one(relay, first_dom, "again", timeout=10)
    assert time.monotonic() - t_down < FLOOD_RETRY / 2, \
        "the flood took %.1f s: the down period was over before the check" % t_flood
    assert ev["status"] == "deferred" and "temporarily suspended" not in ev["detail"], ev
    assert len(connect_failures(relay, first_addr)) > attempts
    _, ev = send_one(relay, doms[-1], "last", timeout=10)
    assert "temporarily suspended" in ev["detail"], ev

    # The hosts come back: the mail goes on its retry.
    world.sink(first_addr)
    world.sink(flood_addr)
    assert wait_until(lambda: len(relay.deliveries(status="sent")) >= FLOOD + 2,
                      3 * FLOOD_RETRY + 30, 0.5), relay.d.log_tail(20)
    assert relay.deliveries(to=r1, status="sent")
    for r in (rcpts[0], rcpts[DOWN_MAX // 2], rcpts[-1]):
        assert relay.deliveries(to=r, status="sent"), r
