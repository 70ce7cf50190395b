"""Bounces and other delivery status notifications (RFC 3461/3464),
parsed with Python's email package: the multipart/report structure, the
per-message and per-recipient fields, RET=HDRS, ORCPT and ENVID, NOTIFY
NEVER and SUCCESS, bounces sent over SMTP from the null sender, and no
bounce for a message from the null sender."""
import email.utils
import re
import time

import pytest

from fulmar_test import HOSTNAME, make_message
from outbound_lib import DSN, USER, unique, wait_until

pytestmark = pytest.mark.timeout(30)

REMOTE_SENDER_REFUSES = "bounceme@rs-refuse.dsn.test"
REMOTE_SENDER_ACCEPTS = "takebounce@rs-accept.dsn.test"


@pytest.fixture(scope="module")
def relay(relay_factory):
    # alice may also send as two remote addresses (their bounces go out).
    return relay_factory(senders=[REMOTE_SENDER_REFUSES, REMOTE_SENDER_ACCEPTS])


@pytest.fixture(scope="module")
def failing(world):
    """dom: any recipient starting with "fail" is refused with 550 5.1.1."""
    dom = "fails.dsn.test"

    def rcpt_reply(addr, txn):
        if addr.startswith("fail"):
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % addr
        return None
    sink = world.sink("127.0.0.10", rcpt_replies=None, name="mx.fails.dsn.test")
    sink.rcpt_script.default = rcpt_reply
    world.route_to(dom, "127.0.0.10")
    sink.domain = dom
    return sink


def bounce_events(relay, qid):
    return relay.events("bounce", id=qid)


def test_bounce_structure(relay, failing):
    rcpt = "%s@%s" % (unique("fail"), failing.domain)
    msg = make_message(subject="will bounce", sender=USER, to=rcpt,
                       body="The body of the original.\n")
    qid, _ = relay.submit(rcpt, msg=msg)
    dsn = relay.wait_dsn(rcpt)
    ev = relay.wait_events("bounce", 1, id=qid)
    assert ev, relay.d.log_tail(20)
    ev = ev[0]
    assert ev["to"] == USER and ev["action"] == "failed" and ev.get("bounce_id"), ev

    m = dsn.msg
    # as delivered into alice's Maildir: from the null sender
    assert dsn.raw.startswith(b"Return-Path: <>\n"), dsn.raw[:200]
    assert "MAILER-DAEMON" in m["From"].upper(), m["From"]
    assert USER in m["To"]
    assert m["Subject"]
    assert m["Message-ID"] and m["Date"]
    assert email.utils.parsedate_to_datetime(m["Date"]) is not None
    assert m["Auto-Submitted"].lower().startswith("auto-replied"), m["Auto-Submitted"]
    assert m.get_content_type() == "multipart/report"
    assert m.get_param("report-type") == "delivery-status"
    types = [p.get_content_type() for p in dsn.parts]
    assert types == ["text/plain", "message/delivery-status", "message/rfc822"], types

    human = dsn.parts[0].get_payload(decode=True).decode("utf-8", "replace")
    assert rcpt in human

    pm = dsn.per_message
    assert re.match(r"dns;\s*%s$" % re.escape(HOSTNAME), pm["reporting-mta"]), pm
    assert email.utils.parsedate_to_datetime(pm["arrival-date"]) is not None, pm

    assert len(dsn.recipients) == 1, dsn.recipients
    r = dsn.recipients[0]
    assert re.match(r"rfc822;\s*%s$" % re.escape(rcpt), r["final-recipient"]), r
    assert r["action"].lower() == "failed"
    assert r["status"] == "5.1.1"
    assert re.match(r"dns;\s*\S+", r["remote-mta"]), r
    assert "mx.fails.dsn.test" in r["remote-mta"] or "127.0.0.10" in r["remote-mta"], r
    assert re.match(r"smtp;\s*550 5\.1\.1 ", r["diagnostic-code"]), r
    assert "Recipient address rejected" in r["diagnostic-code"], r

    original = dsn.parts[2].get_payload()[0]
    assert original["Message-ID"] == re.search(rb"Message-ID: (\S+)", msg).group(1).decode()
    assert "The body of the original." in original.get_payload()
    relay.wait_gone(qid)


def test_ret_hdrs_returns_headers_only(relay, failing):
    rcpt = "%s@%s" % (unique("fail"), failing.domain)
    msg = make_message(subject="headers only", sender=USER, to=rcpt,
                       body="SECRET BODY TEXT\n")
    relay.submit(rcpt, msg=msg, mail_params="RET=HDRS")
    dsn = relay.wait_dsn(rcpt)
    ret = dsn.returned()
    assert ret is not None and ret.get_content_type() == "text/rfc822-headers", \
        [p.get_content_type() for p in dsn.parts]
    text = ret.get_payload(decode=True) or ret.as_bytes()
    assert b"Subject: headers only" in text
    assert b"SECRET BODY TEXT" not in dsn.raw


def test_orcpt_and_envid_echoed(relay, failing):
    rcpt = "%s@%s" % (unique("fail"), failing.domain)
    relay.submit(rcpt, mail_params="ENVID=env-4711",
                 rcpt_params="ORCPT=rfc822;original+2Blist@orig.dsn.test")  # xtext "+"
    dsn = relay.wait_dsn(rcpt)
    assert dsn.per_message.get("original-envelope-id") == "env-4711", dsn.per_message
    r = dsn.recipient(rcpt)
    # as received (xtext) or decoded
    assert re.match(r"rfc822;\s*original(\+2B|\+)list@orig\.dsn\.test$",
                    r.get("original-recipient", "")), r


def test_several_failed_recipients_reported(relay, failing):
    r1, r2 = ("%s@%s" % (unique("fail%d" % i), failing.domain) for i in (1, 2))
    ok = "%s@%s" % (unique("okay"), failing.domain)
    qid, _ = relay.submit([r1, ok, r2])
    d = relay.wait_dsn(r1)
    # one report covers the recipients that failed in one round
    assert d.recipient(r2) is not None, d.recipients
    assert len(relay.dsns(r1)) == 1 and len(relay.dsns(r2)) == 1
    assert relay.dsns(ok) == []
    assert failing.messages_for(ok)
    relay.wait_gone(qid)


def test_notify_never_sends_no_bounce(relay, failing):
    rcpt = "%s@%s" % (unique("fail"), failing.domain)
    qid, _ = relay.submit(rcpt, rcpt_params="NOTIFY=NEVER")
    ev = relay.wait_delivery(to=rcpt)[0]
    assert ev["status"] == "bounced", ev
    relay.wait_gone(qid)
    time.sleep(1.0)
    assert relay.dsns(rcpt) == []
    assert bounce_events(relay, qid) == []


def test_notify_success_gives_relayed_dsn(relay, failing):
    # The sink does not offer DSN: Fulmar reports "relayed" (or "delivered")
    # itself, for the recipient that asked, and for it only.
    asked = "%s@%s" % (unique("succ"), failing.domain)
    quiet = "%s@%s" % (unique("quiet"), failing.domain)
    qid, _ = relay.submit([asked, quiet], rcpt_params={asked: "NOTIFY=SUCCESS,FAILURE"},
                          mail_params="ENVID=succ-1")
    dsn = wait_until(lambda: relay.dsns(asked), 10)
    assert dsn, "no success DSN; log:\n%s" % relay.d.log_tail(30)
    dsn = dsn[0]
    r = dsn.recipient(asked)
    assert r["action"].lower() in ("relayed", "delivered"), r
    assert r["status"].startswith("2."), r
    assert dsn.recipient(quiet) is None
    assert dsn.per_message.get("original-envelope-id") == "succ-1"
    ev = wait_until(lambda: bounce_events(relay, qid), 5)
    assert ev and ev[0]["action"] in ("relayed", "delivered"), ev
    time.sleep(0.5)
    assert relay.dsns(quiet) == []


def test_success_dsn_not_sent_by_default(relay, failing):
    rcpt = "%s@%s" % (unique("plain"), failing.domain)
    qid, _ = relay.submit(rcpt)
    relay.wait_delivery(to=rcpt, status="sent")
    relay.wait_gone(qid)
    time.sleep(0.5)
    assert relay.dsns(rcpt) == [] and bounce_events(relay, qid) == []


def test_dsn_parameters_passed_to_a_dsn_server(relay, world):
    # RFC 3461 5.2: to a server that offers DSN, NOTIFY, ORCPT, RET and
    # ENVID are passed on (the server reports from there on).
    dom = "dsnpeer.dsn.test"
    sink = world.sink("127.0.0.11", dsn=True)
    world.route_to(dom, "127.0.0.11")
    rcpt = "%s@%s" % (unique("pass"), dom)
    relay.submit(rcpt, mail_params="RET=HDRS ENVID=pass-1",
                 rcpt_params="NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig@dsnpeer.dsn.test")
    t = sink.wait_transactions(1, rcpt=rcpt)[0]
    mopts = [o.upper() for o in t.mail_options]
    assert "RET=HDRS" in mopts and "ENVID=PASS-1" in mopts, t.mail_options
    ropts = [o.upper() for o in t.rcpt_options[rcpt]]
    assert any(o.startswith("NOTIFY=") and "SUCCESS" in o and "DELAY" in o for o in ropts), ropts
    assert "ORCPT=RFC822;ORIG@DSNPEER.DSN.TEST" in ropts, ropts
    # the server reports from here on: no "relayed" notice from us
    relay.wait_delivery(to=rcpt, status="sent")
    time.sleep(0.5)
    assert relay.dsns(rcpt) == []


def test_bounce_goes_out_from_the_null_sender(relay, world, failing):
    sdom = REMOTE_SENDER_ACCEPTS.split("@")[1]
    back = world.sink("127.0.0.12")
    world.route_to(sdom, "127.0.0.12")
    rcpt = "%s@%s" % (unique("fail"), failing.domain)
    msg = make_message(subject="remote sender", sender=REMOTE_SENDER_ACCEPTS, to=rcpt)
    qid, _ = relay.submit(rcpt, msg=msg, sender=REMOTE_SENDER_ACCEPTS)
    t = back.wait_transactions(1, rcpt=REMOTE_SENDER_ACCEPTS)
    assert t, "the bounce did not reach the sender's server; log:\n%s" % relay.d.log_tail(30)
    t = t[0]
    assert t.mail_from == "", "a bounce must be sent with MAIL FROM:<>, got <%s>" % t.mail_from
    assert t.rcpts == [REMOTE_SENDER_ACCEPTS]
    d = DSN(t.data)
    assert d.is_dsn and d.recipient(rcpt)["status"] == "5.1.1"
    ev = relay.wait_events("bounce", 1, id=qid)[0]
    assert ev["to"] == REMOTE_SENDER_ACCEPTS
    relay.wait_delivery(to=REMOTE_SENDER_ACCEPTS, status="sent", id=ev["bounce_id"])


def test_no_bounce_for_a_bounce(relay, world, failing):
    # The original's sender refuses its bounce: that bounce (sender <>)
    # fails in turn, and nothing more is generated.
    sdom = REMOTE_SENDER_REFUSES.split("@")[1]
    world.sink("127.0.0.13", rcpt_replies={REMOTE_SENDER_REFUSES: "550 5.1.1 gone"})
    world.route_to(sdom, "127.0.0.13")
    rcpt = "%s@%s" % (unique("fail"), failing.domain)
    msg = make_message(subject="double bounce", sender=REMOTE_SENDER_REFUSES, to=rcpt)
    qid, _ = relay.submit(rcpt, msg=msg, sender=REMOTE_SENDER_REFUSES)
    ev = relay.wait_events("bounce", 1, id=qid)
    assert ev, relay.d.log_tail(30)
    bid = ev[0]["bounce_id"]
    dl = relay.wait_delivery(to=REMOTE_SENDER_REFUSES, id=bid)[0]
    assert dl["status"] == "bounced", dl
    relay.wait_gone(bid)
    time.sleep(1.0)
    assert relay.events("bounce", id=bid) == [], "a bounce was made for a bounce"
    assert relay.dsns(REMOTE_SENDER_REFUSES) == []


def test_large_message_returns_headers_only(relay, failing):
    # without RET, a message over 256 KiB comes back as its headers only
    rcpt = "%s@%s" % (unique("fail"), failing.domain)
    msg = make_message(subject="large", sender=USER, to=rcpt,
                       body=("0123456789" * 7 + "\n") * 4000)
    assert len(msg) > 256 * 1024
    relay.submit(rcpt, msg=msg)
    dsn = relay.wait_dsn(rcpt)
    ret = dsn.returned()
    assert ret is not None and ret.get_content_type() == "text/rfc822-headers", \
        [p.get_content_type() for p in dsn.parts]
    assert len(dsn.raw) < 64 * 1024
