"""Out of memory as the SPF, DKIM and DMARC checks of an inbound message
start, against the real daemon (FULMAR_FAULT=alloc:N:ENOMEM:1,
src/lib/mem.h; docs/robustness.md, "Allocation failures").

A check that cannot start for want of memory (spf_async_start,
dkim_verify_async_start, dmarc_async_start: NULL, errno ENOMEM, no
callback; or the first lookup it starts: DNS_NOMEM) must end the
transaction with 451 4.3.0, never with a verdict: not a pass, not a
temperror in Authentication-Results, not the 550 of the sender's
p=reject policy. The sweep fails each allocation of an mx session in
turn (one daemon per N, until the fault no longer lands) while a loopback
DNS server (tests/lib/dns_server.py) publishes the sender's SPF record,
DKIM key and DMARC policy, and tells from the questions it got which
checks started:
  - MAIL refused with 451 and no SPF question: the SPF check of MAIL FROM
    (or the inbound checks' own state) could not start;
  - the end of data refused with 451, the DMARC question asked but not
    the DKIM key's: the key lookups could not start;
  - the same with the key asked but not the DMARC policy: DMARC could not
    start.
Each of the three must be seen. For every N the session completes with a
message carrying spf=pass, dkim=pass and dmarc=pass, or gets 451/421
4.3.0; a refused message is nowhere; a second client's message is then
delivered (the server keeps serving); the daemon stops cleanly with no
sanitizer or leak report.
"""
import os
import re
import sys
import time

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, "lib"))

from dns_server import DNSServer  # noqa: E402
from fulmar_test import (LEAK_MARKER, ConnectionClosed, SMTPClient, dkim_rsa_key,  # noqa: E402
                         make_message, wait_until)
from alloc_faults import (delivered_with, fault_landed, is_oom_refusal,  # noqa: E402
                          start_with_alloc_fault)

dkim = pytest.importorskip("dkim")

SENDER = "client.test"
SWEEP_LIMIT = 150


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    key, record = dkim_rsa_key(str(tmp_path_factory.mktemp("dkim")))
    srv = DNSServer({
        (SENDER, "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
        ("_dmarc." + SENDER, "TXT"): ["v=DMARC1; p=reject; adkim=s; aspf=s"],
        ("sel._domainkey." + SENDER, "TXT"): [record],
    })
    yield srv, key
    srv.close()


def start(fulmar_factory, srv, n):
    """A daemon whose nth fallible allocation fails, leak checking on
    (alloc_faults.py)."""
    return start_with_alloc_fault(fulmar_factory, n, {
        "local": {"deliver_at_receipt": False},
        "dns": {"reverse_lookups": False, "resolvers": srv.address},
        "inbound": {"checks": True, "timeout": 5.0}})


def session(d, srv, message):
    """The swept session: (step refused or None, its reply)."""
    c = SMTPClient(d.port, read_greeting=False)
    try:
        r = c.reply()
        if r.code != 220:
            return "connect", r
        for line in ("EHLO " + SENDER, "MAIL FROM:<sender@%s>" % SENDER,
                     "RCPT TO:<alice@example.test>", "DATA"):
            asked = srv.queried(SENDER, "TXT")
            r = c.cmd(line)
            if r.code >= 400:
                return line.split()[0], r
            if line.startswith("MAIL"):
                # SPF of MAIL FROM and of HELO asked and answered before the
                # message comes: the allocations of the session then come
                # in the same order from run to run, and the sweep fails
                # each of them.
                # (A fault may keep them from being asked: the wait then
                # just ends; the verdict is checked below.)
                wait_until(lambda: srv.queried(SENDER, "TXT") >= asked + 2, timeout=1)
                time.sleep(0.05)
        assert r.code == 354, r
        c.send(message + b".\r\n")
        r = c.reply(timeout=30)
        if r.code != 250:
            return "end of data", r
        c.cmd("QUIT")
        return None, r
    finally:
        c.close()


def questions(srv):
    return {what: srv.queried(name, "TXT") for what, name in
            (("spf", SENDER), ("dkim", "sel._domainkey." + SENDER),
             ("dmarc", "_dmarc." + SENDER))}


def check_one(fulmar_factory, world, n):
    """One N: None when the fault never landed, else the check that could
    not start ("spf", "dkim", "dmarc") or "" for any other outcome."""
    srv, key = world
    d = start(fulmar_factory, srv, n)
    before = questions(srv)
    subject = "swept %d" % n
    msg = make_message(subject=subject, sender="sender@" + SENDER)
    msg = dkim.sign(msg, b"sel", SENDER.encode(), key,
                    include_headers=[b"from", b"to", b"subject", b"date"]) + msg
    try:
        refused, r = session(d, srv, msg)
    except ConnectionClosed as e:
        pytest.fail("fault %d: connection closed without a reply (%r):\n%s"
                    % (n, e, d.log_tail()))
    landed = fault_landed(d)

    def mine():
        return delivered_with(d.maildir("alice"), subject)

    if refused is None:
        assert wait_until(mine, timeout=10), "fault %d: 250 given, the message is missing" % n
        head = re.sub(rb"\n[ \t]+", b" ", mine()[0].split(b"\n\n")[0])
        for verdict in (b"spf=pass smtp.mailfrom=", b"dkim=pass header.d=" + SENDER.encode(),
                        b"dmarc=pass (p=reject"):
            assert verdict in head, (n, head)
    else:
        assert is_oom_refusal(r), (n, refused, r)
        assert "event=oom" in d.log_text(), d.log_tail()
    if landed:
        second_client_delivers(d, n)
    assert d.running, "fault %d: the daemon died" % n
    rc = d.stop()
    log = d.log_text()
    assert LEAK_MARKER not in log, "fault %d: leak\n%s" % (n, log[log.index(LEAK_MARKER):])
    assert rc == 0, "fault %d: exit status %s\n%s" % (n, rc, d.log_tail())
    if not landed:
        assert refused is None, (n, refused, r)
        return None
    # Read only now: a question sent just before a quick 451 may still
    # have been on its way then (the second client asks of other.test only).
    asked = {k: v - before[k] for k, v in questions(srv).items()}
    if refused is not None:
        assert mine() == [], "fault %d: refused, yet delivered" % n
    if refused == "MAIL" and asked["spf"] == 0:
        return "spf"
    if refused == "end of data" and asked["spf"]:
        if asked["dmarc"] and not asked["dkim"]:
            return "dkim"
        if asked["dkim"] and not asked["dmarc"]:
            return "dmarc"
    return ""


def second_client_delivers(d, n):
    """While the fault's effects are over, another client's mail goes."""
    with SMTPClient(d.port) as c:  # the server goes on serving
        c.ehlo("other.test")
        c.send_mail("s@other.test", ["carol@example.test"],
                    make_message(subject="second %d" % n, sender="s@other.test",
                                 to="carol@example.test"))
        c.quit()
    assert wait_until(lambda: delivered_with(d.maildir("carol"), "second %d" % n), timeout=10), n


@pytest.mark.timeout(300)
def test_oom_as_each_check_starts(fulmar_factory, world):
    seen = {}
    for n in range(1, SWEEP_LIMIT + 1):
        got = check_one(fulmar_factory, world, n)
        if got is None:
            break
        seen.setdefault(got, []).append(n)
    else:
        pytest.fail("the alloc fault still lands at N=%d: raise SWEEP_LIMIT" % SWEEP_LIMIT)
    print("allocations swept: %d; checks that could not start: %s" % (n - 1, seen))
    for check in ("spf", "dkim", "dmarc"):
        assert check in seen, (check, seen)
