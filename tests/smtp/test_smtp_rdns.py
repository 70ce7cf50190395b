"""Reverse DNS of the client in Received:, through a DNS server on loopback."""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from dns_server import DNSServer  # noqa: E402
from fulmar_test import SMTPClient, expect, wait_until  # noqa: E402

PTR = "1.0.0.127.in-addr.arpa"


def deliver_one(d, srv=None, forward=None):
    """One message. With forward (a name), the session waits until the DNS
    server srv was asked for that name's address (the lookup's last step)
    and a moment more, so the Received: field shows its outcome, however
    slowly the test machine runs."""
    with SMTPClient(d.port) as c:
        expect(c.cmd("EHLO helo.client.test"), 250)
        if forward:
            assert wait_until(lambda: (forward, 1) in srv.queries, timeout=10), srv.queries
            time.sleep(0.3)
        expect(c.cmd("MAIL FROM:<s@client.test>"), 250)
        expect(c.cmd("RCPT TO:<alice@example.test>"), 250)
        expect(c.cmd("NOOP"), 250)  # gives the lookup time to answer
        expect(c.cmd("DATA"), 354)
        c.send(b"Subject: rdns\r\n\r\nbody\r\n.\r\n")
        expect(c.reply(), 250, "2.0.0")


def received_of(d):
    new = os.path.join(d.maildir("alice"), "new")
    for _ in range(100):
        files = os.listdir(new) if os.path.isdir(new) else []
        if files:
            with open(os.path.join(new, files[0]), "rb") as f:
                return f.read().split(b"\n\n")[0]
        time.sleep(0.1)
    pytest.fail("nothing delivered")


@pytest.fixture
def dns():
    servers = []

    def make(records, **kw):
        s = DNSServer(records, **kw)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


def test_verified_name_in_received(fulmar_factory, dns):
    srv = dns({(PTR, "PTR"): ["client.rdns.test"],
               ("client.rdns.test", "A"): ["127.0.0.1"]})
    d = fulmar_factory(dns={"reverse_lookups": True,
                            "resolvers": "127.0.0.1:%d" % srv.port})
    deliver_one(d, srv, "client.rdns.test")
    head = received_of(d)
    assert b"from helo.client.test (client.rdns.test [127.0.0.1])" in head, head
    assert (PTR, 12) in srv.queries


def test_unconfirmed_name_is_unknown(fulmar_factory, dns):
    # The PTR name resolves to another address: not trusted.
    srv = dns({(PTR, "PTR"): ["liar.rdns.test"],
               ("liar.rdns.test", "A"): ["192.0.2.7"]})
    d = fulmar_factory(dns={"reverse_lookups": True,
                            "resolvers": "127.0.0.1:%d" % srv.port})
    deliver_one(d, srv, "liar.rdns.test")
    head = received_of(d)
    assert b"(unknown [127.0.0.1])" in head, head


def test_dns_failure_does_not_delay_or_refuse(fulmar_factory, dns):
    srv = dns({}, drop=[PTR])
    d = fulmar_factory(dns={"reverse_lookups": True, "timeout": 0.5,
                            "resolvers": "127.0.0.1:%d" % srv.port})
    t0 = time.time()
    deliver_one(d)
    # The lookup times out after 2 tries of 0.5 s; the session never waits.
    assert time.time() - t0 < 0.9, time.time() - t0
    head = received_of(d)
    assert b"(unknown [127.0.0.1])" in head, head


def test_reverse_lookups_off_asks_nothing(fulmar_factory, dns):
    srv = dns({(PTR, "PTR"): ["client.rdns.test"]})
    d = fulmar_factory(dns={"reverse_lookups": False,
                            "resolvers": "127.0.0.1:%d" % srv.port})
    deliver_one(d)
    assert b"(unknown [127.0.0.1])" in received_of(d)
    assert srv.queries == []
