"""SPF, DKIM and DMARC on the mx listener, end to end: a loopback DNS
server (tests/lib/dns_server.py) publishes SPF, DKIM key and DMARC
records; messages signed by python3-dkim (an independent signer) arrive
over SMTP; the delivered copy carries one Authentication-Results field
with our authserv-id, forged ones are removed, and a DMARC p=reject
failure is refused with 550 5.7.1 (or only recorded, when configured).
DNS trouble gives temperror, never a refusal.
"""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))

from dns_server import DNSServer  # noqa: E402
from fulmar_test import (HEADER_HOLD, SMTPClient, dkim_rsa_key, header_filler,  # noqa: E402
                         wait_for_one)

dkim = pytest.importorskip("dkim")

AUTHSERV = "mx.test.local"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    priv, record = dkim_rsa_key(str(tmp_path_factory.mktemp("dkim")))
    zone = {
        # sender domains
        ("good.test", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
        ("_dmarc.good.test", "TXT"): ["v=DMARC1; p=reject"],
        ("sel._domainkey.good.test", "TXT"): [record],
        ("spoofed.test", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"],
        ("_dmarc.spoofed.test", "TXT"): ["v=DMARC1; p=reject"],
        ("soft.test", "TXT"): ["v=spf1 ip4:192.0.2.1 ~all"],
        ("_dmarc.soft.test", "TXT"): ["v=DMARC1; p=none"],
        ("lax.test", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"],
        ("helo.good.test", "TXT"): ["v=spf1 a -all"],
        ("helo.good.test", "A"): ["127.0.0.1"],
        ("_dmarc.lax.test", "TXT"): ["v=DMARC1; p=quarantine"],
    }
    srv = DNSServer(zone, servfail=["broken.test", "_dmarc.broken.test"])
    yield srv, priv
    srv.close()


def daemon(fulmar_factory, world, **inbound):
    srv, _ = world
    cfg = {"checks": True}
    cfg.update(inbound)
    return fulmar_factory(dns={"reverse_lookups": False, "resolvers": srv.address},
                          inbound=cfg)


def message(from_domain, subject="hello", extra=b""):
    return (b"From: Someone <someone@" + from_domain.encode() + b">\r\n"
            b"To: alice@example.test\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Date: Mon, 6 May 2024 10:00:00 +0000\r\n"
            b"Message-ID: <" + subject.encode() + b"@x>\r\n" + extra +
            b"\r\nbody of the message\r\n")


def signed(msg, priv, domain="good.test"):
    sig = dkim.sign(msg, b"sel", domain.encode(), priv,
                    include_headers=[b"from", b"to", b"subject", b"date"])
    return sig + msg


def send(d, sender, msg, helo="client.test"):
    """One transaction; the reply to the final dot as (code, first line)."""
    with SMTPClient(d.port) as c:
        assert c.cmd("EHLO " + helo).code == 250
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        assert c.cmd("RCPT TO:<alice@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        r = c.reply(timeout=30)
        c.cmd("QUIT")
    return r.code, r.lines


def ar_fields(delivered):
    head = delivered.split(b"\n\n", 1)[0]
    unfolded = re.sub(rb"\n[ \t]+", b" ", head)
    return [ln for ln in unfolded.split(b"\n")
            if ln.lower().startswith(b"authentication-results:")]


def test_all_pass(fulmar_factory, world):
    d = daemon(fulmar_factory, world)
    code, _ = send(d, "someone@good.test", signed(message("good.test"), world[1]))
    assert code == 250
    got = wait_for_one(d.maildir("alice"))
    ar = ar_fields(got)
    assert len(ar) == 1, ar
    a = ar[0].decode()
    assert a.startswith("Authentication-Results: " + AUTHSERV + ";"), a
    assert "spf=pass smtp.mailfrom=someone@good.test" in a
    assert "spf=none smtp.helo=client.test" in a, a   # HELO checked too
    assert "dkim=pass header.d=good.test header.s=sel" in a
    assert re.search(r"dmarc=pass \(p=reject dis=none\) header.from=good.test", a), a
    assert d.log_lines_with("event=authenticated")


def test_dmarc_reject_is_refused(fulmar_factory, world):
    d = daemon(fulmar_factory, world)
    code, lines = send(d, "someone@spoofed.test", message("spoofed.test"))
    assert code == 550, lines
    assert lines[0].startswith("5.7.1"), lines
    assert not os.path.isdir(os.path.join(d.maildir("alice"), "new")) or \
        not os.listdir(os.path.join(d.maildir("alice"), "new"))


def test_dmarc_reject_recorded_only(fulmar_factory, world):
    d = daemon(fulmar_factory, world, dmarc_reject=False)
    code, _ = send(d, "someone@spoofed.test", message("spoofed.test"))
    assert code == 250
    a = ar_fields(wait_for_one(d.maildir("alice")))[0].decode()
    assert "spf=fail" in a and "dkim=none" in a, a
    assert re.search(r"dmarc=fail \(p=reject dis=reject\)", a), a


def test_softfail_and_policy_none(fulmar_factory, world):
    d = daemon(fulmar_factory, world)
    code, _ = send(d, "x@soft.test", message("soft.test"))
    assert code == 250
    a = ar_fields(wait_for_one(d.maildir("alice")))[0].decode()
    assert "spf=softfail" in a and "dmarc=fail (p=none dis=none)" in a, a


def test_tampered_signature_fails_dkim(fulmar_factory, world):
    d = daemon(fulmar_factory, world)
    msg = signed(message("good.test"), world[1]).replace(b"body of", b"body 0f")
    code, _ = send(d, "someone@good.test", msg)
    assert code == 250   # SPF still passes and aligns: DMARC passes
    a = ar_fields(wait_for_one(d.maildir("alice")))[0].decode()
    assert "dkim=fail" in a and "dmarc=pass" in a, a


def test_dns_trouble_is_temperror_not_refusal(fulmar_factory, world):
    d = daemon(fulmar_factory, world)
    code, _ = send(d, "x@broken.test", message("broken.test"))
    assert code == 250
    a = ar_fields(wait_for_one(d.maildir("alice")))[0].decode()
    assert "spf=temperror" in a and "dmarc=temperror" in a, a


def test_forged_results_are_removed(fulmar_factory, world):
    d = daemon(fulmar_factory, world)
    forged = (b"Authentication-Results: " + AUTHSERV.encode() + b";\r\n"
              b"\tspf=pass smtp.mailfrom=ceo@good.test; dmarc=pass\r\n"
              b"Authentication-Results: other.example; spf=pass\r\n")
    code, _ = send(d, "x@soft.test", message("soft.test", extra=forged))
    assert code == 250
    got = wait_for_one(d.maildir("alice"))
    ar = ar_fields(got)
    ours = [x for x in ar if x.split(b":", 1)[1].strip().startswith(AUTHSERV.encode())]
    assert len(ours) == 1 and b"spf=softfail" in ours[0], ar
    assert any(b"other.example" in x for x in ar), "a foreign field stays"
    assert b"ceo@good.test" not in got
    assert d.log_lines_with("event=ar_removed")


@pytest.mark.parametrize("claim", [
    b"Authentication-Results: (a comment (nested)) " + AUTHSERV.encode() + b"; spf=pass",
    b"Authentication-Results : " + AUTHSERV.encode() + b"; spf=pass",  # obsolete form
    b"authentication-results:\r\n\t" + AUTHSERV.upper().encode() + b" 1; spf=pass",
    b"Authentication-Results: \"" + AUTHSERV.encode() + b"\"; spf=pass",
    b"Authentication-Results: " + AUTHSERV.encode() + b"(comment); spf=pass",
], ids=["comment", "obsolete", "folded-upper-version", "quoted", "comment-after"])
def test_forged_results_in_other_forms_are_removed(fulmar_factory, world, claim):
    # RFC 8601 2.2: the authserv-id may follow comments and folding, be a
    # quoted string, and the field name may have white space before its
    # colon: each form claiming our id goes, a near miss stays.
    d = daemon(fulmar_factory, world)
    near = b"Authentication-Results: " + AUTHSERV.encode() + b".evil.example; spf=pass"
    forged = claim + b" smtp.mailfrom=ceo@good.test\r\n" + near + b"\r\n"
    code, _ = send(d, "x@soft.test", message("soft.test", extra=forged))
    assert code == 250
    got = wait_for_one(d.maildir("alice"))
    assert b"ceo@good.test" not in got, got
    assert AUTHSERV.encode() + b".evil.example" in got, "a different id stays"
    assert d.log_lines_with("event=ar_removed")


def test_null_sender_uses_helo(fulmar_factory, world):
    d = daemon(fulmar_factory, world)
    code, _ = send(d, "", message("good.test", subject="bounce"), helo="good.test")
    assert code == 250
    a = ar_fields(wait_for_one(d.maildir("alice")))[0].decode()
    assert "spf=pass smtp.helo=good.test" in a, a


def test_checks_off_by_configuration(fulmar_factory, world):
    d = daemon(fulmar_factory, world, checks=False)
    code, _ = send(d, "someone@spoofed.test", message("spoofed.test"))
    assert code == 250
    assert ar_fields(wait_for_one(d.maildir("alice"))) == []


def test_answers_are_cached(fulmar_factory, world):
    srv, priv = world
    d = daemon(fulmar_factory, world)
    before = srv.queried("_dmarc.good.test", "TXT")
    before_key = srv.queried("sel._domainkey.good.test", "TXT")
    for i in range(3):
        code, _ = send(d, "someone@good.test",
                       signed(message("good.test", subject="c%d" % i), priv))
        assert code == 250
    # One lookup of the policy and of the key for three messages (TTL 60).
    assert srv.queried("_dmarc.good.test", "TXT") - before == 1
    assert srv.queried("sel._domainkey.good.test", "TXT") - before_key == 1


def test_helo_identity_checked_with_mail_from(fulmar_factory, world):
    d = daemon(fulmar_factory, world)
    code, _ = send(d, "x@soft.test", message("soft.test"), helo="helo.good.test")
    assert code == 250
    a = ar_fields(wait_for_one(d.maildir("alice")))[0].decode()
    assert "spf=softfail smtp.mailfrom=x@soft.test" in a, a
    assert "spf=pass smtp.helo=helo.good.test" in a, a


def big_header_message(priv, total, forged=b""):
    """A message of good.test signed by python3-dkim whose header section,
    through its empty line, is exactly total octets: the signed Subject,
    Date and Message-ID come after about total octets of unsigned filler
    fields (added after signing: they are not in h=), so that they lie
    past the session's hold when total is larger than it."""
    top = (b"From: Someone <someone@good.test>\r\n"
           b"To: alice@example.test\r\n")
    bottom = (b"Subject: big header %d\r\n"
              b"Date: Mon, 6 May 2024 10:00:00 +0000\r\n"
              b"Message-ID: <big%d@x>\r\n" % (total, total))
    body = b"body of the message\r\n" * 50
    sig = dkim.sign(top + bottom + b"\r\n" + body, b"sel", b"good.test", priv,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    room = total - len(sig) - len(top) - len(forged) - len(bottom) - 2
    msg = sig + top + forged + header_filler(room) + bottom + b"\r\n" + body
    assert msg.index(b"\r\n\r\n") + 4 == total
    return msg


# The header section ends just before and at the end of the hold, and
# just past it (the empty line cut by it in every place), and far past it.
@pytest.mark.parametrize("total", [HEADER_HOLD + k for k in (-1, 0, 1, 2, 3)] + [100 * 1024])
def test_large_header_verified_from_the_held_copy(fulmar_factory, world, total):
    # The checks read the header section where the session holds it (no
    # copy of their own): From:, the DKIM-Signature and the signed fields
    # are found, and the message is delivered byte for byte as sent, our
    # fields in front and the forged Authentication-Results removed. A
    # header section longer than the hold could hide a forged field past
    # it: such a message is refused, and the server goes on.
    srv, priv = world
    forged = (b"Authentication-Results: " + AUTHSERV.encode() +
              b"; dkim=pass header.d=good.test\r\n")
    msg = big_header_message(priv, total, forged)
    d = daemon(fulmar_factory, world)
    code, lines = send(d, "someone@good.test", msg)
    if total > HEADER_HOLD:
        assert code == 552 and lines[-1].startswith("5.3.4"), (code, lines)
        assert "header section longer than 64 KiB" in lines[-1], lines
        code, lines = send(d, "someone@good.test", big_header_message(priv, 2000))
        assert code == 250, lines
        got = wait_for_one(d.maildir("alice"))
        assert b"Subject: big header 2000" in got  # only the second one
        return
    assert code == 250, lines
    got = wait_for_one(d.maildir("alice"))
    ar = ar_fields(got)
    assert len(ar) == 1, ar
    a = ar[0].decode()
    assert "dkim=pass header.d=good.test header.s=sel" in a, a
    assert re.search(r"dmarc=pass \(p=reject dis=none\) header.from=good.test", a), a
    sent = msg.replace(forged, b"")
    assert got.endswith(sent.replace(b"\r\n", b"\n")), "not delivered as sent"
    # python3-dkim agrees on the delivered copy.
    record = srv.records[("sel._domainkey.good.test", "TXT")][0].encode()
    crlf = got.replace(b"\n", b"\r\n")
    assert dkim.verify(crlf, dnsfunc=lambda name, timeout=5: record)
