"""No open relay: non-local recipients and the classic relay tricks are
refused at RCPT and never delivered anywhere; unknown local users get
550 5.1.1 at RCPT (no accept-then-bounce)."""

import time

import pytest

from fulmar_test import SMTPClient, all_maildir_counts, expect, make_message, wait_for_one

pytestmark = pytest.mark.timeout(60)

RELAY_554 = [
    "user@remote.test",
    "USER@REMOTE.TEST",
    "alice@sub.example.test",
    "alice@example.test.remote.test",
    "alice@example.testx",
    "@example.test:user@remote.test",
    "@example.test,@catchall.test:user@remote.test",
]

# Tricks that must be refused with some 5xx (554 relay denied, 550 unknown
# user, or 501 syntax are all fine), and never delivered.
RELAY_TRICKS = [
    "user%remote.test@example.test",
    "user%remote.test@catchall.test",
    '"user@remote.test"@example.test',
    '"user@remote.test"@catchall.test',
    "user@remote.test@example.test",
    "remote.test!user@example.test",
    "remote.test!user@catchall.test",
    "alice@[127.0.0.2]",
    "alice@[192.0.2.1]",
    "alice@[IPv6:2001:db8::1]",
    "user%remote.test@[127.0.0.2]",
    "alice@example.test@remote.test",
    "user@remote.test.",
]


@pytest.mark.parametrize("rcpt", RELAY_554)
def test_relay_denied(fulmar, rcpt):
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.cmd("RCPT TO:<%s>" % rcpt), 554, "5.7.1")
        expect(c.cmd("DATA"), 503, "5.5.1")
        expect(c.cmd("NOOP"), 250)
    assert fulmar.queue_list() == []


@pytest.mark.parametrize("rcpt", RELAY_TRICKS)
def test_relay_tricks_refused(fulmar, rcpt):
    # The catch-all domain must not turn a trick into an accepted recipient
    # either: these would otherwise land at dave.
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        assert 500 <= r.code < 600 and r.enh and r.enh.startswith("5."), \
            "relay trick %s accepted: %r" % (rcpt, r)
        # a good recipient after it, so that a DATA would be accepted: the
        # trick still must not be delivered
        expect(c.rcpt("carol@example.test"), 250)
        expect(c.data(make_message(subject="trick")), 250, "2.0.0")
    wait_for_one(fulmar.maildir("carol"))
    time.sleep(0.5)
    counts = all_maildir_counts(fulmar)
    assert counts == {"alice": 0, "bob": 0, "carol": 1, "dave": 0}, counts


def test_relay_denied_with_null_sender_and_local_sender(fulmar):
    with SMTPClient(fulmar.port) as c:
        c.ehlo("mx.test.local")
        expect(c.cmd("MAIL FROM:<>"), 250)
        expect(c.rcpt("user@remote.test"), 554, "5.7.1")
        expect(c.cmd("RSET"), 250)
        expect(c.mail("alice@example.test"), 250)
        expect(c.rcpt("user@remote.test"), 554, "5.7.1")


@pytest.mark.parametrize("rcpt", ["nobody@example.test", "nobody+tag@example.test",
                                  "ALICEX@example.test", "alice.smith@example.test",
                                  '"nobody"@example.test'])
def test_unknown_local_user(fulmar, rcpt):
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.cmd("RCPT TO:<%s>" % rcpt), 550, "5.1.1")
        expect(c.cmd("DATA"), 503, "5.5.1")
    time.sleep(0.3)
    assert all(v == 0 for v in all_maildir_counts(fulmar).values())


def test_quoted_local_part_of_a_real_user(fulmar):
    msg = make_message(subject="quoted")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.cmd('RCPT TO:<"alice"@example.test>'), 250, "2.1.5")
        expect(c.data(msg), 250, "2.0.0")
    wait_for_one(fulmar.maildir("alice"))


def test_source_route_to_local_user_is_ignored(fulmar):
    msg = make_message(subject="route")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250)
        expect(c.cmd("RCPT TO:<@remote.test:bob@example.test>"), 250, "2.1.5")
        expect(c.data(msg), 250, "2.0.0")
    wait_for_one(fulmar.maildir("bob"))


def test_vrfy_does_not_leak_users(session):
    a = session.cmd("VRFY alice")
    b = session.cmd("VRFY nobody")
    expect(a, 252, "2.5.0")
    expect(b, 252, "2.5.0")
    assert a.text.replace("alice", "X") == b.text.replace("nobody", "X"), (a, b)
