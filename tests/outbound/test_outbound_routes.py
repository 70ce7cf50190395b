"""Static routes and the smarthost: the default route "*" with STARTTLS
and AUTH, routes to an address or to a name (A/AAAA, never MX), per-route
TLS policy (required fails closed, none never upgrades), a route that only
sets limits, and a smarthost that refuses our password."""
import time

import pytest

from outbound_lib import unique, wait_until

pytestmark = pytest.mark.timeout(30)

AUTH = ("relayuser", "relay secret")


class Peers:
    pass


@pytest.fixture(scope="module")
def routed(relay_factory, world):
    p = Peers()

    def own(addr, **kw):
        return world.sink(addr, own_port=True, **kw)

    p.smarthost = own("127.0.0.10", starttls=True, auth=AUTH, auth_required=True,
                      name="smarthost.routes.test")
    world.a("smarthost.routes.test", "127.0.0.10")
    p.static = own("127.0.0.11")
    p.byname = own("127.0.0.12")
    world.a("relayhost.routes.test", "127.0.0.12")
    p.plain = own("127.0.0.13")
    p.refusing = own("127.0.0.14", starttls_reply="454 4.7.0 TLS not available")
    p.badauth = own("127.0.0.16", starttls=True, auth=AUTH, auth_required=True)
    p.notls = own("127.0.0.17", starttls=True)
    # decoys: what MX records say, which static routes must ignore
    p.decoy = world.sink("127.0.0.18")
    world.route_to("static.routes.test", "127.0.0.18")
    world.route_to("relayhost.routes.test", "127.0.0.18")
    # a route with limits only: MX routing to a slow sink on the common port
    p.limited = world.sink("127.0.0.15", delay=0.15)
    world.route_to("limited.routes.test", "127.0.0.15")
    p.rated = world.sink("127.0.0.19")
    world.route_to("rated.routes.test", "127.0.0.19")
    routes = [
        {"domain": "static.routes.test", "host": "127.0.0.11", "port": p.static.port},
        {"domain": "byname.routes.test", "host": "relayhost.routes.test",
         "port": p.byname.port},
        {"domain": "tlsreq.routes.test", "host": "127.0.0.13", "port": p.plain.port,
         "tls": "required"},
        {"domain": "tlsrefused.routes.test", "host": "127.0.0.14", "port": p.refusing.port,
         "tls": "required"},
        {"domain": "notls.routes.test", "host": "127.0.0.17", "port": p.notls.port,
         "tls": "none"},
        {"domain": "badauth.routes.test", "host": "127.0.0.16", "port": p.badauth.port,
         "tls": "required", "auth_user": AUTH[0], "auth_password": "not the password"},
        {"domain": "limited.routes.test", "connections": 1},
        {"domain": "rated.routes.test", "rate": 120},
        {"domain": "*", "host": "smarthost.routes.test", "port": p.smarthost.port,
         "tls": "required", "auth_user": AUTH[0], "auth_password": AUTH[1]},
    ]
    p.relay = relay_factory({"routes": routes})
    return p


def test_smarthost_with_starttls_and_auth(routed, world):
    r = routed.relay
    rcpt = "%s@elsewhere.example" % unique("sh")
    qid, msg = r.submit(rcpt)
    t = routed.smarthost.wait_transactions(1, rcpt=rcpt)
    assert t, "nothing at the smarthost; log:\n%s" % r.d.log_tail(30)
    t = t[0]
    assert t.conn.tls and t.conn.auth_user == AUTH[0], t.conn
    v = t.conn.verbs()
    assert v[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"], v
    assert t.data.endswith(msg)
    ev = r.wait_delivery(to=rcpt, status="sent")[0]
    assert "smarthost.routes.test[127.0.0.10]:%d" % routed.smarthost.port in ev["relay"], ev
    assert world.dns.queried("elsewhere.example", "MX") == 0, "MX looked up for a smarthost route"
    r.wait_gone(qid)


def test_smarthost_takes_every_other_domain(routed):
    r = routed.relay
    rcpts = ["%s@one.example" % unique("a"), "%s@two.example" % unique("b")]
    qid, msg = r.submit(rcpts)
    for rc in rcpts:
        assert routed.smarthost.wait_transactions(1, rcpt=rc), rc
        r.wait_delivery(to=rc, status="sent")
    r.wait_gone(qid)


def test_static_route_to_an_address(routed):
    r = routed.relay
    rcpt = "%s@static.routes.test" % unique("st")
    qid, msg = r.submit(rcpt)
    t = routed.static.wait_transactions(1, rcpt=rcpt)
    assert t and t[0].data.endswith(msg), r.d.log_tail(30)
    assert routed.decoy.transactions(rcpt=rcpt, accepted_only=False) == []
    ev = r.wait_delivery(to=rcpt, status="sent")[0]
    assert "[127.0.0.11]:%d" % routed.static.port in ev["relay"], ev


def test_route_host_name_resolved_by_address_records(routed, world):
    r = routed.relay
    rcpt = "%s@byname.routes.test" % unique("bn")
    qid, msg = r.submit(rcpt)
    t = routed.byname.wait_transactions(1, rcpt=rcpt)
    assert t, "the route's host was not reached; log:\n%s" % r.d.log_tail(30)
    assert routed.decoy.transactions(rcpt=rcpt, accepted_only=False) == []
    assert world.dns.queried("byname.routes.test", "MX") == 0


def assert_never_in_clear(sink, relay, rcpt, qid):
    ev = relay.wait_delivery(to=rcpt)[0]
    assert ev["status"] == "deferred" and ev["dsn"].startswith("4."), ev
    assert qid in relay.queue_text()
    assert relay.dsns(rcpt) == []
    for c in sink.rec.conns(with_helo=False):
        assert "MAIL" not in c.verbs() and "RCPT" not in c.verbs(), c.verbs()


def test_tls_required_without_starttls_defers(routed):
    r = routed.relay
    rcpt = "%s@tlsreq.routes.test" % unique("tr")
    qid, _ = r.submit(rcpt)
    assert_never_in_clear(routed.plain, r, rcpt, qid)
    assert r.deliveries(to=rcpt)[0]["dsn"] == "4.7.5"


def test_tls_required_starttls_refused_defers(routed):
    r = routed.relay
    rcpt = "%s@tlsrefused.routes.test" % unique("tf")
    qid, _ = r.submit(rcpt)
    assert_never_in_clear(routed.refusing, r, rcpt, qid)
    assert any("STARTTLS" in c.verbs() for c in routed.refusing.rec.conns())


def test_tls_none_never_upgrades(routed):
    r = routed.relay
    rcpt = "%s@notls.routes.test" % unique("nt")
    qid, msg = r.submit(rcpt)
    t = routed.notls.wait_transactions(1, rcpt=rcpt)
    assert t, r.d.log_tail(30)
    assert not t[0].conn.tls and "STARTTLS" not in t[0].conn.verbs()


def test_smarthost_refuses_password(routed):
    r = routed.relay
    rcpt = "%s@badauth.routes.test" % unique("ba")
    qid, _ = r.submit(rcpt)
    ev = r.wait_delivery(to=rcpt)[0]
    # refused credentials defer (4.7.0): the password may be fixed
    assert (ev["status"], ev["dsn"]) == ("deferred", "4.7.0"), ev
    assert "535" in ev.get("detail", ""), ev
    assert routed.badauth.transactions(rcpt=rcpt, accepted_only=False) == []
    attempts = [a for c in routed.badauth.rec.conns() for a in c.auth_attempts]
    assert attempts and not any(ok for _, _, ok in attempts), attempts


def test_route_limits_connections_keeps_mx_routing(routed):
    r = routed.relay
    rcpts = ["%s@limited.routes.test" % unique("l%d" % i) for i in range(4)]
    for rc in rcpts:
        r.submit(rc)
    for rc in rcpts:
        r.wait_delivery(to=rc, status="sent", timeout=15)
    assert routed.limited.rec.max_concurrent() == 1, \
        "route connections = 1, yet %d at once" % routed.limited.rec.max_concurrent()
    assert wait_until(lambda: len(routed.limited.transactions(domain="limited.routes.test")) == 4)
    assert routed.smarthost.transactions(domain="limited.routes.test", accepted_only=False) == []


def test_route_rate_spaces_transactions(routed):
    # rate = 120 messages a minute: transactions start 0.5 s apart
    r = routed.relay
    rcpts = ["%s@rated.routes.test" % unique("rt%d" % i) for i in range(4)]
    for rc in rcpts:
        r.submit(rc)
    for rc in rcpts:
        r.wait_delivery(to=rc, status="sent", timeout=15)
    starts = sorted(t.started for t in routed.rated.transactions(domain="rated.routes.test"))
    assert len(starts) == 4
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(g >= 0.4 for g in gaps), "rate 120/min, yet gaps of %r s" % gaps


def test_total_connection_limit(relay_factory, world):
    # outbound.connections = 2: five destinations (one slow server behind
    # them all) never see more than two connections at once, and every
    # message gets through (idle connections give way to waiting ones).
    r = relay_factory({"outbound": {"connections": 2}, "routes": None})
    sink = world.sink("127.0.0.40", delay=0.1)
    doms = ["total%d.routes.test" % i for i in range(5)]
    for d in doms:
        world.route_to(d, "127.0.0.40")
    rcpts = ["%s@%s" % (unique("tot"), d) for d in doms]
    for rc in rcpts:
        r.submit(rc)
    for rc in rcpts:
        r.wait_delivery(to=rc, status="sent", timeout=20)
    assert sink.rec.max_concurrent() <= 2, sink.rec.max_concurrent()


def test_reload_changes_routes(relay_factory, world):
    # a route added by SIGHUP applies to the next message
    a = world.sink("127.0.0.41", own_port=True)
    b = world.sink("127.0.0.42", own_port=True)
    r = relay_factory({"routes": [{"domain": "moved.routes.test", "host": "127.0.0.41",
                                   "port": a.port}]})
    r1 = "%s@moved.routes.test" % unique("m1")
    r.submit(r1)
    assert a.wait_transactions(1, rcpt=r1), r.d.log_tail(20)
    r.d.config["routes"] = [{"domain": "moved.routes.test", "host": "127.0.0.42",
                             "port": b.port}]
    r.d.write_config()
    r.d.reload()
    assert wait_until(lambda: "event=reloaded" in r.d.log_text(), 5), r.d.log_tail(10)
    time.sleep(0.5)
    r2 = "%s@moved.routes.test" % unique("m2")
    r.submit(r2)
    assert b.wait_transactions(1, rcpt=r2), r.d.log_tail(20)
    assert a.transactions(rcpt=r2, accepted_only=False) == []
