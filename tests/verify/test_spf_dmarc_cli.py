"""SPF and DMARC end to end: `fulmar spf check` and `fulmar dmarc check`
(hidden debugging commands that run src/verify through lib/dns and c-ares
on an event loop, as the server does) against the loopback DNS server of
tests/lib/dns_server.py.

SPF: pass, fail, softfail, neutral, none, temperror (SERVFAIL and a
server that never answers), permerror (two records, syntax, the 10-lookup
limit, void lookups, an include without a record); the mechanisms
include, a (CNAME followed, dual CIDR), mx, ip4, ip6, ptr, exists with
macros, redirect=, exp=; a record in several strings; the HELO identity
and the null MAIL FROM.
DMARC: pass and fail with relaxed and strict alignment of SPF and DKIM,
p=none/quarantine/reject, sp= for subdomains through the organization's
record (the Public Suffix List of the publicsuffix package), pct=, no
record, an invalid record, temperror, the From field of a message.
"""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))

import fulmar_test  # noqa: E402
from dns_server import DNSServer  # noqa: E402

PSL = "/usr/share/publicsuffix/public_suffix_list.dat"

# over 255 octets (several character-strings), under 512 (one UDP answer:
# the test server has no TCP)
LONG = "v=spf1 " + " ".join("ip4:10.%d.0.0/16" % i for i in range(16)) + " ip4:192.0.2.44 -all"

ZONE = {
    # results
    ("pass.spf.test", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all", "unrelated=1"],
    ("soft.spf.test", "TXT"): ["v=spf1 ip4:192.0.2.0/24 ~all"],
    ("neutral.spf.test", "TXT"): ["v=spf1 ip4:192.0.2.0/24 ?all"],
    ("norecord.spf.test", "TXT"): ["just text"],
    ("two.spf.test", "TXT"): ["v=spf1 -all", "v=spf1 +all"],
    ("syntax.spf.test", "TXT"): ["v=spf1 ip4:192.0.2.1/40 -all"],
    ("temp.spf.test", "TXT"): ["v=spf1 a:servfail.spf.test -all"],
    ("slow.spf.test", "TXT"): ["v=spf1 a:silent.spf.test -all"],
    ("long.spf.test", "TXT"): [LONG],
    # mechanisms
    ("include.spf.test", "TXT"): ["v=spf1 include:_spf.provider.test -all"],
    ("_spf.provider.test", "TXT"): ["v=spf1 ip4:203.0.113.0/24 ip6:2001:db8:5::/48 ~all"],
    ("incnone.spf.test", "TXT"): ["v=spf1 include:nothing.provider.test -all"],
    ("a.spf.test", "TXT"): ["v=spf1 a a:alias.spf.test/24 -all"],
    ("a.spf.test", "A"): ["192.0.2.10"],
    ("a.spf.test", "AAAA"): ["2001:db8::10"],
    ("alias.spf.test", "CNAME"): ["target.spf.test"],
    ("target.spf.test", "A"): ["198.51.100.1"],
    ("dual.spf.test", "TXT"): ["v=spf1 a:a.spf.test/24//64 -all"],
    ("mx.spf.test", "TXT"): ["v=spf1 mx -all"],
    ("mx.spf.test", "MX"): [(10, "mx1.spf.test"), (20, "mx2.spf.test")],
    ("mx1.spf.test", "A"): ["192.0.2.21"],
    ("mx2.spf.test", "AAAA"): ["2001:db8::22"],
    ("ip6.spf.test", "TXT"): ["v=spf1 ip6:2001:db8:1::/48 -all"],
    ("redirect.spf.test", "TXT"): ["v=spf1 ip4:192.0.2.200 redirect=_spf.provider.test"],
    ("exists.spf.test", "TXT"): ["v=spf1 exists:%{l}.%{ir}._allow.%{d} -all"],
    ("alice.5.2.0.192._allow.exists.spf.test", "A"): ["127.0.0.2"],
    ("ptr.spf.test", "TXT"): ["v=spf1 ptr -all"],
    ("7.2.0.192.in-addr.arpa", "PTR"): ["host.ptr.spf.test"],
    ("host.ptr.spf.test", "A"): ["192.0.2.7"],
    ("exp.spf.test", "TXT"): ["v=spf1 -all exp=why.exp.spf.test"],
    ("why.exp.spf.test", "TXT"): ["%{i} may not send mail for %{d}"],
    # limits
    ("limit10.spf.test", "TXT"): ["v=spf1 " + " ".join("a:h%d.spf.test" % i for i in range(1, 11))
                                  + " ip4:192.0.2.1 -all"],
    ("limit11.spf.test", "TXT"): ["v=spf1 " + " ".join("a:h%d.spf.test" % i for i in range(1, 12))
                                  + " ip4:192.0.2.1 -all"],
    ("void2.spf.test", "TXT"): ["v=spf1 a:nx1.spf.test a:nx2.spf.test -all"],
    ("void3.spf.test", "TXT"): ["v=spf1 a:nx1.spf.test a:nx2.spf.test a:nx3.spf.test -all"],
    # HELO
    ("helo.spf.test", "TXT"): ["v=spf1 a -all"],
    ("helo.spf.test", "A"): ["192.0.2.30"],

    # DMARC
    ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com"],
    ("_dmarc.relaxed.example.net", "TXT"): ["v=DMARC1; p=quarantine"],
    ("_dmarc.strict.example.net", "TXT"): ["v=DMARC1; p=reject; adkim=s; aspf=s"],
    ("_dmarc.monitor.example.net", "TXT"): ["v=DMARC1; p=none"],
    ("_dmarc.pct.example.net", "TXT"): ["v=DMARC1; p=reject; pct=20"],
    ("_dmarc.invalid.example.net", "TXT"): ["v=DMARC1; p=bogus"],
    ("_dmarc.invalidrua.example.net", "TXT"): ["v=DMARC1; p=bogus; rua=mailto:r@example.net"],
    ("_dmarc.twice.example.net", "TXT"): ["v=DMARC1; p=reject", "v=DMARC1; p=none"],
    ("_dmarc.example.co.uk", "TXT"): ["v=DMARC1; p=reject"],
}
for i in range(1, 12):
    ZONE[("h%d.spf.test" % i, "A")] = ["10.9.9.%d" % i]


@pytest.fixture(scope="module")
def dns():
    with DNSServer(ZONE, servfail=["servfail.spf.test", "_dmarc.broken.example.org"],
                   drop=["silent.spf.test"]) as server:
        yield server


def run(*args):
    r = subprocess.run([fulmar_test.fulmar_bin()] + list(args), capture_output=True, text=True,
                       timeout=60)
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    assert r.returncode == 0, "fulmar %s: exit %d\n%s" % (" ".join(args), r.returncode, r.stderr)
    out = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition("=")
        out[k] = v
    return out


def spf(dns, ip, mailfrom, helo="mail.client.test", *extra):
    return run("spf", "check", "--dns", dns.address, "--ip", ip, "--mailfrom", mailfrom,
               "--helo", helo, *extra)


# ---- SPF results ----

@pytest.mark.parametrize("ip,sender,result,mechanism", [
    ("192.0.2.9", "a@pass.spf.test", "pass", "ip4:192.0.2.0/24"),
    ("198.51.100.9", "a@pass.spf.test", "fail", "-all"),
    ("198.51.100.9", "a@soft.spf.test", "softfail", "~all"),
    ("198.51.100.9", "a@neutral.spf.test", "neutral", "?all"),
    ("192.0.2.9", "a@norecord.spf.test", "none", ""),
    ("192.0.2.9", "a@nxdomain.spf.test", "none", ""),
    ("192.0.2.9", "a@two.spf.test", "permerror", ""),
    ("192.0.2.9", "a@syntax.spf.test", "permerror", ""),
    ("192.0.2.9", "a@temp.spf.test", "temperror", ""),
    ("192.0.2.44", "a@long.spf.test", "pass", "ip4:192.0.2.44"),
])
def test_spf_results(dns, ip, sender, result, mechanism):
    out = spf(dns, ip, sender)
    assert out["spf"] == result, out
    assert out["mechanism"] == mechanism, out


def test_spf_record_strings_joined(dns):
    assert 255 < len(LONG) < 400  # served as several character-strings
    assert spf(dns, "198.51.100.1", "a@long.spf.test")["spf"] == "fail"


def test_spf_timeout_is_temperror(dns):
    out = spf(dns, "192.0.2.9", "a@slow.spf.test", "mail.client.test", "--timeout", "2")
    assert out["spf"] == "temperror"
    assert "timed out" in out["reason"]


@pytest.mark.parametrize("ip,sender,result,mechanism", [
    ("203.0.113.5", "a@include.spf.test", "pass", "include:_spf.provider.test"),
    ("2001:db8:5::1", "a@include.spf.test", "pass", "include:_spf.provider.test"),
    ("198.51.100.1", "a@include.spf.test", "fail", "-all"),
    ("198.51.100.1", "a@incnone.spf.test", "permerror", ""),
    ("192.0.2.10", "a@a.spf.test", "pass", "a"),
    ("2001:db8::10", "a@a.spf.test", "pass", "a"),
    ("198.51.100.200", "a@a.spf.test", "pass", "a:alias.spf.test/24"),
    ("198.51.101.1", "a@a.spf.test", "fail", "-all"),
    ("192.0.2.99", "a@dual.spf.test", "pass", "a:a.spf.test/24//64"),
    ("2001:db8::ffff", "a@dual.spf.test", "pass", "a:a.spf.test/24//64"),
    ("192.0.2.21", "a@mx.spf.test", "pass", "mx"),
    ("2001:db8::22", "a@mx.spf.test", "pass", "mx"),
    ("192.0.2.22", "a@mx.spf.test", "fail", "-all"),
    ("2001:db8:1::99", "a@ip6.spf.test", "pass", "ip6:2001:db8:1::/48"),
    ("2001:db8:2::99", "a@ip6.spf.test", "fail", "-all"),
    ("192.0.2.200", "a@redirect.spf.test", "pass", "ip4:192.0.2.200"),
    ("203.0.113.9", "a@redirect.spf.test", "pass", "ip4:203.0.113.0/24"),
    ("198.51.100.1", "a@redirect.spf.test", "softfail", "~all"),
    ("192.0.2.5", "alice@exists.spf.test", "pass", "exists:%{l}.%{ir}._allow.%{d}"),
    ("192.0.2.5", "bob@exists.spf.test", "fail", "-all"),
    ("192.0.2.7", "a@ptr.spf.test", "pass", "ptr"),
    ("192.0.2.8", "a@ptr.spf.test", "fail", "-all"),
])
def test_spf_mechanisms(dns, ip, sender, result, mechanism):
    out = spf(dns, ip, sender)
    assert (out["spf"], out["mechanism"]) == (result, mechanism), out


def test_spf_macro_query_names(dns):
    spf(dns, "192.0.2.5", "alice@exists.spf.test")
    assert dns.queried("alice.5.2.0.192._allow.exists.spf.test", "A") >= 1


def test_spf_explanation(dns):
    out = spf(dns, "192.0.2.9", "a@exp.spf.test")
    assert out["spf"] == "fail"
    assert out["explanation"] == "192.0.2.9 may not send mail for exp.spf.test"


def test_spf_lookup_limit(dns):
    out = spf(dns, "192.0.2.1", "a@limit10.spf.test")
    assert (out["spf"], out["lookups"]) == ("pass", "10"), out
    before = dns.queried("h11.spf.test", "A")
    out = spf(dns, "192.0.2.1", "a@limit11.spf.test")
    assert out["spf"] == "permerror" and "more than 10" in out["reason"], out
    assert dns.queried("h11.spf.test", "A") == before  # the 11th is never asked


def test_spf_void_lookups(dns):
    out = spf(dns, "192.0.2.1", "a@void2.spf.test")
    assert (out["spf"], out["void_lookups"]) == ("fail", "2"), out
    out = spf(dns, "192.0.2.1", "a@void3.spf.test")
    assert out["spf"] == "permerror" and "void" in out["reason"], out


def test_spf_helo(dns):
    out = run("spf", "check", "--dns", dns.address, "--ip", "192.0.2.30", "--helo",
              "helo.spf.test", "--identity", "helo")
    assert (out["spf"], out["domain"]) == ("pass", "helo.spf.test"), out
    out = run("spf", "check", "--dns", dns.address, "--ip", "192.0.2.31", "--helo",
              "helo.spf.test", "--identity", "helo")
    assert out["spf"] == "fail"
    # the null reverse-path is checked as postmaster@helo
    out = spf(dns, "192.0.2.30", "<>", "helo.spf.test")
    assert (out["spf"], out["domain"]) == ("pass", "helo.spf.test"), out


def test_spf_usage():
    r = subprocess.run([fulmar_test.fulmar_bin(), "spf", "check", "--ip", "nonsense"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2


# ---- DMARC ----

def dmarc(dns, *args):
    return run("dmarc", "check", "--dns", dns.address, *args)


def test_dmarc_relaxed(dns):
    out = dmarc(dns, "--from-domain", "relaxed.example.net", "--spf",
                "pass:bounces.relaxed.example.net")
    assert (out["dmarc"], out["spf_aligned"], out["apply"]) == ("pass", "yes", "none"), out
    out = dmarc(dns, "--from-domain", "relaxed.example.net", "--spf", "fail:relaxed.example.net",
                "--dkim", "pass:mail.relaxed.example.net")
    assert (out["dmarc"], out["dkim_aligned"]) == ("pass", "yes"), out
    out = dmarc(dns, "--from-domain", "relaxed.example.net", "--spf", "pass:esp.example.org",
                "--dkim", "pass:esp.example.org", "--dkim", "fail:relaxed.example.net")
    assert (out["dmarc"], out["policy"], out["apply"]) == ("fail", "quarantine", "quarantine"), out


def test_dmarc_strict(dns):
    out = dmarc(dns, "--from-domain", "strict.example.net", "--spf",
                "pass:bounces.strict.example.net", "--dkim", "pass:mail.strict.example.net")
    assert (out["dmarc"], out["apply"]) == ("fail", "reject"), out
    out = dmarc(dns, "--from-domain", "strict.example.net", "--dkim", "pass:strict.example.net")
    assert out["dmarc"] == "pass", out
    out = dmarc(dns, "--from-domain", "strict.example.net", "--spf", "pass:strict.example.net")
    assert out["dmarc"] == "pass", out


def test_dmarc_policies(dns):
    out = dmarc(dns, "--from-domain", "monitor.example.net", "--spf", "fail:x.test")
    assert (out["dmarc"], out["policy"], out["apply"]) == ("fail", "none", "none"), out
    out = dmarc(dns, "--from-domain", "example.com", "--spf", "softfail:example.com")
    assert (out["dmarc"], out["policy"], out["subdomain_policy"]) == ("fail", "reject", "no"), out
    out = dmarc(dns, "--from-domain", "pct.example.net", "--roll", "19")
    assert (out["apply"], out["sampled_out"]) == ("reject", "no"), out
    out = dmarc(dns, "--from-domain", "pct.example.net", "--roll", "20")
    assert (out["apply"], out["sampled_out"]) == ("quarantine", "yes"), out


def test_dmarc_subdomain_policy(dns):
    before = dns.queried("_dmarc.example.com", "TXT")
    out = dmarc(dns, "--from-domain", "news.shop.example.com", "--spf", "pass:other.test")
    assert dns.queried("_dmarc.news.shop.example.com", "TXT") >= 1
    assert dns.queried("_dmarc.example.com", "TXT") > before
    assert dns.queried("_dmarc.shop.example.com", "TXT") == 0  # straight to the organization
    assert (out["dmarc"], out["record_domain"], out["subdomain_policy"], out["policy"],
            out["apply"]) == ("fail", "example.com", "yes", "quarantine", "quarantine"), out
    out = dmarc(dns, "--from-domain", "news.shop.example.com", "--dkim", "pass:example.com")
    assert out["dmarc"] == "pass"


@pytest.mark.skipif(not os.path.exists(PSL), reason="publicsuffix is not installed")
def test_dmarc_public_suffix_list(dns):
    out = dmarc(dns, "--from-domain", "mail.example.co.uk", "--spf", "pass:other.co.uk")
    assert (out["org_domain"], out["record_domain"], out["dmarc"]) == \
        ("example.co.uk", "example.co.uk", "fail"), out
    out = dmarc(dns, "--from-domain", "mail.example.co.uk", "--spf", "pass:bounce.example.co.uk")
    assert out["dmarc"] == "pass", out


def test_dmarc_no_policy(dns):
    out = dmarc(dns, "--from-domain", "nothing.example.net", "--spf", "fail:x.test")
    assert (out["dmarc"], out["apply"]) == ("none", "none"), out
    out = dmarc(dns, "--from-domain", "twice.example.net", "--spf", "fail:x.test")
    assert out["dmarc"] == "none" and "more than one" in out["reason"], out
    out = dmarc(dns, "--from-domain", "invalid.example.net", "--spf", "fail:x.test")
    assert out["dmarc"] == "none", out
    out = dmarc(dns, "--from-domain", "invalidrua.example.net", "--spf", "fail:x.test")
    assert (out["dmarc"], out["policy"]) == ("fail", "none"), out


def test_dmarc_temperror(dns):
    out = dmarc(dns, "--from-domain", "broken.example.org", "--spf", "pass:broken.example.org")
    assert (out["dmarc"], out["apply"]) == ("temperror", "none"), out


def test_dmarc_from_field(dns, tmp_path):
    msg = tmp_path / "one.eml"
    msg.write_bytes(b"From: \"Shop\" <orders@News.Example.COM>\r\nTo: x@y.test\r\n\r\nbody\r\n")
    out = dmarc(dns, "--message", str(msg), "--spf", "pass:news.example.com")
    assert (out["dmarc"], out["from_domain"]) == ("pass", "news.example.com"), out
    for name, header in [("two.eml", b"From: a@example.com\r\nFrom: b@example.com\r\n"),
                         ("list.eml", b"From: a@example.com, b@example.net\r\n"),
                         ("none.eml", b"To: a@example.com\r\n")]:
        msg = tmp_path / name
        msg.write_bytes(header + b"\r\nbody\r\n")
        out = dmarc(dns, "--message", str(msg), "--spf", "pass:example.com")
        assert out["dmarc"] == "permerror", (name, out)
