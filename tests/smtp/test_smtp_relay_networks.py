"""server.relay_networks (Postfix's mynetworks): clients whose address is
in one of the blocks may relay without AUTH, everyone else is still
refused at RCPT (554 5.7.1); without the setting nobody relays
unauthenticated. The relayed message reaches the static route's server.

A client "outside" connects from 127.0.0.2 (a source address bound on the
loopback interface) to a listener on 127.0.0.1."""

import socket
import time

import pytest

from fulmar_test import SMTPClient, expect, make_message
from smtp_peers import SMTPSink

pytestmark = pytest.mark.timeout(60)

RELAY_DOMAIN = "relay.test"


class BoundClient(SMTPClient):
    """SMTPClient whose connection comes from a chosen loopback address."""

    def __init__(self, port, source, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.greeting = self.reply()


def client(port, source="127.0.0.1"):
    return BoundClient(port, source)


@pytest.fixture
def sink():
    with SMTPSink(host="127.0.0.1") as s:
        yield s


def relay_config(sink, networks):
    over = {
        "outbound": {"tls": "none", "connect_timeout": 5.0},
        "routes": [{"domain": RELAY_DOMAIN, "host": "127.0.0.1", "port": sink.port}],
    }
    if networks is not None:
        over["server"] = {"relay_networks": networks}
    return over


def rcpt_reply(port, source, rcpt="user@" + RELAY_DOMAIN):
    with client(port, source) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        c.cmd("QUIT")
        return r


def test_client_in_network_relays_to_route(fulmar_factory, sink):
    d = fulmar_factory(**relay_config(sink, ["127.0.0.1/32"]))
    with client(d.port, "127.0.0.1") as c:
        c.ehlo()
        expect(c.mail("sender@client.test"), 250)
        expect(c.rcpt("user@" + RELAY_DOMAIN), 250, "2.1.5")
        expect(c.data(make_message(subject="relayed", body="through the network\r\n")),
               250, "2.0.0")
        expect(c.cmd("QUIT"), 221)
    txns = sink.wait_transactions(1, rcpt="user@" + RELAY_DOMAIN, timeout=20)
    assert txns[0].mail_from == "sender@client.test"
    assert b"through the network" in txns[0].data
    deadline = time.monotonic() + 10
    while not d.log_lines_with("status=sent") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert d.log_lines_with("status=sent"), d.log_tail()
    deadline = time.monotonic() + 10
    while d.queue_list() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert d.queue_list() == []


def test_client_outside_network_refused(fulmar_factory, sink):
    d = fulmar_factory(**relay_config(sink, ["127.0.0.1/32"]))
    expect(rcpt_reply(d.port, "127.0.0.2"), 554, "5.7.1")
    # Local mail is still taken from it.
    with client(d.port, "127.0.0.2") as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.rcpt("user@" + RELAY_DOMAIN), 554, "5.7.1")
        expect(c.rcpt("alice@example.test"), 250)
        expect(c.data(make_message(subject="local")), 250, "2.0.0")
    time.sleep(0.5)
    assert sink.transactions() == []


def test_no_networks_no_unauthenticated_relay(fulmar_factory, sink):
    d = fulmar_factory(**relay_config(sink, None))
    expect(rcpt_reply(d.port, "127.0.0.1"), 554, "5.7.1")
    expect(rcpt_reply(d.port, "127.0.0.2"), 554, "5.7.1")


def test_block_and_several_entries(fulmar_factory, sink):
    d = fulmar_factory(**relay_config(sink, ["192.0.2.0/24", "::1", "127.0.0.0/30"]))
    expect(rcpt_reply(d.port, "127.0.0.1"), 250)
    expect(rcpt_reply(d.port, "127.0.0.3"), 250)
    expect(rcpt_reply(d.port, "127.0.0.4"), 554, "5.7.1")


def test_unknown_local_user_still_refused_inside_network(fulmar_factory, sink):
    # A trusted client relays to other domains; our own domains are
    # checked as for anyone.
    d = fulmar_factory(**relay_config(sink, ["127.0.0.1/32"]))
    expect(rcpt_reply(d.port, "127.0.0.1", "nobody@example.test"), 550, "5.1.1")
    expect(rcpt_reply(d.port, "127.0.0.1", "user%relay.test@example.test"), 554, "5.7.1")


def test_reload_applies_to_new_connections(fulmar_factory, sink):
    d = fulmar_factory(**relay_config(sink, None))
    held = client(d.port, "127.0.0.1")
    try:
        held.ehlo()
        d.config["server"]["relay_networks"] = ["127.0.0.0/8"]
        d.write_config()
        d.reload()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if rcpt_reply(d.port, "127.0.0.2").code == 250:
                break
            time.sleep(0.1)
        expect(rcpt_reply(d.port, "127.0.0.2"), 250)
        # The session that started before the reload keeps its own view.
        expect(held.mail("s@client.test"), 250)
        expect(held.cmd("RCPT TO:<user@%s>" % RELAY_DOMAIN), 554, "5.7.1")
    finally:
        held.close()


@pytest.mark.parametrize("value, message", [
    (["10.1.2.3/8"], "bits set after its /8 prefix"),
    (["127.0.0.0/33"], "the prefix must be a number from 0 to 32"),
    (["localhost"], "is not an IPv4 or IPv6 address"),
    ("127.0.0.1", "must be an array of strings"),
])
def test_check_config_refuses_bad_networks(fulmar_factory, sink, value, message):
    d = fulmar_factory(start=False, **relay_config(sink, ["127.0.0.1"]))
    d.config["server"]["relay_networks"] = value
    d.write_config()
    r = d.cli("check-config", "--config", d.config_path)
    err = r.stderr.decode("utf-8", "replace") + r.stdout.decode("utf-8", "replace")
    assert r.returncode == 1, err
    assert message in err, err
    assert d.config_path + ":" in err, err
