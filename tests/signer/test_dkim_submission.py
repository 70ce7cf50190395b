"""DKIM on submitted mail, end to end: a user submits with AUTH, Fulmar
signs (keys made by `fulmar dkim keygen`, listed in the configuration's
dkim list), relays through a static route to a real SMTP sink on
loopback, and python3-dkim verifies what the sink received. Also: dual
signing (RSA + Ed25519), retries send the very same signed bytes, mail
of a domain without a key and mail arriving on the mx listener are not
signed, and a bad key is a configuration error with file:line.
"""
import os
import re
import smtplib
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))

import fulmar_test  # noqa: E402
from smtp_peers import SMTPSink  # noqa: E402

dkim = pytest.importorskip("dkim")

USER = "alice@example.test"
PASSWORD = "secret pass"
REMOTE = "remote.test"


@pytest.fixture
def setup(fulmar_factory):
    sink = SMTPSink(data_reply=["451 4.3.0 try again later", "250 2.0.0 ok"])
    sink.start()
    d = fulmar_factory(start=False)
    users = os.path.join(d.root, "users")
    r = subprocess.run([d.bin, "user", "add", "--users-file", users, USER],
                       input=(PASSWORD + "\n" + PASSWORD + "\n").encode(),
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    fulmar_test._chown_run_user(users)
    sub_port = fulmar_test.free_port()
    d.config["listeners"].append({"address": "127.0.0.1", "port": sub_port,
                                  "role": "submission", "auth_plaintext": True})
    d.config["auth"] = {"users_file": users}
    d.config["routes"] = [{"domain": REMOTE, "host": "127.0.0.1", "port": sink.port}]
    d.config["queue"] = {"retry_first": 1.0, "retry_max": 1.0}
    keydir = os.path.join(d.root, "dkim")
    rsa, rsa_rec = fulmar_test.dkim_keygen(keydir, "example.test", "rsa2026")
    ed, ed_rec = fulmar_test.dkim_keygen(keydir, "example.test", "ed2026", "--ed25519")
    d.config["dkim"] = [
        {"domain": "example.test", "selector": "rsa2026", "key": rsa},
        {"domain": "example.test", "selector": "ed2026", "key": ed},
    ]
    d.write_config()
    d.start()
    records = {b"rsa2026._domainkey.example.test.": rsa_rec.encode(),
               b"ed2026._domainkey.example.test.": ed_rec.encode()}
    yield d, sink, sub_port, records
    sink.stop()


def submit(port, sender, rcpts, body):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.login(USER, PASSWORD)
        s.sendmail(sender, rcpts, body)


def only_signature(data, selector):
    """The message with every DKIM-Signature but selector's removed."""
    head, _, body = data.partition(b"\r\n\r\n")
    fields = re.split(rb"\r\n(?![ \t])", head)
    keep = [f for f in fields if not f.lower().startswith(b"dkim-signature:") or
            (b"s=" + selector.encode()) in re.sub(rb"\s+", b"", f)]
    return b"\r\n".join(keep) + b"\r\n\r\n" + body


MESSAGE = (b"From: Alice <alice@example.test>\r\n"
           b"To: bob@remote.test\r\n"
           b"Subject: signed on submission, with a long subject line that goes on\r\n"
           b" and is folded\r\n"
           b"\r\n"
           b"caf\xc3\xa9 body line\r\n.leading dot\r\n\r\n\r\n")


@pytest.mark.timeout(60)
def test_submitted_mail_is_dual_signed_and_retries_send_the_same_bytes(setup):
    d, sink, port, records = setup
    submit(port, USER, ["bob@" + REMOTE], MESSAGE)
    deadline = time.time() + 20

    def complete():
        return [t for t in sink.transactions(accepted_only=False) if t.data is not None]
    while time.time() < deadline and len(complete()) < 2:
        time.sleep(0.1)
    txns = complete()
    assert len(txns) >= 2, txns   # the first was refused (451), the retry taken
    first, second = txns[0].data, txns[1].data
    assert first is not None and first == second, "a retry must send the same bytes"
    assert first.count(b"DKIM-Signature:") == 2
    for sel in ("rsa2026", "ed2026"):
        one = only_signature(second, sel)
        assert one.count(b"DKIM-Signature:") == 1
        assert dkim.verify(one, dnsfunc=lambda name, timeout=5: records.get(name)), sel
    # The signed fields include From, oversigned.
    sig = re.sub(rb"\s+", b"", second.split(b"DKIM-Signature:")[1].split(b"\r\n\r\n")[0])
    assert re.search(rb"h=from:.*from", sig, re.I), sig
    assert d.log_lines_with("event=signed")


@pytest.mark.timeout(60)
def test_tampering_breaks_the_signature(setup):
    d, sink, port, records = setup
    submit(port, USER, ["carl@" + REMOTE], MESSAGE)
    deadline = time.time() + 20
    while time.time() < deadline and not sink.transactions(rcpt="carl@" + REMOTE):
        time.sleep(0.1)
    data = sink.transactions(rcpt="carl@" + REMOTE)[0].data
    one = only_signature(data, "ed2026")
    assert dkim.verify(one, dnsfunc=lambda name, timeout=5: records.get(name))
    assert not dkim.verify(one.replace(b"body line", b"bodyXline"),
                           dnsfunc=lambda name, timeout=5: records.get(name))


@pytest.mark.timeout(60)
def test_signing_domain_is_the_envelope_senders(setup):
    d, sink, port, records = setup
    submit(port, USER, ["dan@" + REMOTE],
           b"From: someone@elsewhere.test\r\nSubject: x\r\n\r\nhi\r\n")
    deadline = time.time() + 20
    while time.time() < deadline and not sink.transactions(rcpt="dan@" + REMOTE):
        time.sleep(0.1)
    data = sink.transactions(rcpt="dan@" + REMOTE)[0].data
    assert data.count(b"DKIM-Signature:") == 2
    assert b"d=example.test" in re.sub(rb"\s+", b"", data)


@pytest.mark.timeout(60)
def test_sender_domain_without_key_is_not_signed(setup):
    d, sink, port, records = setup
    # sendmail (the local socket) may use any sender: one without a key.
    r = subprocess.run([d.bin, "sendmail", "-C", d.config_path, "-f", "x@nokey.test",
                        "erin@" + REMOTE], input=b"Subject: unsigned\n\nhi\n",
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 20
    while time.time() < deadline and not sink.transactions(rcpt="erin@" + REMOTE):
        time.sleep(0.1)
    data = sink.transactions(rcpt="erin@" + REMOTE)[0].data
    assert b"DKIM-Signature:" not in data


def test_bad_key_is_a_config_error(fulmar_factory):
    d = fulmar_factory(start=False)
    bad = os.path.join(d.root, "bad.key")
    with open(bad, "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    d.config["dkim"] = [{"domain": "example.test", "selector": "s1", "key": bad}]
    d.write_config()
    r = d.cli("check-config", "--config", d.config_path)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert re.search(r"fulmar\.conf:\d+: dkim key: .*bad\.key", err), err


def big_header(total, rcpt):
    """A message without Message-ID: or Date: whose header section,
    through its empty line, is exactly total octets, its Subject (signed)
    after the filler fields."""
    top = b"From: Alice <alice@example.test>\r\nTo: " + rcpt.encode() + b"\r\n"
    bottom = b"Subject: big header %d\r\n" % total
    room = total - len(top) - len(bottom) - 2
    msg = top + fulmar_test.header_filler(room) + bottom + b"\r\n" + b"body line\r\n" * 50
    assert msg.index(b"\r\n\r\n") + 4 == total
    return msg


@pytest.mark.timeout(120)
def test_large_header_is_completed_and_signed(setup):
    # The header section is held once, by the session, to add Message-ID:
    # and Date: in front of it; the signer is fed from that one copy.
    # Near the end of the hold (the empty line cut by it in every place)
    # and far past it, the message goes out byte for byte as submitted,
    # completed when its header section fitted the hold, and both
    # signatures verify.
    d, sink, port, records = setup
    hold = fulmar_test.HEADER_HOLD
    sizes = [hold - 1, hold, hold + 1, hold + 2, hold + 3, 100 * 1024]
    sent = {}
    for total in sizes:
        rcpt = "big%d@%s" % (total, REMOTE)
        sent[rcpt] = (total, big_header(total, rcpt))
        submit(port, USER, [rcpt], sent[rcpt][1])
    deadline = time.time() + 60
    for rcpt, (total, msg) in sent.items():
        while time.time() < deadline and not sink.transactions(rcpt=rcpt):
            time.sleep(0.1)
        txns = sink.transactions(rcpt=rcpt)
        assert txns, rcpt
        data = txns[0].data
        assert data.endswith(msg), "%d: not sent as submitted" % total
        added = data[:len(data) - len(msg)]
        completed = total <= hold
        assert (b"\r\nMessage-ID: <" in added) == completed, (total, added[-300:])
        assert (b"\r\nDate: " in added) == completed, (total, added[-300:])
        for sel in ("rsa2026", "ed2026"):
            one = only_signature(data, sel)
            assert dkim.verify(one, dnsfunc=lambda name, timeout=5: records.get(name)), \
                (total, sel)
