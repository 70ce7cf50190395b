"""Fulmar's DKIM verifier on messages signed by an independent signer.

Messages are signed by python3-dkim (dkim.sign) with keys made here by
openssl (RSA 2048 and Ed25519), the key records served by the tests'
loopback DNS server (tests/lib/dns_server.py), and verified by the hidden
debugging command `fulmar dkim verify --dns IP:PORT < message`: the
verifier (src/verify/dkim_verify.c) and its asynchronous key lookups
(dkim_verify_async.c) over lib/dns, as the mx listener will run them.
It prints one line per signature: RESULT d= s= a= b= reason="...".

Cases, for RSA and Ed25519: good; body tampered; header tampered; x=
expired; unknown key (NXDOMAIN); revoked key (empty p=); l= present with
text appended after it (still passes: what l= allows, the reason Fulmar
never signs with it); the key lookup failing (SERVFAIL: temperror); two
signatures on one message.
"""
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))

import fulmar_test  # noqa: E402
from alloc_faults import alloc_fault_env  # noqa: E402
from dns_server import DNSServer  # noqa: E402

dkim = pytest.importorskip("dkim")

DOMAIN = b"example.com"
MSG = (b"From: Alice <alice@example.com>\r\n"
       b"To: Bob <bob@example.net>\r\n"
       b"Subject: verification by fulmar\r\n"
       b"Date: Mon, 6 May 2024 10:00:00 +0000\r\n"
       b"Message-ID: <cli@example.com>\r\n"
       b"\r\n"
       b"Hello Bob,\r\n"
       b"caf\xc3\xa9 au lait, 8-bit.\r\n")
LINE = re.compile(r'^(\w+) d=(\S*) s=(\S*) a=(\S*) b=(\S*) reason="([^"]*)"( l=yes)?$')


class Keys:
    """An RSA and an Ed25519 key (selectors rsa and ed), their records."""

    def __init__(self, directory):
        self.dir = directory
        self.private, self.records = {}, {}
        self.private["rsa"], self.records["rsa"] = fulmar_test.dkim_rsa_key(self.dir)
        self.private["ed"], self.records["ed"] = fulmar_test.dkim_ed25519_key(self.dir)


@pytest.fixture(scope="module")
def keys():
    root = fulmar_test.make_test_root("fulmar-dkimv-")
    yield Keys(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def dns(keys):
    records = {("%s._domainkey.example.com" % sel, "TXT"): [rec]
               for sel, rec in keys.records.items()}
    records[("revoked._domainkey.example.com", "TXT")] = ["v=DKIM1; k=rsa; p="]
    server = DNSServer(records, servfail=["broken._domainkey.example.com"])
    yield server
    server.close()


ALGS = {"rsa": b"rsa-sha256", "ed": b"ed25519-sha256"}


class Expiring(dkim.DKIM):
    """python3-dkim's signer with an x= tag (dkim.sign has no option for
    it): x= goes in just before b=."""

    def __init__(self, msg, x, **kw):
        super().__init__(msg, **kw)
        self.x = x

    def gen_header(self, fields, *args, **kw):
        fields.insert(len(fields) - 1, (b"x", str(self.x).encode()))
        return super().gen_header(fields, *args, **kw)


def sign(keys, key, msg=MSG, selector=None, expire=None, **kw):
    """msg signed by python3-dkim with key ("rsa" or "ed") under selector
    (default: the key's name), the field in front."""
    sel = (selector or key).encode()
    if expire is not None:
        signer = Expiring(msg, int(time.time()) + expire, signature_algorithm=ALGS[key])
        return signer.sign(sel, DOMAIN, keys.private[key], **kw) + msg
    return dkim.sign(msg, sel, DOMAIN, keys.private[key], signature_algorithm=ALGS[key],
                     **kw) + msg


def verify(dns, msg, *extra):
    r = subprocess.run([fulmar_test.fulmar_bin(), "dkim", "verify", "--dns", dns.address]
                       + list(extra), input=msg, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    out = []
    for line in lines:
        m = LINE.match(line)
        assert m, line
        out.append({"result": m.group(1), "d": m.group(2), "s": m.group(3),
                    "a": m.group(4), "b": m.group(5), "reason": m.group(6),
                    "l": bool(m.group(7))})
    return out


def only(results):
    assert len(results) == 1, results
    return results[0]


@pytest.mark.parametrize("key", ["rsa", "ed"])
def test_good(keys, dns, key):
    signed = sign(keys, key)
    r = only(verify(dns, signed))
    assert (r["result"], r["reason"]) == ("pass", "")
    assert (r["d"], r["s"], r["a"]) == ("example.com", key, ALGS[key].decode())
    assert len(r["b"]) == 8 and ("b=" + r["b"]).encode() in signed.replace(b"\r\n ", b"")
    assert not r["l"]


@pytest.mark.parametrize("key", ["rsa", "ed"])
@pytest.mark.parametrize("canon", [(b"simple", b"simple"), (b"relaxed", b"relaxed")])
def test_good_canonicalizations(keys, dns, key, canon):
    r = only(verify(dns, sign(keys, key, canonicalize=canon)))
    assert (r["result"], r["reason"]) == ("pass", "")


@pytest.mark.parametrize("key", ["rsa", "ed"])
def test_body_tampered(keys, dns, key):
    signed = sign(keys, key).replace(b"Hello Bob", b"Hello Rob")
    r = only(verify(dns, signed))
    assert (r["result"], r["reason"]) == ("fail", "body hash did not verify")


@pytest.mark.parametrize("key", ["rsa", "ed"])
def test_header_tampered(keys, dns, key):
    signed = sign(keys, key)
    r = only(verify(dns, signed.replace(b"Subject: verification", b"Subject: Verification")))
    assert (r["result"], r["reason"]) == ("fail", "signature did not verify")
    # python3-dkim oversigns From: a second one breaks the signature
    r = only(verify(dns, signed.replace(b"From: Alice", b"From: Eve <eve@example.org>\r\n"
                                                          b"From: Alice")))
    assert (r["result"], r["reason"]) == ("fail", "signature did not verify")


@pytest.mark.parametrize("key", ["rsa", "ed"])
def test_expired(keys, dns, key):
    signed = sign(keys, key, expire=3600)
    assert re.search(rb"\bx=\d+;", signed)
    r = only(verify(dns, signed))
    assert (r["result"], r["reason"]) == ("pass", "")
    r = only(verify(dns, signed, "--time", str(int(time.time()) + 7200)))
    assert (r["result"], r["reason"]) == ("permerror", "signature expired")


@pytest.mark.parametrize("key", ["rsa", "ed"])
def test_unknown_key(keys, dns, key):
    r = only(verify(dns, sign(keys, key, selector="nosuch")))
    assert (r["result"], r["reason"], r["s"]) == ("permerror", "no key", "nosuch")


@pytest.mark.parametrize("key", ["rsa", "ed"])
def test_revoked_key(keys, dns, key):
    r = only(verify(dns, sign(keys, key, selector="revoked")))
    assert (r["result"], r["reason"]) == ("permerror", "key revoked")


@pytest.mark.parametrize("key", ["rsa", "ed"])
def test_key_lookup_fails(keys, dns, key):
    r = only(verify(dns, sign(keys, key, selector="broken")))
    assert r["result"] == "temperror"
    assert r["reason"].startswith("key lookup failed")


@pytest.mark.parametrize("key", ["rsa", "ed"])
def test_body_length(keys, dns, key):
    """l= present: the signature covers that much of the body. Text
    appended after it still passes (what l= lets anyone do); the line says
    l=yes so a policy can tell."""
    signed = sign(keys, key, length=True)
    assert re.search(rb"\bl=\d+;", signed)
    r = only(verify(dns, signed))
    assert (r["result"], r["l"]) == ("pass", True)
    r = only(verify(dns, signed + b"Appended by someone else.\r\n"))
    assert (r["result"], r["l"]) == ("pass", True)
    r = only(verify(dns, signed.replace(b"Hello Bob", b"Hello Rob")))
    assert (r["result"], r["reason"]) == ("fail", "body hash did not verify")


def test_two_signatures(keys, dns):
    """Ed25519 on top of RSA, then the RSA key record's selector changed to
    one that does not exist: one line each, in the order of the fields."""
    both = sign(keys, "ed", msg=sign(keys, "rsa"))
    rs = verify(dns, both)
    assert [(r["s"], r["result"]) for r in rs] == [("ed", "pass"), ("rsa", "pass")]
    rs = verify(dns, both.replace(b"s=rsa;", b"s=gone;"))
    assert [(r["s"], r["result"], r["reason"]) for r in rs] == [
        ("ed", "pass", ""), ("gone", "permerror", "no key")]


def test_rsa_sha1(keys, dns):
    signed = dkim.sign(MSG, b"rsa", DOMAIN, keys.private["rsa"],
                       signature_algorithm=b"rsa-sha1")
    r = only(verify(dns, signed + MSG))
    assert (r["result"], r["reason"]) == ("permerror", "insecure algorithm rsa-sha1 (RFC 8301)")


def test_unsigned(dns):
    out = subprocess.run([fulmar_test.fulmar_bin(), "dkim", "verify", "--dns", dns.address],
                         input=MSG, capture_output=True, timeout=60)
    assert out.returncode == 0 and out.stdout == b"none\n"


def test_out_of_memory_at_each_allocation(keys, dns):
    """Each allocation of a verification fails in turn (FULMAR_FAULT):
    the command ends cleanly every time — the usual result line (the
    verifier's own lack of memory is a temperror), or exit 1 with a
    message — never a crash or a leak (LeakSanitizer in the test build)."""
    signed = sign(keys, "rsa")
    failed_runs = 0
    messages = set()
    for n in range(1, 400):
        env = alloc_fault_env(os.environ, n)
        r = subprocess.run([fulmar_test.fulmar_bin(), "dkim", "verify", "--dns", dns.address],
                           input=signed, capture_output=True, timeout=60, env=env)
        err = r.stderr.decode()
        assert "Sanitizer" not in err, (n, err)
        if "event=fault_injected" not in err:  # every allocation has failed once
            assert r.returncode == 0, (n, err)
            assert only([LINE.match(x).group(1) for x in r.stdout.decode().splitlines()
                         if LINE.match(x)]) == "pass"
            break
        if r.returncode == 0:
            results = r.stdout.decode().splitlines()
            assert results and all(LINE.match(x) for x in results), (n, results)
            assert all(LINE.match(x).group(1) in ("pass", "temperror") for x in results), \
                (n, results)
        else:
            assert r.returncode == 1 and "fulmar: " in err, (n, r.returncode, err)
            failed_runs += 1
            messages.add(err.strip().splitlines()[-1])
    else:
        pytest.fail("the fault still lands after 400 allocations")
    assert n > 5, "too few allocations to test anything: %d" % n
    # The key lookups that cannot start say so (not "did not finish").
    assert "fulmar: out of memory" in messages, messages
    assert not any("did not finish" in m for m in messages), messages
