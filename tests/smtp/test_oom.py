"""Allocation failures in a session (FULMAR_FAULT=alloc:N:ENOMEM:1,
src/lib/mem.h) against the real daemon.

Every allocation made for an SMTP session on the event loop comes from the
fallible allocator. The sweep starts one daemon per N with the Nth of
those allocations failing (once), and runs a whole session: connect, EHLO,
MAIL, two RCPT, DATA with a body, QUIT. For each N:
  - the session completes normally, or gets 451 4.3.0 / 421 4.3.0 "out of
    memory" (and then goes no further): never a hang, a crash, another
    reply, or a 250 for a message that is then missing; a message refused
    is never delivered;
  - an event=oom line is logged when the session was refused;
  - a second client's whole transaction then succeeds and its message is
    delivered: the daemon is still alive and serving;
  - the daemon stops cleanly, with no AddressSanitizer or LeakSanitizer
    report (leak checking is on for these daemons: as root they run as the
    unprivileged user from the start, since LeakSanitizer cannot work
    after a privilege drop).
The sweep ends at the first N whose fault does not land before the second
client (the daemon logs event=fault_injected for each injected failure):
every allocation of the session has then failed once. The count N is
process-wide, so the first few N land in the start-up probe's own session
(Daemon.wait_ready's connect and QUIT), which it retries.

Six variants: mx through the queue (local.deliver_at_receipt = false),
mx with delivery at receipt into the Maildirs, submission with AUTH PLAIN
(the password check, the authenticated name, the header section held to
add Message-ID: and Date:), mx with the SPF/DKIM/DMARC checks on while
DNS fails at once ("inbound": the checks' state, the header copy, the
Authentication-Results copy), the same checks doing their whole work
("verify": a loopback DNS server, tests/lib/dns_server.py, publishes the
sender domain's SPF record, with mx, include and a: to follow, its DMARC
policy (p=reject, strict alignment) and the DKIM key of a message signed
by python3-dkim, and answers the reverse lookup: every query, answer,
cache entry, record, frame and verifier allocation is swept), and
submission with DKIM signing ("signing": RSA and Ed25519 keys made by
`fulmar dkim keygen`; the signer runs on the session, then on the queue's
commit worker). A message accepted in "verify" always carries spf=pass,
dkim=pass and dmarc=pass (memory trouble is never a degraded verdict: it
is a 451), and one accepted in "signing" is always signed, and the
signature verifies (python3-dkim) on the run without a fault.
"""

import base64
import os
import re
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))

from dns_server import DNSServer  # noqa: E402
from alloc_faults import (OOM_CODES, delivered_with, fault_landed,  # noqa: E402
                          is_oom_refusal, start_with_alloc_fault)
from fulmar_test import (LEAK_MARKER, SMTPClient, ConnectionClosed,  # noqa: E402
                         dkim_keygen, dkim_rsa_key, fulmar_bin, free_port,
                         make_message, make_test_root, wait_until)

try:
    import dkim
except ImportError:  # the variants that need it are skipped
    dkim = None

SWEEP_LIMIT = 150      # far above a session's allocations (about 30)
MIN_ALLOCATIONS = 10   # a sweep shorter than this tests nothing
PATHS = {
    "queue": {"local": {"deliver_at_receipt": False}},
    "receipt": {"local": {"deliver_at_receipt": True}},
    "submission": {"local": {"deliver_at_receipt": False}},
    # SPF, DKIM and DMARC on; the DNS server is a loopback port where
    # nothing listens, so every lookup fails at once (temperror).
    "inbound": {"local": {"deliver_at_receipt": False},
                "inbound": {"checks": True, "timeout": 1.0}},
    # The same checks against the world fixture's DNS server (its address
    # and the reverse lookups are added by variant()).
    "verify": {"local": {"deliver_at_receipt": False},
               "inbound": {"checks": True, "timeout": 5.0}},
    # Submission with the world fixture's DKIM keys for example.test.
    "signing": {"local": {"deliver_at_receipt": False}},
}
SENDER_DOMAIN = "client.test"  # the swept mx sessions' MAIL FROM and From:
USER, PASSWORD = "alice@example.test", "correct horse battery staple"
MX_STEPS = ["EHLO client.test", "MAIL FROM:<sender@client.test>"]
SUBMISSION_STEPS = ["EHLO client.test",
                    "AUTH PLAIN " + base64.b64encode(
                        ("\0%s\0%s" % (USER, PASSWORD)).encode()).decode(),
                    "MAIL FROM:<%s>" % USER]
RCPT_STEPS = ["RCPT TO:<alice@example.test>", "RCPT TO:<bob@example.test>", "DATA"]


@pytest.fixture(scope="module")
def world():
    """What the verify and signing variants need: a DNS server publishing
    SENDER_DOMAIN's SPF, DMARC and DKIM records (and a reverse name for
    127.0.0.1), the private key that signs its messages, and the signing
    keys of example.test (made by `fulmar dkim keygen`) with their
    records."""
    if dkim is None:
        yield None
        return
    root = make_test_root("fulmar-oom-world-")
    sender_key, sender_record = dkim_rsa_key(root)
    dns = DNSServer({
        (SENDER_DOMAIN, "TXT"): ["v=spf1 mx include:_spf.%s -all" % SENDER_DOMAIN],
        (SENDER_DOMAIN, "MX"): [(10, "mx." + SENDER_DOMAIN)],
        ("mx." + SENDER_DOMAIN, "A"): ["192.0.2.25"],
        ("_spf." + SENDER_DOMAIN, "TXT"): ["v=spf1 a:relay.%s ip4:127.0.0.0/8 -all"
                                           % SENDER_DOMAIN],
        ("relay." + SENDER_DOMAIN, "A"): ["192.0.2.26"],
        ("_dmarc." + SENDER_DOMAIN, "TXT"): ["v=DMARC1; p=reject; adkim=s; aspf=s"],
        ("sel._domainkey." + SENDER_DOMAIN, "TXT"): [sender_record],
        ("1.0.0.127.in-addr.arpa", "PTR"): [SENDER_DOMAIN],
        (SENDER_DOMAIN, "A"): ["127.0.0.1"],
    })
    keydir = os.path.join(root, "dkim")
    signing, records = [], {}
    for selector, extra in (("rsa", []), ("ed", ["--ed25519"])):
        path, record = dkim_keygen(keydir, "example.test", selector, *extra)
        records[("%s._domainkey.example.test." % selector).encode()] = record.encode()
        signing.append({"domain": "example.test", "selector": selector, "key": path})
    yield {"dns": dns, "sender_key": sender_key, "signing": signing, "records": records}
    dns.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def users_file():
    """One users file for every submission daemon of the sweep (hashing a
    password is slow on purpose)."""
    root = make_test_root("fulmar-oom-users-")
    path = os.path.join(root, "users")
    r = subprocess.run([fulmar_bin(), "user", "add", "--users-file", path, USER],
                       input=(PASSWORD + "\n").encode(), capture_output=True,
                       env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    assert r.returncode == 0, r.stderr
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(root, ignore_errors=True)


class Variant:
    """One sweep: the configuration overrides, the swept session's port
    (None: the mx port), its first steps, the message it sends, and a check
    of each copy delivered from it (accepted: the 250'd copy; clean: the
    run whose fault never landed)."""

    def __init__(self, path, overrides, port=None, steps=MX_STEPS):
        self.path, self.overrides, self.port, self.steps = path, overrides, port, steps

    def message(self, subject):
        return make_message(subject=subject, body="The body.\nOf two lines.\n", sender=USER)

    def check_copy(self, data, clean):
        pass


class VerifyVariant(Variant):
    def __init__(self, world):
        overrides = dict(PATHS["verify"])
        overrides["dns"] = {"reverse_lookups": True, "resolvers": world["dns"].address}
        super().__init__("verify", overrides,
                         steps=["EHLO " + SENDER_DOMAIN,
                                "MAIL FROM:<sender@%s>" % SENDER_DOMAIN])
        self.key = world["sender_key"]

    def message(self, subject):
        msg = make_message(subject=subject, body="The body.\nOf two lines.\n",
                           sender="sender@" + SENDER_DOMAIN)
        return dkim.sign(msg, b"sel", SENDER_DOMAIN.encode(), self.key,
                         include_headers=[b"from", b"to", b"subject", b"message-id",
                                          b"date"]) + msg

    def check_copy(self, data, clean):
        # Maildir copies have LF line ends (docs/delivery.md).
        head = re.sub(rb"\n[ \t]+", b" ", data.split(b"\n\n", 1)[0])
        ar = [ln for ln in head.split(b"\n")
              if ln.lower().startswith(b"authentication-results:")]
        assert len(ar) == 1, head
        for verdict in (b"spf=pass smtp.mailfrom=", b"dkim=pass header.d=" +
                        SENDER_DOMAIN.encode(), b"dmarc=pass (p=reject"):
            assert verdict in ar[0], ar[0]
        if clean:
            assert re.search(rb"^Received: from client\.test \(client\.test ", head, re.M), \
                head  # the reverse name was found and kept


class SigningVariant(Variant):
    def __init__(self, world, users_file):
        port = free_port()
        overrides = dict(PATHS["signing"])
        overrides["auth"] = {"users_file": users_file}
        overrides["dkim"] = world["signing"]
        overrides["extra_listeners"] = [dict(address="127.0.0.1", port=port,
                                             role="submission", auth_plaintext=True)]
        super().__init__("signing", overrides, port, SUBMISSION_STEPS)
        self.records = world["records"]

    def check_copy(self, data, clean):
        data = data.replace(b"\n", b"\r\n")  # Maildir copies have LF line ends
        sigs = re.findall(rb"^DKIM-Signature:.*?\r\n(?![ \t])", data, re.M | re.S)
        assert len(sigs) == 2, data[:2000]
        assert b"s=rsa;" in re.sub(rb"\s+", b"", sigs[0]), sigs
        assert b"s=ed;" in re.sub(rb"\s+", b"", sigs[1]), sigs
        # Both signatures, as a receiver would check them: a copy accepted
        # after a fault must be signed as well as one without.
        for idx in (0, 1):
            assert dkim.DKIM(data).verify(
                idx=idx, dnsfunc=lambda name, timeout=5: self.records.get(name)), (idx, clean)


def variant(path, users_file, world):
    if path in ("verify", "signing") and world is None:
        pytest.skip("python3-dkim is not installed")
    if path == "verify":
        return VerifyVariant(world)
    if path == "signing":
        return SigningVariant(world, users_file)
    overrides = dict(PATHS[path])
    if path != "submission":
        return Variant(path, overrides)
    port = free_port()
    overrides["auth"] = {"users_file": users_file}
    overrides["extra_listeners"] = [dict(address="127.0.0.1", port=port, role="submission",
                                         auth_plaintext=True)]
    return Variant(path, overrides, port, SUBMISSION_STEPS)


def first_session(d, message, port=None, steps=MX_STEPS):
    """The swept session. Returns (accepted, refusal): accepted when the
    message got 250; refusal is the 451/421 reply that ended it, or None."""
    c = SMTPClient(port or d.port, read_greeting=False)
    try:
        r = c.reply()
        if r.code != 220:
            assert is_oom_refusal(r) and r.code == 421, r
            return False, r
        for line in steps + RCPT_STEPS:
            r = c.cmd(line)
            if r.code >= 400:
                assert is_oom_refusal(r), (line, r)
                return False, r
        assert r.code == 354, r
        c.send(message + b".\r\n")
        r = c.reply()
        if r.code != 250:
            assert is_oom_refusal(r), ("end of data", r)
            return False, r
        assert r.enh == "2.0.0" and r.queue_id, r
        q = c.cmd("QUIT")
        # The message is in already; only QUIT itself may be refused.
        assert q.code == 221 or is_oom_refusal(q), q
        return True, None if q.code == 221 else q
    finally:
        c.close()


def second_client_delivers(d, n):
    subject = "second client, fault %d" % n
    with SMTPClient(d.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["carol@example.test"],
                    make_message(subject=subject, to="carol@example.test"))
        c.quit()
    assert wait_until(lambda: delivered_with(d.maildir("carol"), subject), timeout=10), \
        "the second client's message was not delivered (fault %d)" % n


def check_one(fulmar_factory, n, v):
    """One N of the sweep of variant v. Returns None when the fault never
    landed (the sweep is over), else (accepted, refusal)."""
    d = start_with_alloc_fault(fulmar_factory, n, v.overrides)
    subject = "swept, fault %d" % n
    try:
        accepted, refusal = first_session(d, v.message(subject), v.port, v.steps)
    except ConnectionClosed as e:
        pytest.fail("fault %d: connection closed without a reply (%r):\n%s"
                    % (n, e, d.log_tail()))
    clean = not fault_landed(d)
    if refusal is not None:
        assert "event=oom" in d.log_text(), d.log_tail()
    for user in ("alice", "bob"):
        if accepted:
            assert wait_until(lambda: delivered_with(d.maildir(user), subject), timeout=10), \
                "fault %d: 250 given, the message is missing for %s" % (n, user)
            v.check_copy(delivered_with(d.maildir(user), subject)[0], clean)
    if clean:
        assert accepted and refusal is None
        d.stop()
        return None
    second_client_delivers(d, n)
    if not accepted:
        for user in ("alice", "bob"):
            assert delivered_with(d.maildir(user), subject) == [], \
                "fault %d: a refused message was delivered" % n
    assert d.running, "fault %d: the daemon died" % n
    rc = d.stop()
    log = d.log_text()
    assert LEAK_MARKER not in log, "fault %d: leak\n%s" % (n, log[log.index(LEAK_MARKER):])
    assert rc == 0, "fault %d: exit status %s\n%s" % (n, rc, d.log_tail())
    return accepted, refusal


def sweep(fulmar_factory, v):
    outcomes = {}
    for n in range(1, SWEEP_LIMIT + 1):
        got = check_one(fulmar_factory, n, v)
        if got is None:
            return outcomes
        outcomes[n] = got
    pytest.fail("the alloc fault still lands at N=%d: raise SWEEP_LIMIT" % SWEEP_LIMIT)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", sorted(PATHS))
def test_alloc_failure_sweep(fulmar_factory, users_file, world, path):
    outcomes = sweep(fulmar_factory, variant(path, users_file, world))
    assert len(outcomes) >= MIN_ALLOCATIONS, outcomes
    refused = {n: r for n, (ok, r) in outcomes.items() if r is not None}
    # Most failures land in the swept session and refuse something; the
    # others fell on the start-up probe or on memory a session can do
    # without (a reverse name, for instance).
    assert refused, outcomes
    codes = {r.code for r in refused.values()}
    assert codes <= set(OOM_CODES), codes
    print("%s: %d allocations swept, %d refusals (%s)"
          % (path, len(outcomes), len(refused),
             ", ".join("%d:%d" % (n, r.code) for n, r in sorted(refused.items()))))


def test_oom_logged_with_session_id(fulmar_factory):
    """One fault in the middle of a session: one event=oom line with its
    sid, and the session's reply is the 451."""
    # Past the start-up probe and the swept session's first commands.
    for n in range(1, SWEEP_LIMIT + 1):
        d = start_with_alloc_fault(fulmar_factory, n, PATHS["queue"])
        accepted, refusal = first_session(d, make_message(subject="logged"))
        if refusal is not None and refusal.code == 451:
            lines = d.log_lines_with("event=oom")
            assert len(lines) == 1, lines
            assert re.search(r"\bsid=\d+\b", lines[0]) and "where=" in lines[0], lines
            d.stop()
            return
        d.stop()
    pytest.fail("no 451 in the sweep")
