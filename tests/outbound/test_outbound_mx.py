"""Outbound routing through DNS: MX preferences, the A/AAAA fallback,
CNAMEs, Null MX, NXDOMAIN, SERVFAIL and timeouts, against the loopback DNS
server and sinks on 127.0.0.x / ::1 (one relay daemon for the module)."""
import time

import pytest

from outbound_lib import HELO_NAME, USER, unique

pytestmark = pytest.mark.timeout(30)


def assert_delivered(relay, sink, rcpt, msg, qid, timeout=10.0):
    """The sink got the message for rcpt (envelope and bytes), and the log
    says sent, with the sink as relay."""
    txns = sink.wait_transactions(1, rcpt=rcpt, timeout=timeout)
    assert txns, "nothing reached %s for %s; log:\n%s" % (sink.address, rcpt,
                                                          relay.d.log_tail(30))
    t = txns[0]
    assert t.mail_from == USER
    assert rcpt in t.rcpts
    assert t.data.endswith(msg), "message changed in transit:\n%r\nvs\n%r" % (t.data[-300:],
                                                                             msg[-300:])
    added = t.data[:len(t.data) - len(msg)]
    assert added.startswith(b"Received: "), added[:200]
    ev = relay.wait_delivery(to=rcpt, status="sent")[0]
    assert ev["id"] == qid, ev
    assert ev["dsn"].startswith("2."), ev
    assert "[%s]:%d" % (sink.host, sink.port) in ev["relay"], ev
    return t, ev


def test_mx_delivery(relay, world):
    dom = "basic.mx.test"
    sink = world.sink("127.0.0.10")
    world.route_to(dom, "127.0.0.10")
    rcpt = unique("user") + "@" + dom
    qid, msg = relay.submit(rcpt)
    t, ev = assert_delivered(relay, sink, rcpt, msg, qid)
    assert t.helo == HELO_NAME
    assert ev["relay"].startswith("mx.%s[127.0.0.10]" % dom), ev
    assert float(ev["delay"]) >= 0
    assert "250" in ev.get("detail", ""), ev
    relay.wait_gone(qid)
    assert world.dns.queried(dom, "MX") >= 1


def test_lowest_preference_first(relay, world):
    dom = "pref.mx.test"
    primary = world.sink("127.0.0.11")
    backup = world.sink("127.0.0.16")
    world.mx(dom, (20, "backup." + dom, "127.0.0.16"), (10, "primary." + dom, "127.0.0.11"))
    rcpt = unique("p") + "@" + dom
    qid, msg = relay.submit(rcpt)
    assert_delivered(relay, primary, rcpt, msg, qid)
    assert backup.transactions(domain=dom, accepted_only=False) == []


def test_unreachable_primary_falls_to_next(relay, world):
    dom = "fallover.mx.test"
    backup = world.sink("127.0.0.17")
    # nothing listens on 127.0.0.12: connection refused
    world.mx(dom, (10, "dead." + dom, "127.0.0.12"), (20, "alive." + dom, "127.0.0.17"))
    rcpt = unique("f") + "@" + dom
    qid, msg = relay.submit(rcpt)
    assert_delivered(relay, backup, rcpt, msg, qid)


def test_temporary_failure_at_primary_falls_to_next(relay, world):
    # A 421 greeting at the first MX: the next one is tried in the same run.
    dom = "busy.mx.test"
    busy = world.raw_smtp("127.0.0.18", greeting="421 4.3.2 too busy")
    backup = world.sink("127.0.0.19")
    world.mx(dom, (10, "busy." + dom, "127.0.0.18"), (20, "ok." + dom, "127.0.0.19"))
    rcpt = unique("b") + "@" + dom
    qid, msg = relay.submit(rcpt)
    assert_delivered(relay, backup, rcpt, msg, qid, timeout=6)
    assert busy.rec.conns(with_helo=False), "the first MX was not tried"


def test_equal_preference(relay, world):
    # Two MX of the same preference, one down: the message gets through
    # whichever is tried first.
    dom = "equal.mx.test"
    alive = world.sink("127.0.0.20")
    world.mx(dom, (10, "a." + dom, "127.0.0.12"), (10, "b." + dom, "127.0.0.20"))
    rcpts = [unique("e%d" % i) + "@" + dom for i in range(3)]
    for r in rcpts:
        qid, msg = relay.submit(r)
        assert_delivered(relay, alive, r, msg, qid)


def test_no_mx_falls_back_to_a(relay, world):
    dom = "aonly.mx.test"
    sink = world.sink("127.0.0.21")
    world.a(dom, "127.0.0.21")       # the name exists; MX gets NODATA
    rcpt = unique("a") + "@" + dom
    qid, msg = relay.submit(rcpt)
    t, ev = assert_delivered(relay, sink, rcpt, msg, qid)
    assert world.dns.queried(dom, "MX") >= 1 and world.dns.queried(dom, "A") >= 1


@pytest.fixture(scope="module")
def v6(world):
    return world.sink("::1")


def test_aaaa_only(relay, world, v6):
    dom = "v6only.mx.test"
    sink = v6
    world.a(dom, "::1")
    rcpt = unique("six") + "@" + dom
    qid, msg = relay.submit(rcpt)
    t, ev = assert_delivered(relay, sink, rcpt, msg, qid)
    assert t.peer[0] == "::1"


def test_mx_host_is_a_cname(relay, world):
    dom = "cnamehost.mx.test"
    sink = world.sink("127.0.0.22")
    world.dns.set(dom, "MX", [(10, "alias." + dom)])
    world.dns.set("alias." + dom, "CNAME", ["real." + dom])
    world.a("real." + dom, "127.0.0.22")
    rcpt = unique("c") + "@" + dom
    qid, msg = relay.submit(rcpt)
    assert_delivered(relay, sink, rcpt, msg, qid)


def test_domain_is_a_cname(relay, world):
    dom = "cnamedom.mx.test"
    target = "target.mx.test"
    sink = world.sink("127.0.0.23")
    world.dns.set(dom, "CNAME", [target])
    world.route_to(target, "127.0.0.23")
    rcpt = unique("d") + "@" + dom
    qid, msg = relay.submit(rcpt)
    t, _ = assert_delivered(relay, sink, rcpt, msg, qid)
    assert t.rcpts == [rcpt]      # the address is not rewritten


def test_null_mx_bounces_at_once(relay, world):
    dom = "nullmx.mx.test"
    world.dns.set(dom, "MX", [(0, ".")])
    world.a(dom, "127.0.0.24")
    sink = world.sink("127.0.0.24")
    rcpt = unique("n") + "@" + dom
    t0 = time.monotonic()
    qid, msg = relay.submit(rcpt)
    ev = relay.wait_delivery(to=rcpt)[0]
    assert ev["status"] == "bounced" and ev["dsn"] == "5.1.10", ev
    assert ev["id"] == qid
    dsn = relay.wait_dsn(rcpt)
    assert time.monotonic() - t0 < 5, "a Null MX must bounce at once, not after retries"
    r = dsn.recipient(rcpt)
    assert r["status"] == "5.1.10" and r["action"].lower() == "failed", r
    assert world.dns.queried(dom, "A") == 0, "no A/AAAA fallback for a Null MX"
    assert sink.rec.conns(with_helo=False) == []
    relay.wait_gone(qid)


def test_nxdomain_bounces(relay, world):
    dom = "nowhere.mx.test"          # not in the zone
    rcpt = unique("x") + "@" + dom
    qid, _ = relay.submit(rcpt)
    ev = relay.wait_delivery(to=rcpt)[0]
    assert ev["status"] == "bounced" and ev["dsn"] == "5.1.2", ev
    dsn = relay.wait_dsn(rcpt)
    assert dsn.recipient(rcpt)["status"] == "5.1.2"
    relay.wait_gone(qid)


def test_servfail_defers_then_delivers(relay, world):
    dom = "servfail.mx.test"
    world.dns.set_servfail(dom)
    rcpt = unique("s") + "@" + dom
    qid, msg = relay.submit(rcpt)
    ev = relay.wait_delivery(to=rcpt)[0]
    assert ev["status"] == "deferred" and ev["dsn"] == "4.4.3", ev
    assert ev["relay"] == "none", ev
    q = relay.queue_text()
    assert qid in q and rcpt in q and "deferred" in q, q
    assert relay.dsns(rcpt) == [], "no bounce for a temporary DNS failure"
    # The zone is repaired: the next retry (retry_first = 1 s) delivers.
    sink = world.sink("127.0.0.25")
    world.route_to(dom, "127.0.0.25")
    world.dns.set_servfail(dom, on=False)
    t, _ = assert_delivered(relay, sink, rcpt, msg, qid, timeout=8)
    relay.wait_gone(qid)


def test_mx_servfail_does_not_fall_back_to_a(relay, world):
    # Only NODATA for MX means "use the A record"; a failed MX lookup
    # must not send the mail to the A address.
    dom = "mxfail.mx.test"
    sink = world.sink("127.0.0.26")
    world.a(dom, "127.0.0.26")
    world.dns.set_servfail(dom, "MX")
    rcpt = unique("m") + "@" + dom
    relay.submit(rcpt)
    ev = relay.wait_delivery(to=rcpt)[0]
    assert ev["status"] == "deferred" and ev["dsn"] == "4.4.3", ev
    time.sleep(1.5)      # past the first retry
    assert sink.transactions(domain=dom, accepted_only=False) == []


@pytest.mark.timeout(40)
def test_dns_timeout_defers(relay, world):
    dom = "silent.mx.test"
    world.dns.set_drop(dom)
    rcpt = unique("t") + "@" + dom
    qid, _ = relay.submit(rcpt)
    ev = relay.wait_delivery(to=rcpt, timeout=25)[0]
    assert ev["status"] == "deferred" and ev["dsn"] == "4.4.3", ev
    assert qid in relay.queue_text()
    assert relay.dsns(rcpt) == []


def test_ipv6_before_ipv4(relay, world, v6):
    dom = "dual.mx.test"
    v4 = world.sink("127.0.0.27")
    world.mx(dom, (10, "mx." + dom))
    world.a("mx." + dom, "127.0.0.27", "::1")
    rcpt = unique("dual") + "@" + dom
    qid, msg = relay.submit(rcpt)
    assert_delivered(relay, v6, rcpt, msg, qid)
    assert v4.transactions(rcpt=rcpt, accepted_only=False) == []


def test_next_address_of_the_same_host(relay, world):
    # mx has two addresses, the first refuses connections
    dom = "twoaddr.mx.test"
    sink = world.sink("127.0.0.28")
    world.mx(dom, (10, "mx." + dom))
    world.dns.set("mx." + dom, "A", ["127.0.0.12", "127.0.0.28"])
    rcpt = unique("two") + "@" + dom
    qid, msg = relay.submit(rcpt)
    assert_delivered(relay, sink, rcpt, msg, qid)


def test_equal_preferences_are_shuffled(relay, world):
    # 16 domains with the same two MX hosts at the same preference: both
    # hosts get some (all on one would happen by chance once in 30,000).
    a = world.sink("127.0.0.29")
    b = world.sink("127.0.0.30")
    doms = ["shuffle%d.mx.test" % i for i in range(16)]
    for d in doms:
        world.mx(d, (10, "a." + d, "127.0.0.29"), (10, "b." + d, "127.0.0.30"))
    rcpts = ["%s@%s" % (unique("sh"), d) for d in doms]
    qid, _ = relay.submit(rcpts)
    for r in rcpts:
        relay.wait_delivery(to=r, status="sent")
    na = sum(len(t.rcpts) for t in a.transactions())
    nb = sum(len(t.rcpts) for t in b.transactions())
    assert na + nb == 16 and na > 0 and nb > 0, (na, nb)


def test_mx_hosts_without_addresses_bounce(relay, world):
    dom = "ghostmx.mx.test"
    world.dns.set(dom, "MX", [(10, "ghost1." + dom), (20, "ghost2." + dom)])
    rcpt = unique("g") + "@" + dom
    qid, _ = relay.submit(rcpt)
    ev = relay.wait_delivery(to=rcpt)[0]
    assert ev["status"] == "bounced" and ev["dsn"] == "5.4.4", ev
    assert relay.wait_dsn(rcpt).recipient(rcpt)["status"] == "5.4.4"
    relay.wait_gone(qid)
