"""Commands, states and replies (RFC 5321 4.1, 4.2, 4.3; RFC 3463 codes).

Every command is tried in every session state; after it, a probe checks
that the session is in the state it should be in."""

import time

import pytest

from fulmar_test import (HOSTNAME, SMTPClient, expect, maildir_files, make_message,
                         split_delivered, wait_for_one)

pytestmark = pytest.mark.timeout(60)

EHLO_KEYWORDS = {"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8",
                 "CHUNKING", "DSN"}

# ---------------------------------------------------------------------------
# greeting and EHLO / HELO


def test_greeting(client):
    g = client.greeting
    assert g.code == 220 and len(g.lines) == 1, g
    assert g.lines[0].startswith("%s ESMTP Fulmar" % HOSTNAME), g


def test_ehlo_advertises_extensions(client):
    r = client.ehlo("client.test")
    assert r.lines[0].split()[0] == HOSTNAME, r
    kw = {ln.split()[0].upper(): ln.split()[1:] for ln in r.lines[1:]}
    missing = EHLO_KEYWORDS - set(kw)
    assert not missing, "EHLO lacks %s: %r" % (missing, r)
    assert kw["SIZE"] == ["36700160"], "default SIZE should be 36700160: %r" % r
    for absent in ("STARTTLS", "AUTH"):
        assert absent not in kw, "%s advertised in this build: %r" % (absent, r)


def test_ehlo_size_follows_config(fulmar_factory):
    d = fulmar_factory(limits={"message_size": 123456})
    with SMTPClient(d.port) as c:
        r = c.ehlo()
        assert "SIZE 123456" in r.lines, r


def test_helo_single_line(client):
    r = client.helo("client.test")
    assert len(r.lines) == 1 and r.lines[0].split()[0] == HOSTNAME, r


@pytest.mark.parametrize("name", ["[127.0.0.1]", "[IPv6:::1]", "client.test", "localhost"])
def test_ehlo_accepts_names_and_literals(client, name):
    expect(client.cmd("EHLO " + name), 250)


@pytest.mark.parametrize("verb", ["EHLO", "HELO"])
def test_ehlo_helo_without_argument(client, verb):
    expect(client.cmd(verb), 501, "5.5.4")
    expect(client.cmd("NOOP"), 250, "2.0.0")


def test_ehlo_resets_transaction(session):
    expect(session.mail("s@client.test"), 250, "2.1.0")
    expect(session.rcpt("alice@example.test"), 250, "2.1.5")
    session.ehlo()
    expect(session.cmd("DATA"), 503, "5.5.1")
    expect(session.rcpt("alice@example.test"), 503, "5.5.1")
    expect(session.mail("s@client.test"), 250, "2.1.0")


# ---------------------------------------------------------------------------
# every command in every state

STATES = ["fresh", "ready", "mail", "rcpt", "bdat"]


def enter(c, state):
    if state == "fresh":
        return
    c.ehlo()
    if state == "ready":
        return
    expect(c.mail("s@client.test"), 250, "2.1.0")
    if state == "mail":
        return
    expect(c.rcpt("alice@example.test"), 250, "2.1.5")
    if state == "rcpt":
        return
    c.send(b"BDAT 5\r\nabc\r\n")
    expect(c.reply(), 250, "2.0.0")


def probe(c, state):
    """Check the session is in `state` (leaves it in some valid state)."""
    if state == "fresh":
        expect(c.mail("p@client.test"), 503, "5.5.1")
        expect(c.cmd("EHLO probe.test"), 250)
        expect(c.mail("p@client.test"), 250, "2.1.0")
    elif state == "ready":
        expect(c.mail("p@client.test"), 250, "2.1.0")
    elif state == "mail":
        expect(c.cmd("DATA"), 503, "5.5.1")
        expect(c.rcpt("bob@example.test"), 250, "2.1.5")
    elif state == "rcpt":
        expect(c.cmd("DATA"), 354)
        c.send(b"Subject: probe\r\n\r\nprobe\r\n.\r\n")
        r = expect(c.reply(), 250, "2.0.0")
        assert r.queue_id, r
    elif state == "bdat":
        expect(c.cmd("DATA"), 503, "5.5.1")
        r = expect(c.cmd("BDAT 0 LAST"), 250, "2.0.0")
        assert r.queue_id, r
    else:
        raise AssertionError(state)


# (command, {state: (code, enhanced code or None, state after)}); "same" keeps
# the state; a missing state means the command is not tried there.
SAME = "same"
ALL_SAME = lambda code, enh: {s: (code, enh, SAME) for s in STATES}  # noqa: E731

MATRIX = [
    ("HELO client.test", {s: (250, None, "ready") for s in STATES}),
    ("EHLO client.test", {s: (250, None, "ready") for s in STATES}),
    ("MAIL FROM:<s2@client.test>", {
        "fresh": (503, "5.5.1", SAME), "ready": (250, "2.1.0", "mail"),
        "mail": (503, "5.5.1", SAME), "rcpt": (503, "5.5.1", SAME),
        "bdat": (503, "5.5.1", SAME)}),
    ("RCPT TO:<carol@example.test>", {
        "fresh": (503, "5.5.1", SAME), "ready": (503, "5.5.1", SAME),
        "mail": (250, "2.1.5", "rcpt"), "rcpt": (250, "2.1.5", "rcpt")}),
    ("DATA", {
        "fresh": (503, "5.5.1", SAME), "ready": (503, "5.5.1", SAME),
        "mail": (503, "5.5.1", SAME), "rcpt": (354, None, "data"),
        "bdat": (503, "5.5.1", SAME)}),
    ("BDAT 0 LAST", {
        "fresh": (503, "5.5.1", SAME), "ready": (503, "5.5.1", SAME),
        "mail": (503, "5.5.1", SAME), "bdat": (250, "2.0.0", "ready")}),
    ("BDAT 4 LAST\r\nhi\r\n", {"rcpt": (250, "2.0.0", "ready")}),
    ("RSET", {"fresh": (250, "2.0.0", SAME), "ready": (250, "2.0.0", SAME),
              "mail": (250, "2.0.0", "ready"), "rcpt": (250, "2.0.0", "ready"),
              "bdat": (250, "2.0.0", "ready")}),
    ("NOOP", ALL_SAME(250, "2.0.0")),
    ("NOOP some text", ALL_SAME(250, "2.0.0")),
    ("HELP", ALL_SAME(214, "2.0.0")),
    ("HELP MAIL", ALL_SAME(214, "2.0.0")),
    ("VRFY alice", ALL_SAME(252, "2.5.0")),
    ("VRFY nobody@example.test", ALL_SAME(252, "2.5.0")),
    ("VRFY", ALL_SAME(501, "5.5.4")),
    ("EXPN team", ALL_SAME(502, "5.5.1")),
    ("STARTTLS", ALL_SAME(502, "5.5.1")),
    # mx listeners do not offer AUTH unless configured (issue 3)
    ("AUTH PLAIN AGFsaWNlAHNlY3JldA==", ALL_SAME(503, "5.5.1")),
    ("XYZZY", ALL_SAME(500, "5.5.2")),
    ("MAILFROM:<s@client.test>", ALL_SAME(500, "5.5.2")),
    ("QUIT", {s: (221, "2.0.0", "closed") for s in STATES}),
]

CASES = [(cmd, state) for cmd, per in MATRIX for state in STATES if state in per]


@pytest.mark.parametrize("cmd,state", CASES,
                         ids=["%s-%s" % (c.split("\r")[0].replace(" ", "_"), s)
                              for c, s in CASES])
def test_command_in_state(shared_fulmar, cmd, state):
    code, enh, after = dict(MATRIX)[cmd][state]
    with SMTPClient(shared_fulmar.port) as c:
        enter(c, state)
        if "\r\n" in cmd:     # a command with its chunk: sent as is
            c.send(cmd)
            r = c.reply()
        else:
            r = c.cmd(cmd)
        expect(r, code, enh)
        if cmd.split()[0] not in ("EHLO", "HELO") and code != 354:
            # every reply but the greeting and EHLO/HELO carries a code,
            # on each of its lines
            for i in range(len(r.lines)):
                assert r.line_enh(i) == r.enh, "line %d without the code: %r" % (i, r)
        if after == "closed":
            assert c.wait_closed(5), "connection still open after QUIT"
            return
        if after == "data":
            c.send(b"Subject: t\r\n\r\nbody\r\n.\r\n")
            r = expect(c.reply(), 250, "2.0.0")
            assert r.queue_id, r
            after = "ready"
        probe(c, state if after == SAME else after)
        expect(c.cmd("QUIT"), 221, "2.0.0")


# ---------------------------------------------------------------------------
# case-insensitivity


def test_verbs_and_keywords_case_insensitive(fulmar):
    msg = make_message(subject="case")
    with SMTPClient(fulmar.port) as c:
        expect(c.cmd("ehlo client.test"), 250)
        expect(c.cmd("hElO client.test"), 250)
        expect(c.cmd("EhLo client.test"), 250)
        expect(c.cmd("noop"), 250, "2.0.0")
        expect(c.cmd("rset"), 250, "2.0.0")
        expect(c.cmd("help"), 214, "2.0.0")
        expect(c.cmd("vrfy alice"), 252, "2.5.0")
        expect(c.cmd("mail from:<s@client.test> size=%d body=8bitmime" % len(msg)), 250, "2.1.0")
        expect(c.cmd("rcpt to:<alice@EXAMPLE.TEST> notify=success,failure"), 250, "2.1.5")
        expect(c.cmd("data"), 354)
        c.send(msg + b".\r\n")
        expect(c.reply(), 250, "2.0.0")
        expect(c.cmd("MaIl FrOm:<s@client.test>"), 250, "2.1.0")
        expect(c.cmd("RcPt To:<bob@example.test>"), 250, "2.1.5")
        c.send(b"bdat 2\r\nhi")
        expect(c.reply(), 250, "2.0.0")
        c.send(b"bDaT 2 lAsT\r\n\r\n")
        expect(c.reply(), 250, "2.0.0")
        expect(c.cmd("quit"), 221, "2.0.0")
    split_delivered(wait_for_one(fulmar.maildir("alice")), msg)
    assert wait_for_one(fulmar.maildir("bob")).endswith(b"hi\n")


# ---------------------------------------------------------------------------
# MAIL / RCPT parameters (RFC 1870, 6152, 6531, 3461)

@pytest.mark.parametrize("params", [
    "SIZE=1000", "SIZE=0", "BODY=8BITMIME", "BODY=7BIT", "SMTPUTF8", "RET=FULL", "RET=HDRS",
    "ENVID=abc+2Bdef", "ENVID=QQ291ID", "SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x1",
    "size=10 body=8bitmime",
])
def test_mail_params_accepted(session, params):
    expect(session.cmd("MAIL FROM:<s@client.test> " + params), 250, "2.1.0")
    expect(session.rcpt("alice@example.test"), 250, "2.1.5")


@pytest.mark.parametrize("params", [
    "FOO=BAR", "XYZZY", "SIZE=10 SIZE=20", "BODY=8BITMIME BODY=7BIT", "SMTPUTF8 SMTPUTF8",
    "RET=FULL RET=HDRS", "NOTIFY=NEVER", "ORCPT=rfc822;a@b.test",
])
def test_mail_params_unknown_or_duplicate(session, params):
    expect(session.cmd("MAIL FROM:<s@client.test> " + params), 555, "5.5.4")
    expect(session.mail("s@client.test"), 250, "2.1.0")


@pytest.mark.parametrize("params", [
    "SIZE=abc", "SIZE=", "SIZE=-1", "RET=NONE", "ENVID=a=b", "BODY=9BIT",
])
def test_mail_params_bad_values(session, params):
    expect(session.cmd("MAIL FROM:<s@client.test> " + params), 501, "5.5.4")
    expect(session.mail("s@client.test"), 250, "2.1.0")


@pytest.mark.parametrize("params", [
    "NOTIFY=NEVER", "NOTIFY=SUCCESS", "NOTIFY=SUCCESS,FAILURE,DELAY", "NOTIFY=failure",
    "ORCPT=rfc822;alice@example.test", "ORCPT=rfc822;alice+2Bx@example.test NOTIFY=DELAY",
])
def test_rcpt_params_accepted(session, params):
    expect(session.mail("s@client.test"), 250, "2.1.0")
    expect(session.cmd("RCPT TO:<alice@example.test> " + params), 250, "2.1.5")


@pytest.mark.parametrize("params", [
    "FOO=1", "SIZE=10", "NOTIFY=NEVER NOTIFY=NEVER", "BODY=8BITMIME",
])
def test_rcpt_params_unknown_or_duplicate(session, params):
    expect(session.mail("s@client.test"), 250, "2.1.0")
    expect(session.cmd("RCPT TO:<alice@example.test> " + params), 555, "5.5.4")
    expect(session.rcpt("alice@example.test"), 250, "2.1.5")


@pytest.mark.parametrize("params", [
    "NOTIFY=NEVER,SUCCESS", "NOTIFY=BOGUS", "NOTIFY=", "ORCPT=rfc822", "ORCPT=",
])
def test_rcpt_params_bad_values(session, params):
    expect(session.mail("s@client.test"), 250, "2.1.0")
    expect(session.cmd("RCPT TO:<alice@example.test> " + params), 501, "5.5.4")
    expect(session.rcpt("alice@example.test"), 250, "2.1.5")


# ---------------------------------------------------------------------------
# address syntax (RFC 5321 4.1.2, 4.5.3.1)

@pytest.mark.parametrize("path", [
    "<>", '<"quoted local"@client.test>', '<"a\\"b"@client.test>', "<user@[192.0.2.1]>",
    "<user@[IPv6:2001:db8::1]>", "<@relay.test:user@client.test>",
    "<@a.test,@b.test:user@client.test>", "<first.last+tag@sub.client.test>",
    "<%s@client.test>" % ("l" * 64),
])
def test_mail_from_valid_paths(session, path):
    expect(session.cmd("MAIL FROM:" + path), 250, "2.1.0")


@pytest.mark.parametrize("path", [
    "<bad address@client.test>", "<user@>", "<@client.test>", "<user@@client.test>",
    "<user@-bad-.test>", '<"unterminated@client.test>', "<user@exa mple.test>",
    "<user@[300.1.1.1]>", "<%s@client.test>" % ("l" * 65), "<a..b@client.test>",
    "<user@client..test>", "<user@%s.test>" % ("d" * 250),
])
def test_mail_from_bad_paths(session, path):
    expect(session.cmd("MAIL FROM:" + path), 501, "5.1.7")
    expect(session.mail("s@client.test"), 250, "2.1.0")


@pytest.mark.parametrize("line", [
    "MAIL", "MAIL FROM:", "MAIL FROM", "MAIL TO:<s@client.test>", "MAIL FROM:s@client.test",
    "MAIL FROM:<s@client.test",
])
def test_mail_syntax_errors(session, line):
    r = session.cmd(line)
    assert r.code == 501 and r.enh in ("5.5.4", "5.1.7"), r
    expect(session.mail("s@client.test"), 250, "2.1.0")


@pytest.mark.parametrize("path", [
    "<alice@>", "<@example.test>", "<alice@example..test>", "<ali ce@example.test>",
    "<%s@example.test>" % ("l" * 65), "<>", '<"unterminated@example.test>',
])
def test_rcpt_bad_paths(session, path):
    expect(session.mail("s@client.test"), 250, "2.1.0")
    expect(session.cmd("RCPT TO:" + path), 501, "5.1.3")
    expect(session.rcpt("alice@example.test"), 250, "2.1.5")


@pytest.mark.parametrize("line", [
    "RCPT", "RCPT TO:", "RCPT FROM:<alice@example.test>", "RCPT TO:alice@example.test",
])
def test_rcpt_syntax_errors(session, line):
    expect(session.mail("s@client.test"), 250, "2.1.0")
    r = session.cmd(line)
    assert r.code == 501 and r.enh in ("5.5.4", "5.1.3"), r
    expect(session.rcpt("alice@example.test"), 250, "2.1.5")


def test_rcpt_postmaster_without_domain(fulmar):
    """RFC 5321 4.5.1: <Postmaster> without a domain must be accepted."""
    msg = make_message(subject="to postmaster")
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<Postmaster>"), 250, "2.1.5")
        expect(c.data(msg), 250, "2.0.0")
    split_delivered(wait_for_one(fulmar.maildir("alice")), msg)


@pytest.mark.parametrize("line", ["MAIL FROM:<jöhn@client.test>",
                                  "MAIL FROM:<john@exämple.test>"])
def test_utf8_sender_without_smtputf8(session, line):
    expect(session.cmd(line), 553, "5.6.7")
    expect(session.mail("s@client.test"), 250, "2.1.0")


def test_utf8_recipient_without_smtputf8(session):
    expect(session.mail("s@client.test"), 250, "2.1.0")
    expect(session.cmd("RCPT TO:<dövé@catchall.test>"), 553, "5.6.7")
    expect(session.rcpt("alice@example.test"), 250, "2.1.5")


def test_utf8_with_smtputf8_accepted(session):
    expect(session.cmd("MAIL FROM:<jöhn@exämple.test> SMTPUTF8"), 250, "2.1.0")
    expect(session.cmd("RCPT TO:<dövé@catchall.test>"), 250, "2.1.5")


# ---------------------------------------------------------------------------
# bad octets and long lines in commands


@pytest.mark.parametrize("line", [b"NOOP\x00", b"NO\x00OP", b"MAIL FROM:<a\x01b@client.test>",
                                  b"HELP\x1b[2J", b"\x00", b"RSET\x7f\x08"])
def test_control_characters_in_command(session, line):
    session.send(line + b"\r\n")
    expect(session.reply(), 500, "5.5.2")
    expect(session.cmd("NOOP"), 250, "2.0.0")


def test_command_line_limit(session):
    ok = "NOOP " + "x" * (512 - 2 - 5)
    assert len(ok) + 2 == 512
    expect(session.cmd(ok), 250, "2.0.0")
    expect(session.cmd(ok + "y"), 500, "5.5.2")
    expect(session.cmd("NOOP"), 250, "2.0.0")
    # a long MAIL must not be half-executed
    expect(session.cmd("MAIL FROM:<s@client.test> ENVID=" + "e" * 600), 500, "5.5.2")
    expect(session.mail("s@client.test"), 250, "2.1.0")


def test_very_long_command_line_answered_once(session):
    session.send(b"NOOP " + b"A" * 20000 + b"\r\nNOOP\r\n")
    first = session.reply()
    expect(first, 500, "5.5.2")
    nxt = session.reply()
    expect(nxt, 250, "2.0.0")  # exactly one error reply for the long line
    assert session.pending(0.3) == b""


def test_quit_closes(session):
    expect(session.cmd("QUIT"), 221, "2.0.0")
    assert session.wait_closed(3)


def test_server_side_close_after_quit_even_with_pipelined_junk(session):
    session.send(b"QUIT\r\nNOOP\r\nNOOP\r\n")
    expect(session.reply(), 221, "2.0.0")
    assert session.wait_closed(3)
    assert bytes(session.buf) == b"", "replies after QUIT: %r" % bytes(session.buf)


def test_client_disconnect_mid_transaction_is_harmless(fulmar):
    for _ in range(3):
        c = SMTPClient(fulmar.port)
        c.ehlo()
        c.mail("s@client.test")
        c.rcpt("alice@example.test")
        c.send(b"DATA\r\nSubject: cut\r\n\r\nhalf a mess")
        c.close()
    with SMTPClient(fulmar.port) as c:
        c.ehlo()
        expect(c.cmd("NOOP"), 250, "2.0.0")
    time.sleep(0.5)
    assert maildir_files(fulmar.maildir("alice")) == []
    assert fulmar.queue_list() == []
