"""Fulmar's DKIM signatures checked by independent verifiers.

Messages are signed with `fulmar dkim sign` (the signer exactly as the
server runs it, over standard input) with keys made by `fulmar dkim
keygen`, then verified by:
- python3-dkim (dkim.DKIM.verify), its key lookup answered from the TXT
  record keygen printed;
- opendkim-testmsg (libopendkim), which looks the key up in the DNS: the
  record is served by tests/lib/dns_server.py inside a network namespace
  of its own (see opendkim_netns.py). That needs root and unshare; where
  they are missing those checks are skipped with the reason.
Each signature of a dual-signed message is verified alone (the others
removed), so a verifier cannot pass a message on one good signature.

libopendkim checks RFC 5322's field counts before it verifies (a Date and
a From, at most one To): messages given to it carry Date, and the one
with two To fields goes to python3-dkim only.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))

import fulmar_test  # noqa: E402

dkim = pytest.importorskip("dkim")

HERE = os.path.dirname(os.path.abspath(__file__))
DOMAIN = "example.com"
DATE = "Date: Mon, 6 May 2024 10:00:00 +0000\r\n"


def fulmar(*args, stdin=None, check=True):
    r = subprocess.run([fulmar_test.fulmar_bin()] + list(args), input=stdin,
                       capture_output=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError("fulmar %s: exit %d\n%s" % (" ".join(args), r.returncode,
                                                          r.stderr.decode()))
    return r


zone_record = fulmar_test.dkim_zone_record


class Keys:
    def __init__(self, directory):
        self.dir = directory
        self.records = {}
        self.files = {}
        for sel, extra in (("rsa", []), ("ed", ["--ed25519"])):
            self.files[sel], self.records["%s._domainkey.%s" % (sel, DOMAIN)] = \
                fulmar_test.dkim_keygen(self.dir, DOMAIN, sel, *extra)

    def dnsfunc(self, name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        rec = self.records.get(name.rstrip("."))
        return rec.encode() if rec is not None else None


@pytest.fixture(scope="module")
def keys():
    root = fulmar_test.make_test_root("fulmar-dkim-")
    yield Keys(root)
    shutil.rmtree(root, ignore_errors=True)


def sign(keys, msg, sels=("rsa", "ed"), extra=()):
    args = ["dkim", "sign", "--domain", DOMAIN, "--time", "1715000000"]
    for s in sels:
        args += ["--key", keys.files[s], "--selector", s]
    signed = fulmar(*(args + list(extra)), stdin=msg).stdout
    assert signed.endswith(msg), "the message after the signatures is unchanged"
    return signed


def split_signatures(signed):
    """([each DKIM-Signature field], the rest of the message)."""
    sigs, rest = [], signed
    while rest.startswith(b"DKIM-Signature:"):
        end = re.search(rb"\r\n(?![ \t])", rest).end()
        sigs.append(rest[:end])
        rest = rest[end:]
    return sigs, rest


def alone(signed):
    """The message once per signature, with that signature only."""
    sigs, rest = split_signatures(signed)
    return [s + rest for s in sigs]


def py_verify(keys, msg):
    try:
        return dkim.DKIM(msg).verify(dnsfunc=keys.dnsfunc)
    except dkim.DKIMException:  # a body hash mismatch is raised, not returned
        return False


def py_verify_each(keys, signed, expect=True):
    singles = alone(signed)
    assert singles
    for m in singles:
        assert py_verify(keys, m) is expect, m[:200]


_netns = None


def netns_unavailable():
    """Why opendkim-testmsg cannot be run here, or None."""
    global _netns
    if _netns is None:
        if shutil.which("opendkim-testmsg") is None:
            _netns = "opendkim-testmsg is not installed (Debian opendkim-tools)"
        elif not fulmar_test.is_root():
            _netns = "opendkim-testmsg needs root for its DNS namespace"
        elif subprocess.run(["unshare", "-mn", "true"], capture_output=True).returncode:
            _netns = "unshare -mn is not permitted here"
        else:
            _netns = ""
    return _netns or None


def odk_verify(keys, messages):
    """opendkim-testmsg's [exit status, stderr] for each message."""
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    tmp = tempfile.mkdtemp(prefix="fulmar-odk-")
    try:
        rec = os.path.join(tmp, "records.json")
        with open(rec, "w") as f:
            json.dump(keys.records, f)
        paths = []
        for i, m in enumerate(messages):
            paths.append(os.path.join(tmp, "m%d" % i))
            with open(paths[-1], "wb") as f:
                f.write(m)
        r = subprocess.run(["unshare", "-mn", sys.executable,
                            os.path.join(HERE, "opendkim_netns.py"), rec] + paths,
                           capture_output=True, timeout=600)
        assert r.returncode == 0, r.stderr.decode()
        return json.loads(r.stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def odk_verify_each(keys, signed, expect=True):
    singles = alone(signed)
    for (rc, err), m in zip(odk_verify(keys, singles), singles):
        if expect:
            assert rc == 0, "opendkim-testmsg: %s\n%r" % (err, m[:300])
        else:
            assert rc != 0 and "Bad signature" in err, err


def both_verify(keys, msg, **kw):
    signed = sign(keys, msg, **kw)
    py_verify_each(keys, signed)
    odk_verify_each(keys, signed)
    return signed


def message(headers, body):
    return (headers + "\r\n").encode() + body


BASIC = message("From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"
                "Subject: hello\r\n" + DATE + "Message-ID: <1@example.com>\r\n",
                b"Hello Bob.\r\n")


def test_basic_rsa_and_ed25519(keys):
    signed = both_verify(keys, BASIC)
    sigs, _ = split_signatures(signed)
    assert len(sigs) == 2
    assert b"a=rsa-sha256" in sigs[0] and b"a=ed25519-sha256" in sigs[1]
    assert b"c=relaxed/relaxed" in sigs[0] and b"t=1715000000;" in sigs[0]
    assert b" l=" not in sigs[0] and b" x=" not in sigs[0]


def test_long_folded_headers(keys):
    subject = "Subject:" + "".join(" w%03d%s" % (i, "\r\n" if i % 9 == 8 else "")
                                   for i in range(300))
    to = "To: " + ",\r\n\t".join("user%d@example.org" % i for i in range(60))
    refs = "References: " + "\r\n ".join("<%d.x@example.com>" % i for i in range(80))
    msg = message("From: alice@example.com\r\n" + to + "\r\n" + subject + "\r\n" + refs
                  + "\r\n" + DATE + "X-Long: " + "v" * 900 + "\r\n",
                  b"body\r\n")
    both_verify(keys, msg)


def test_8bit_body(keys):
    body = ("Caf\u00e9 cr\u00e8me \u2014 \u65e5\u672c\u8a9e\r\n".encode("utf-8")
            + b"latin-1 \xe9\xe8 and \xff\xfe raw\t\t  octets  \r\n"
            + bytes(range(0x80, 0x100)) + b"\r\n")
    msg = message("From: alice@example.com\r\nTo: bob@example.org\r\n"
                  "Subject: =?utf-8?q?caf=C3=A9?=\r\n" + DATE
                  + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  "Content-Transfer-Encoding: 8bit\r\n", body)
    both_verify(keys, msg)


def test_trailing_blank_lines_and_whitespace(keys):
    msg = message("From: alice@example.com\r\nSubject:   spaced   out   \r\n" + DATE,
                  b"text  with   runs \t \r\n\r\n  \r\n\t\r\n\r\n\r\n")
    both_verify(keys, msg)
    # simple/simple too: the trailing empty lines are still ignored.
    both_verify(keys, msg, extra=("--canon", "simple/simple"))


def test_missing_final_crlf(keys):
    msg = message("From: alice@example.com\r\nSubject: no final CRLF\r\n" + DATE,
                  b"first line\r\nlast line without CRLF")
    signed = both_verify(keys, msg)
    # The transport adds the CRLF: the signature still holds.
    py_verify_each(keys, signed + b"\r\n")
    odk_verify_each(keys, signed + b"\r\n")


def test_repeated_fields(keys):
    received = "".join("Received: from hop%d by mx; Mon, 6 May 2024 10:00:0%d +0000\r\n"
                       % (i, i) for i in range(3))
    msg = message(received + "From: alice@example.com\r\nTo: bob@example.org\r\n"
                  + DATE + "Subject: s\r\n", b"body\r\n")
    both_verify(keys, msg)
    # Two To fields: both signed (h= lists to twice); libopendkim refuses
    # such a message (RFC 5322 allows one To), so python3-dkim only.
    msg2 = message("From: alice@example.com\r\nTo: bob@example.org\r\n" + received
                   + "To: carol@example.org\r\n" + DATE, b"body\r\n")
    signed = sign(keys, msg2)
    assert re.search(rb"h=from:from:to:\s*to:", signed)
    py_verify_each(keys, signed)


def test_no_body(keys):
    headers_only = ("From: alice@example.com\r\nSubject: headers only\r\n" + DATE).encode()
    both_verify(keys, headers_only)
    empty_body = headers_only + b"\r\n"
    both_verify(keys, empty_body)
    both_verify(keys, empty_body, extra=("--canon", "simple/simple"))


@pytest.mark.timeout(300)
def test_5mb_body(keys):
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ \xc3\xa9\r\n"
    body = line * (5 * 1024 * 1024 // len(line) + 1)
    msg = message("From: alice@example.com\r\nSubject: big\r\n" + DATE, body)
    assert len(msg) > 5 * 1024 * 1024
    both_verify(keys, msg)


def test_tampering_detected(keys):
    signed = sign(keys, BASIC)
    # The body changed.
    bad_body = signed.replace(b"Hello Bob.", b"Hello Bob!")
    py_verify_each(keys, bad_body, expect=False)
    odk_verify_each(keys, bad_body, expect=False)
    # A signed field changed.
    bad_subject = signed.replace(b"Subject: hello", b"Subject: HELLO there")
    py_verify_each(keys, bad_subject, expect=False)
    odk_verify_each(keys, bad_subject, expect=False)
    # A second From added below (From is oversigned).
    sigs, rest = split_signatures(signed)
    head, body = rest.split(b"\r\n\r\n", 1)
    extra_from = b"".join(sigs) + head + b"\r\nFrom: mallory@evil.test\r\n\r\n" + body
    py_verify_each(keys, extra_from, expect=False)
    # A Cc or Reply-To added: absent at signing, so listed once (oversigned).
    for added in (b"Cc: mallory@evil.test", b"Reply-To: mallory@evil.test"):
        m = b"".join(sigs) + head + b"\r\n" + added + b"\r\n\r\n" + body
        py_verify_each(keys, m, expect=False)
        odk_verify_each(keys, m, expect=False)
    # A Received added on the way is not signed: still good.
    hop = b"Received: from relay.example.net; Mon, 6 May 2024 10:00:09 +0000\r\n"
    m = b"".join(hop + s for s in sigs[:1]) + rest
    assert py_verify(keys, m)


def test_keygen_files_and_refusals(keys):
    d = tempfile.mkdtemp(prefix="fulmar-dkim-keygen-")
    try:
        kdir = os.path.join(d, "keys")
        r = fulmar("dkim", "keygen", "Example.ORG", "s2024", "--dir", kdir, "--bits", "1024")
        out = r.stdout.decode()
        path = os.path.join(kdir, "example.org.s2024.key")
        assert os.stat(kdir).st_mode & 0o777 == 0o700
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert "s2024._domainkey.example.org. IN TXT (" in out
        assert zone_record(out).startswith("v=DKIM1; k=rsa; p=MIGfMA0G")
        # The record of an existing key, again.
        again = fulmar("dkim", "record", "example.org", "s2024", "--key", path).stdout
        assert zone_record(again.decode()) == zone_record(out)
        # Never replaced without --force.
        before = open(path, "rb").read()
        r = fulmar("dkim", "keygen", "example.org", "s2024", "--dir", kdir, check=False)
        assert r.returncode == 1 and b"--force" in r.stderr
        assert open(path, "rb").read() == before
        fulmar("dkim", "keygen", "example.org", "s2024", "--dir", kdir, "--force",
               "--ed25519")
        assert open(path, "rb").read() != before
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert [f for f in os.listdir(kdir) if f.startswith(".")] == []
        # Names that could not be a domain or a selector (or a file name).
        for dom, sel in (("../etc", "s"), ("example.org", "a/b"), ("exa mple.org", "s")):
            r = fulmar("dkim", "keygen", dom, sel, "--dir", kdir, check=False)
            assert r.returncode == 2, r.stderr
        r = fulmar("dkim", "keygen", "example.org", "x", "--bits", "512", "--dir", kdir,
                   check=False)
        assert r.returncode == 2
        # A key file that is not a key: the error names it.
        junk = os.path.join(d, "junk.key")
        open(junk, "w").write("not a key\n")
        r = fulmar("dkim", "sign", "--key", junk, "--selector", "s", "--domain",
                   "example.org", stdin=BASIC, check=False)
        assert r.returncode == 1 and junk.encode() + b": not an unencrypted PEM" in r.stderr
        r = fulmar("dkim", "sign", "--key", path, "--selector", "s", "--domain",
                   "example.org", stdin=b"Subject: no from\r\n\r\nx\r\n", check=False)
        assert r.returncode == 1 and b"no From" in r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not fulmar_test.is_root(), reason="ownership needs root")
def test_keygen_default_dir_owned_by_server_user():
    """As root, the key and STATE_DIR/dkim belong to server.user."""
    import pwd
    daemon = fulmar_test.Daemon()  # its configuration only: never started
    try:
        r = fulmar("dkim", "keygen", "example.com", "sel", "--ed25519", "--config",
                   daemon.config_path)
        kdir = os.path.join(daemon.state_dir, "dkim")
        path = os.path.join(kdir, "example.com.sel.key")
        uid = pwd.getpwnam(fulmar_test.RUN_USER).pw_uid
        for p, mode in ((kdir, 0o700), (path, 0o600)):
            st = os.stat(p)
            assert st.st_uid == uid and st.st_mode & 0o777 == mode, p
        assert ("owner %s" % fulmar_test.RUN_USER).encode() in r.stdout
        assert b'key "%s"' % path.encode() in r.stdout
        assert zone_record(r.stdout.decode()).startswith("v=DKIM1; k=ed25519; p=")
    finally:
        daemon.cleanup()
