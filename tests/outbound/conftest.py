"""Fixtures of the outbound delivery tests: a DNS server on loopback with
the test zones, receiving servers on 127.0.0.x (tests/lib/smtp_peers.py),
and Fulmar daemons whose outbound engine resolves through that DNS server
and delivers to those peers.

Every peer Fulmar reaches through MX or A/AAAA records listens on the same
port (`world.port`, Fulmar's outbound.port) on its own loopback address:
a domain's MX record picks the peer. Each test uses domains of its own
(and peers of its own where it counts connections), so one daemon serves
a whole module.

Mail is submitted by alice@example.test (a local mailbox) on a submission
listener with AUTH in plain text; her bounces land in her Maildir.
"""
import pytest

from outbound_lib import World, finish_daemons, make_relay


@pytest.fixture(scope="module")
def world():
    w = World()
    yield w
    w.close()


@pytest.fixture(scope="module")
def relay_factory(world, request):
    """relay_factory(extra=None, start=True) -> Relay; stopped at the end
    of the module."""
    made = []
    before = request.session.testsfailed

    def make(extra=None, start=True, senders=()):
        r = make_relay(world, extra, start, senders)
        made.append(r.d)
        return r
    yield make
    finish_daemons(made, request, before)


@pytest.fixture(scope="module")
def relay(relay_factory):
    """The module's relay daemon with the default relay configuration."""
    return relay_factory()
