"""The SMTP client of the outbound engine against aiosmtpd sinks and raw
scripted servers: recipients grouped per domain, per-recipient replies
(250, 550, 451, 452), MAIL and DATA refusals, retries of what was
deferred only, connection reuse and its cap, the idle time, the HELO
fallback, PIPELINING, SIZE, SMTPUTF8, STARTTLS, slow servers."""
import time

import pytest

from fulmar_test import crlf, maildir_messages, make_message, to_lf
from outbound_lib import HELO_NAME, USER, unique, wait_until

pytestmark = pytest.mark.timeout(30)


def sent_to(relay, rcpt, timeout=10.0):
    return relay.wait_delivery(to=rcpt, status="sent", timeout=timeout)[0]


def first_delivery(relay, rcpt, timeout=10.0):
    return relay.wait_delivery(to=rcpt, timeout=timeout)[0]


def test_recipients_grouped_per_domain(relay, world):
    sink = world.sink("127.0.0.30")
    world.route_to("g1.smtp.test", "127.0.0.30")
    world.route_to("g2.smtp.test", "127.0.0.30")
    a = [unique("a%d" % i) + "@g1.smtp.test" for i in range(3)]
    b = [unique("b%d" % i) + "@g2.smtp.test" for i in range(2)]
    body = "line one\n.one dot\n..two dots\n.\n" + "x" * 990 + "\n\nlast\n"
    msg = make_message(subject="grouping", sender=USER, to=a[0], body=body)
    qid, _ = relay.submit(a + b, msg=msg)
    t1 = sink.wait_transactions(1, domain="g1.smtp.test")
    t2 = sink.wait_transactions(1, domain="g2.smtp.test")
    assert len(t1) == 1 and t1[0].rcpts == a, t1
    assert len(t2) == 1 and t2[0].rcpts == b, t2
    for t in (t1[0], t2[0]):
        assert t.mail_from == USER
        assert t.data.endswith(msg), t.data[-400:]
    for r in a + b:
        assert sent_to(relay, r)["id"] == qid
    relay.wait_gone(qid)


def test_per_recipient_replies_and_retry(relay, world):
    dom = "mixed.smtp.test"
    ok, fail, later, full = ("%s@%s" % (unique(n), dom) for n in ("ok", "fail", "later", "full"))
    sink = world.sink("127.0.0.31", rcpt_replies={
        fail: "550 5.1.1 no such user",
        later: ["451 4.3.0 try later"],          # then 250
        full: ["452 4.2.2 mailbox full"],        # then 250
    })
    world.route_to(dom, "127.0.0.31")
    qid, msg = relay.submit([ok, fail, later, full])
    first = sink.wait_transactions(1, domain=dom)[0]
    assert first.rcpts == [ok], first
    assert [a for a, _ in first.refused] == [fail, later, full], first
    assert sent_to(relay, ok)["dsn"].startswith("2.")
    ev = first_delivery(relay, fail)
    assert (ev["status"], ev["dsn"]) == ("bounced", "5.1.1"), ev
    assert "550 5.1.1 no such user" in ev["detail"], ev
    ev = first_delivery(relay, later)
    assert (ev["status"], ev["dsn"]) == ("deferred", "4.3.0"), ev
    ev = first_delivery(relay, full)
    assert (ev["status"], ev["dsn"]) == ("deferred", "4.2.2"), ev
    # The bounce is for the refused recipient only, and comes at once.
    dsn = relay.wait_dsn(fail, timeout=5)
    assert dsn.recipient(ok) is None and dsn.recipient(later) is None \
        and dsn.recipient(full) is None, dsn
    # The retry (retry_first = 1 s) carries the deferred recipients only.
    txns = sink.wait_transactions(2, domain=dom, timeout=8)
    assert len(txns) == 2, txns
    second = txns[1]
    assert sorted(second.rcpts) == sorted([later, full]), second
    assert second.started - first.started >= 0.8, "retried too early"
    assert second.data == first.data
    sent_to(relay, later)
    sent_to(relay, full)
    relay.wait_gone(qid)
    time.sleep(0.5)
    assert len(sink.messages_for(ok)) == 1, "a delivered recipient was sent again"
    assert relay.dsns(later) == [] and relay.dsns(full) == []


def test_too_many_recipients_452(relay, world):
    dom = "many.smtp.test"
    sink = world.sink("127.0.0.32", max_rcpts=2)
    world.route_to(dom, "127.0.0.32")
    rcpts = ["%s@%s" % (unique("m%d" % i), dom) for i in range(5)]
    qid, msg = relay.submit(rcpts)
    for r in rcpts:
        sent_to(relay, r, timeout=15)
    relay.wait_gone(qid)
    got = sorted(a for t in sink.transactions(domain=dom) for a in t.rcpts)
    assert got == sorted(rcpts), "each recipient exactly once: %r" % got
    assert all(len(t.rcpts) <= 2 for t in sink.transactions(domain=dom))


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "no-pipelining"])
def test_mail_refused_bounces_every_recipient(relay, world, pipelining):
    dom = "mailrefused-%s.smtp.test" % pipelining
    addr = "127.0.0.33" if pipelining else "127.0.0.49"
    sink = world.sink(addr, mail_reply="550 5.7.1 sender rejected", pipelining=pipelining)
    world.route_to(dom, addr)
    r1, r2 = ("%s@%s" % (unique(n), dom) for n in ("x", "y"))
    qid, _ = relay.submit([r1, r2])
    for r in (r1, r2):
        ev = first_delivery(relay, r)
        assert (ev["status"], ev["dsn"]) == ("bounced", "5.7.1"), ev
        d = relay.wait_dsn(r)
        assert d.recipient(r)["status"] == "5.7.1"
    if not pipelining:
        assert not any(v == "RCPT" for c in sink.connections for v in c.verbs())
    relay.wait_gone(qid)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "no-pipelining"])
def test_mail_tempfail_defers_then_delivers(relay, world, pipelining):
    # greylisting at MAIL: a 451 must never turn into a bounce
    dom = "greylist-%s.smtp.test" % pipelining
    addr = "127.0.0.34" if pipelining else "127.0.0.50"
    sink = world.sink(addr, mail_reply=["451 4.7.1 greylisted, come back later"],
                      pipelining=pipelining)
    world.route_to(dom, addr)
    rcpt = "%s@%s" % (unique("g"), dom)
    qid, msg = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt)
    assert (ev["status"], ev["dsn"]) == ("deferred", "4.7.1"), ev
    t = sink.wait_transactions(1, rcpt=rcpt, timeout=8)[0]
    assert t.data.endswith(msg)
    sent_to(relay, rcpt)
    relay.wait_gone(qid)


def test_data_refused_bounces_every_recipient(relay, world):
    dom = "datarefused.smtp.test"
    r1, r2 = ("%s@%s" % (unique(n), dom) for n in ("d1", "d2"))
    world.sink("127.0.0.35", data_replies={r1: "554 5.6.0 content rejected"})
    world.route_to(dom, "127.0.0.35")
    qid, _ = relay.submit([r1, r2])
    for r in (r1, r2):
        ev = first_delivery(relay, r)
        assert (ev["status"], ev["dsn"]) == ("bounced", "5.6.0"), ev
        assert relay.wait_dsn(r).recipient(r)["status"] == "5.6.0"
    relay.wait_gone(qid)


def test_data_tempfail_defers_then_delivers(relay, world):
    dom = "datalater.smtp.test"
    rcpt = "%s@%s" % (unique("dl"), dom)
    sink = world.sink("127.0.0.36", data_replies={rcpt: ["451 4.3.0 queue trouble"]})
    world.route_to(dom, "127.0.0.36")
    qid, msg = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt)
    assert (ev["status"], ev["dsn"]) == ("deferred", "4.3.0"), ev
    sent_to(relay, rcpt, timeout=8)
    # the refused transaction and the accepted one
    all_txns = sink.transactions(rcpt=rcpt, accepted_only=False)
    assert [t.accepted for t in all_txns] == [False, True], all_txns
    relay.wait_gone(qid)


def test_connection_reuse_and_messages_per_connection(relay, world):
    # messages_per_connection = 3 (relay_config): five messages one after
    # the other go over two connections, 3 + 2, each transaction on an
    # idle connection (idle_time = 2 s) that was kept open.
    dom = "reuse.smtp.test"
    sink = world.sink("127.0.0.37")
    world.route_to(dom, "127.0.0.37")
    for i in range(5):
        rcpt = "%s@%s" % (unique("r%d" % i), dom)
        relay.submit(rcpt)
        sink.wait_transactions(1, rcpt=rcpt)
        sent_to(relay, rcpt)
    conns = sink.rec.connections_for(domain=dom)
    assert [len(c.transactions) for c in conns] == [3, 2], conns
    assert conns[0].quit, "the capped connection ends with QUIT"
    # every transaction but the first of a connection needed no new EHLO
    assert conns[0].verbs().count("EHLO") == 1


def test_idle_connection_closes_after_idle_time(relay, world):
    dom = "idle.smtp.test"
    sink = world.sink("127.0.0.38")
    world.route_to(dom, "127.0.0.38")
    r1 = "%s@%s" % (unique("i1"), dom)
    relay.submit(r1)
    sink.wait_transactions(1, rcpt=r1)
    conn = sink.rec.connections_for(rcpt=r1)[0]
    time.sleep(0.5)
    assert conn.ended is None, "closed at once: no reuse possible"
    assert sink.rec.wait(lambda: conn.ended is not None, timeout=5), \
        "the idle connection was not closed after idle_time"
    assert conn.quit and conn.ended - conn.transactions[-1].finished < 4.0
    r2 = "%s@%s" % (unique("i2"), dom)
    relay.submit(r2)
    sink.wait_transactions(1, rcpt=r2)
    assert sink.rec.connections_for(rcpt=r2)[0].id != conn.id


def test_helo_fallback(relay, world):
    dom = "helo.smtp.test"
    srv = world.raw_smtp("127.0.0.39", ehlo_reply="500 5.5.1 command not recognized")
    world.route_to(dom, "127.0.0.39")
    rcpt = "%s@%s" % (unique("h"), dom)
    qid, msg = relay.submit(rcpt)
    t = srv.wait_transactions(1, rcpt=rcpt)[0]
    assert t.conn.esmtp is False and t.conn.helo == HELO_NAME
    assert t.mail_options == [], "ESMTP parameters sent after HELO: %r" % t.mail_options
    assert t.data.endswith(msg)
    sent_to(relay, rcpt)


def test_pipelining_used_when_offered(relay, world):
    dom = "pipe.smtp.test"
    srv = world.raw_smtp("127.0.0.40", mail_delay=0.4)
    world.route_to(dom, "127.0.0.40")
    rcpts = ["%s@%s" % (unique("p%d" % i), dom) for i in range(3)]
    relay.submit(rcpts)
    t = srv.wait_transactions(1, domain=dom)[0]
    assert t.conn.notes.get("pipelined_before_mail_reply"), \
        "RCPT did not follow MAIL before MAIL's reply although PIPELINING was offered"
    assert t.rcpts == rcpts


def test_no_pipelining_when_not_offered(relay, world):
    dom = "nopipe.smtp.test"
    srv = world.raw_smtp("127.0.0.41", mail_delay=0.3, ehlo_lines=("8BITMIME",))
    world.route_to(dom, "127.0.0.41")
    rcpts = ["%s@%s" % (unique("np%d" % i), dom) for i in range(2)]
    relay.submit(rcpts)
    t = srv.wait_transactions(1, domain=dom)[0]
    assert not t.conn.pipelined, "commands pipelined to a server without PIPELINING"
    assert t.rcpts == rcpts


def test_message_over_remote_size_bounces_unsent(relay, world):
    dom = "size.smtp.test"
    sink = world.sink("127.0.0.42", size=2000)
    world.route_to(dom, "127.0.0.42")
    small = "%s@%s" % (unique("small"), dom)
    big = "%s@%s" % (unique("big"), dom)
    qid, msg = relay.submit(small)
    t = sink.wait_transactions(1, rcpt=small)[0]
    assert t.data.endswith(msg)
    size = [o for o in t.mail_options if o.upper().startswith("SIZE=")]
    assert size and int(size[0][5:]) >= len(msg), t.mail_options
    big_msg = make_message(subject="big", sender=USER, to=big,
                           body=("y" * 70 + "\n") * 100)
    qid2, _ = relay.submit(big, msg=big_msg)
    ev = first_delivery(relay, big)
    assert (ev["status"], ev["dsn"]) == ("bounced", "5.3.4"), ev
    assert relay.wait_dsn(big).recipient(big)["status"] == "5.3.4"
    assert sink.transactions(rcpt=big, accepted_only=False) == [], \
        "MAIL was sent for a message over the server's SIZE"
    relay.wait_gone(qid2)


def submit_utf8(relay, rcpt):
    msg = crlf("From: <%s>\nTo: <%s>\nSubject: utf8\nMessage-ID: <%s@client.test>\n"
               "Date: Sun, 29 Nov 2026 09:00:00 +0000\n\nGr\u00fc\u00dfe\n"
               % (USER, rcpt, unique("u8")))
    return relay.submit(rcpt, msg=msg, mail_params="SMTPUTF8")


def test_smtputf8_needed_but_not_offered_bounces(relay, world):
    dom = "noutf8.smtp.test"
    sink = world.sink("127.0.0.43", smtputf8=False)
    world.route_to(dom, "127.0.0.43")
    rcpt = "j\u00fcrgen.%s@%s" % (unique("u"), dom)
    qid, _ = submit_utf8(relay, rcpt)
    ev = first_delivery(relay, rcpt)
    assert (ev["status"], ev["dsn"]) == ("bounced", "5.6.7"), ev
    got = fulmar_dsn_with_status(relay, "5.6.7")
    assert got, "no DSN with status 5.6.7"
    assert sink.transactions(domain=dom, accepted_only=False) == []
    relay.wait_gone(qid)


def fulmar_dsn_with_status(relay, status, timeout=10.0):
    return wait_until(lambda: [d for d in relay.dsns()
                               if any(r.get("status") == status for r in d.recipients)],
                      timeout)


def test_smtputf8_offered_delivers(relay, world):
    dom = "utf8.smtp.test"
    sink = world.sink("127.0.0.44", smtputf8=True)
    world.route_to(dom, "127.0.0.44")
    rcpt = "j\u00fcrgen.%s@%s" % (unique("u"), dom)
    qid, msg = submit_utf8(relay, rcpt)
    t = sink.wait_transactions(1, domain=dom)[0]
    assert t.rcpts == [rcpt]
    assert "SMTPUTF8" in [o.upper() for o in t.mail_options], t.mail_options
    assert t.data.endswith(msg)
    sent_to(relay, rcpt)


def test_starttls_used_when_offered(relay, world):
    dom = "tls.smtp.test"
    sink = world.sink("127.0.0.45", starttls=True)
    world.route_to(dom, "127.0.0.45")
    rcpt = "%s@%s" % (unique("t"), dom)
    qid, msg = relay.submit(rcpt)
    t = sink.wait_transactions(1, rcpt=rcpt)[0]
    assert t.conn.tls, "delivered in clear although STARTTLS was offered"
    assert t.conn.verbs()[:3] == ["EHLO", "STARTTLS", "EHLO"], t.conn.verbs()
    assert t.data.endswith(msg)
    sent_to(relay, rcpt)


def test_starttls_refused_may_delivers_in_clear(relay, world):
    # tls = "may": a server that offers STARTTLS and then refuses it still
    # gets the mail (in clear), as from any opportunistic MTA.
    dom = "tlsrefused.smtp.test"
    sink = world.sink("127.0.0.46", starttls_reply="454 4.7.0 TLS not available now")
    world.route_to(dom, "127.0.0.46")
    rcpt = "%s@%s" % (unique("tr"), dom)
    qid, msg = relay.submit(rcpt)
    t = sink.wait_transactions(1, rcpt=rcpt, timeout=10)[0]
    assert not t.conn.tls
    assert t.data.endswith(msg)
    sent_to(relay, rcpt)


def test_slow_server_within_timeouts(relay, world):
    # every reply 0.4 s late; command_timeout is 2 s
    dom = "slow.smtp.test"
    sink = world.sink("127.0.0.47", delay=0.4)
    world.route_to(dom, "127.0.0.47")
    rcpt = "%s@%s" % (unique("s"), dom)
    qid, msg = relay.submit(rcpt)
    t = sink.wait_transactions(1, rcpt=rcpt, timeout=15)[0]
    assert t.data.endswith(msg)
    ev = sent_to(relay, rcpt)
    assert float(ev["delay"]) >= 1.0, ev


def test_server_slower_than_timeout_defers(relay, world):
    # the reply after the final dot takes longer than data_done_timeout (3 s)
    dom = "tooslow.smtp.test"
    rcpt = "%s@%s" % (unique("ts"), dom)
    sink = world.sink("127.0.0.48", data_delay=4.5)
    sink.script_data(rcpt, ["451 4.0.0 never seen"])
    world.route_to(dom, "127.0.0.48")
    t0 = time.monotonic()
    qid, _ = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt, timeout=10)
    assert ev["status"] == "deferred" and ev["dsn"].startswith("4."), ev
    assert time.monotonic() - t0 < 6
    assert qid in relay.queue_text()


def test_8bit_body_passed_with_body_8bitmime(relay, world):
    dom = "eightbit.smtp.test"
    sink = world.sink("127.0.0.51")
    world.route_to(dom, "127.0.0.51")
    rcpt = "%s@%s" % (unique("8b"), dom)
    msg = crlf(("From: <%s>\nTo: <%s>\nSubject: 8bit\nMessage-ID: <%s@client.test>\n"
                "Date: Sun, 29 Nov 2026 09:00:00 +0000\nMIME-Version: 1.0\n"
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
                "Gr\u00fc\u00dfe aus K\u00f6ln\n") % (USER, rcpt, unique("8")))
    qid, _ = relay.submit(rcpt, msg=msg, mail_params="BODY=8BITMIME")
    t = sink.wait_transactions(1, rcpt=rcpt)[0]
    assert "BODY=8BITMIME" in [o.upper() for o in t.mail_options], t.mail_options
    assert t.data.endswith(msg)


def test_plaintext_injected_before_tls_is_discarded(relay, world):
    # The server sends a reply in clear right behind its 220 to STARTTLS;
    # read before the handshake, it must be thrown away, not taken as the
    # answer to the EHLO that follows inside TLS.
    dom = "inject.smtp.test"
    srv = world.raw_smtp("127.0.0.52", starttls=True,
                         starttls_inject=b"554 5.7.0 injected before the handshake\r\n")
    world.route_to(dom, "127.0.0.52")
    rcpt = "%s@%s" % (unique("inj"), dom)
    qid, msg = relay.submit(rcpt)
    ev = first_delivery(relay, rcpt)
    assert ev["status"] == "sent", ev
    t = srv.wait_transactions(1, rcpt=rcpt)[0]
    assert t.conn.tls and t.data.endswith(msg)


def test_large_message_intact(relay, world):
    # 5 MB with long and dotted lines: byte for byte at the server
    dom = "large.smtp.test"
    sink = world.sink("127.0.0.53")
    world.route_to(dom, "127.0.0.53")
    rcpt = "%s@%s" % (unique("big"), dom)
    line = ".%s\n" % ("abcdefghij" * 99)           # 991 octets, a leading dot
    msg = make_message(subject="large", sender=USER, to=rcpt, body=line * 5100)
    assert len(msg) > 5 * 1000 * 1000
    qid, _ = relay.submit(rcpt, msg=msg)
    t = sink.wait_transactions(1, rcpt=rcpt, timeout=20)
    assert t and t[0].data.endswith(msg), "large message changed in transit"
    sent_to(relay, rcpt)


def test_hundreds_of_recipients_over_a_100_limit(relay, world):
    # 120 recipients in one message; the server takes 100 per transaction
    dom = "crowd.smtp.test"
    sink = world.sink("127.0.0.54", max_rcpts=100)
    world.route_to(dom, "127.0.0.54")
    rcpts = ["%s@%s" % (unique("c%03d" % i), dom) for i in range(120)]
    qid, msg = relay.submit(rcpts)
    relay.wait_gone(qid, timeout=15)
    got = [a for t in sink.transactions(domain=dom) for a in t.rcpts]
    assert sorted(got) == sorted(rcpts), "each of 120 recipients once (%d got)" % len(got)
    assert all(t.data.endswith(msg) for t in sink.transactions(domain=dom))
    assert len([e for e in relay.deliveries(id=qid) if e["status"] == "bounced"]) == 0


def test_local_part_case_kept(relay, world):
    dom = "case.smtp.test"
    sink = world.sink("127.0.0.55")
    world.route_to(dom, "127.0.0.55")
    local = "MiXeD.CaSe-%s" % unique("x")
    rcpt = "%s@CASE.Smtp.Test" % local
    qid, msg = relay.submit(rcpt)
    t = sink.wait_transactions(1, domain=dom)
    assert t, relay.d.log_tail(20)
    assert t[0].rcpts[0].split("@")[0] == local, t[0].rcpts


def test_local_and_remote_recipients_in_one_message(relay, world):
    dom = "mixedlocal.smtp.test"
    sink = world.sink("127.0.0.56")
    world.route_to(dom, "127.0.0.56")
    remote = "%s@%s" % (unique("far"), dom)
    qid, msg = relay.submit(["bob@example.test", remote])
    t = sink.wait_transactions(1, rcpt=remote)
    assert t and t[0].rcpts == [remote], t
    assert t[0].data.endswith(msg)
    got = wait_until(lambda: [m for m in maildir_messages(relay.d.maildir("bob"))
                              if to_lf(msg) in m], 10)
    assert len(got) == 1, "bob's copy"
    relay.wait_gone(qid)


def test_many_destinations_at_once(relay, world):
    # 40 domains, three messages each, all at once
    sink = world.sink("127.0.0.57")
    doms = ["many%d.smtp.test" % i for i in range(40)]
    for d in doms:
        world.route_to(d, "127.0.0.57")
    rcpts = ["%s@%s" % (unique("md"), d) for d in doms for _ in range(3)]
    c = relay.connect()
    try:
        qids = [relay.submit(r, client=c)[0] for r in rcpts]
    finally:
        c.quit()
    for q in qids:
        relay.wait_gone(q, timeout=20)
    got = sorted(a for t in sink.transactions() for a in t.rcpts)
    assert got == sorted(rcpts)
