"""Mail loops (5.4.6): MX or A/AAAA answers on loopback when
allow_loopback is false, a destination that is one of Fulmar's own
listeners even when loopback is allowed, and a remote whose greeting or
EHLO reply carries Fulmar's own host name. A static route to a loopback
host is not a loop."""
import pytest

from fulmar_test import HOSTNAME
from outbound_lib import make_relay, unique

pytestmark = pytest.mark.timeout(30)


class Peers:
    pass


@pytest.fixture(scope="module")
def loops(relay_factory, world):
    p = Peers()
    p.static = world.sink("127.0.0.11", own_port=True)
    p.greet = world.raw_smtp("127.0.0.12", own_port=True, name="other.peer.test",
                             greeting="220 %s ESMTP" % HOSTNAME)
    p.ehlo = world.raw_smtp("127.0.0.13", own_port=True, name=HOSTNAME,
                            greeting="220 other.peer.test ESMTP")
    # what loopback MX records point at (must never be reached)
    p.lo1 = world.sink("127.0.0.1")
    p.lo2 = world.sink("127.0.0.2")
    p.lo6 = world.sink("::1")
    world.route_to("mxloop.loops.test", "127.0.0.1")
    world.route_to("mxloop2.loops.test", "127.0.0.2")
    world.a("aloop6.loops.test", "::1")
    r = relay_factory({"outbound": {"allow_loopback": False}}, start=False)
    r.d.config["routes"] = [
        {"domain": "static.loops.test", "host": "127.0.0.11", "port": p.static.port},
        {"domain": "greet.loops.test", "host": "127.0.0.12", "port": p.greet.port},
        {"domain": "ehlo.loops.test", "host": "127.0.0.13", "port": p.ehlo.port},
    ]
    r.d.write_config()
    r.d.start()
    p.relay = r
    return p


def assert_loop(relay, rcpt, qid):
    ev = relay.wait_delivery(to=rcpt)[0]
    assert ev["status"] == "bounced" and ev["dsn"] == "5.4.6", ev
    d = relay.wait_dsn(rcpt)
    assert d.recipient(rcpt)["status"] == "5.4.6"
    relay.wait_gone(qid)


@pytest.mark.parametrize("dom", ["mxloop.loops.test", "mxloop2.loops.test",
                                 "aloop6.loops.test"])
def test_loopback_mx_is_a_loop(loops, dom):
    r = loops.relay
    rcpt = "%s@%s" % (unique("lo"), dom)
    qid, _ = r.submit(rcpt)
    assert_loop(r, rcpt, qid)
    for s in (loops.lo1, loops.lo2, loops.lo6):
        assert s.rec.conns(with_helo=False) == [], "a loopback MX was contacted"


def test_static_route_to_loopback_is_not_a_loop(loops):
    r = loops.relay
    rcpt = "%s@static.loops.test" % unique("st")
    qid, msg = r.submit(rcpt)
    t = loops.static.wait_transactions(1, rcpt=rcpt)
    assert t and t[0].data.endswith(msg), r.d.log_tail(30)
    r.wait_delivery(to=rcpt, status="sent")


def test_route_to_own_listener_is_a_loop(world):
    # A daemon of its own, stopped and checked here: a static route to our
    # own mx listener.
    r = make_relay(world, {"outbound": {"allow_loopback": False}}, start=False)
    r.d.config["routes"] = [{"domain": "self.loops.test", "host": "127.0.0.1",
                             "port": r.d.port}]
    r.d.write_config()
    r.d.start()
    try:
        rcpt = "%s@self.loops.test" % unique("self")
        qid, _ = r.submit(rcpt)
        assert_loop(r, rcpt, qid)
    finally:
        r.d.stop()
        reports = r.d.sanitizer_reports()
        if not reports:
            r.d.cleanup()
    assert not reports, reports[0]


def test_greeting_with_our_name_is_a_loop(loops):
    r = loops.relay
    rcpt = "%s@greet.loops.test" % unique("gr")
    qid, _ = r.submit(rcpt)
    assert_loop(r, rcpt, qid)
    assert loops.greet.transactions(accepted_only=False) == []


def test_ehlo_reply_with_our_name_is_a_loop(loops):
    r = loops.relay
    rcpt = "%s@ehlo.loops.test" % unique("eh")
    qid, _ = r.submit(rcpt)
    assert_loop(r, rcpt, qid)
    assert loops.ehlo.transactions(accepted_only=False) == []


def test_own_listener_is_a_loop_even_with_loopback_allowed(relay_factory, world):
    # allow_loopback = true, outbound.port = our own mx port, MX -> 127.0.0.1
    r = relay_factory(start=False)
    r.d.config["outbound"]["port"] = r.d.port
    r.d.write_config()
    r.d.start()
    world.route_to("ownport.loops.test", "127.0.0.1")
    rcpt = "%s@ownport.loops.test" % unique("own")
    qid, _ = r.submit(rcpt)
    assert_loop(r, rcpt, qid)
