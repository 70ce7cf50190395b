"""outbound_lib: the pieces of the outbound tests (see conftest.py): the
World (a DNS server and peers on one common port), the Relay (a Fulmar
daemon whose outbound engine points at the world, with submit, log and
bounce helpers), log-line and DSN parsing."""
import base64
import email
import email.policy
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import fulmar_test  # noqa: E402
from dns_server import DNSServer  # noqa: E402
from fulmar_test import SMTPClient, expect, make_message  # noqa: E402
from smtp_peers import RawServer, RawSMTPServer, SMTPSink, common_free_port  # noqa: E402

USER = "alice@example.test"
PASSWORD = "outbound tests' password"
HELO_NAME = "out.relay.test"

# Addresses the peers of a module may use (the common port must be free on
# all of them).
PEER_ADDRS = ["127.0.0.%d" % i for i in range(10, 60)] + ["127.0.0.1", "127.0.0.2", "::1"]


# ---------------------------------------------------------------------------
# The world: DNS and peers

class World:
    """A DNS server and the peers of one module, on one common port."""

    def __init__(self):
        self.dns = DNSServer({})
        self.port = common_free_port(PEER_ADDRS)
        self.peers = []

    def mx(self, domain, *hosts):
        """MX records for domain: hosts are (pref, name, address) or
        (pref, name) when the name's address is set elsewhere."""
        self.dns.set(domain, "MX", [(h[0], h[1]) for h in hosts])
        for h in hosts:
            if len(h) > 2 and h[2]:
                self.a(h[1], h[2])

    def a(self, name, *addrs):
        v4 = [a for a in addrs if ":" not in a]
        v6 = [a for a in addrs if ":" in a]
        if v4:
            self.dns.set(name, "A", v4)
        if v6:
            self.dns.set(name, "AAAA", v6)

    def route_to(self, domain, addr):
        """domain -> MX 10 mx.<domain> -> addr."""
        self.mx(domain, (10, "mx." + domain, addr))

    def sink(self, addr, own_port=False, **kw):
        """An SMTPSink on addr, on the common port (or, with own_port, on
        a port of its own, for static routes that name host and port)."""
        name = kw.pop("name", "sink-%s.peer.test" % addr.replace(":", "").replace(".", "-"))
        s = SMTPSink(host=addr, port=0 if own_port else self.port, name=name, **kw).start()
        self.peers.append(s)
        return s

    def raw_smtp(self, addr, own_port=False, **kw):
        s = RawSMTPServer(host=addr, port=0 if own_port else self.port, **kw).start()
        self.peers.append(s)
        return s

    def raw(self, addr, handler):
        s = RawServer(handler, host=addr, port=self.port).start()
        self.peers.append(s)
        return s

    def close(self):
        for p in self.peers:
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        self.dns.close()


# ---------------------------------------------------------------------------
# Log lines

_KV_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def _unquote(v):
    if not v.startswith('"'):
        return v
    v = v[1:-1]
    return re.sub(r'\\(x[0-9a-f]{2}|.)',
                  lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x"
                  and len(m.group(1)) == 3 else m.group(1), v)


def parse_log_line(line):
    """'2026-...Z info event=delivery id=X to=y detail="a b"' -> dict with
    'level' and every key (values unquoted)."""
    parts = line.split(" ", 2)
    d = {"level": parts[1] if len(parts) > 1 else ""}
    for k, v in _KV_RE.findall(line):
        d.setdefault(k, _unquote(v))
    d["_line"] = line
    return d


# ---------------------------------------------------------------------------
# DSN parsing

class DSN:
    """A delivery status notification as delivered into a Maildir, parsed
    with Python's email package."""

    def __init__(self, data, path=None):
        self.raw = data
        self.path = path
        self.msg = email.message_from_bytes(data, policy=email.policy.compat32)
        self.parts = self.msg.get_payload() if self.msg.is_multipart() else []
        self.status_part = next((p for p in self.parts
                                 if p.get_content_type() == "message/delivery-status"), None)
        blocks = self.status_part.get_payload() if self.status_part is not None else []
        self.per_message = self._fields(blocks[0]) if blocks else {}
        self.recipients = [self._fields(b) for b in blocks[1:]]

    @staticmethod
    def _fields(block):
        """Field names lower-cased, folded values unfolded."""
        return {k.lower(): re.sub(r"\r?\n(?=[ \t])", "", v) for k, v in block.items()}

    @property
    def is_dsn(self):
        return (self.msg.get_content_type() == "multipart/report"
                and self.status_part is not None)

    def recipient(self, addr):
        for r in self.recipients:
            if addr.lower() in r.get("final-recipient", "").lower():
                return r
        return None

    @property
    def actions(self):
        return [r.get("action", "").lower() for r in self.recipients]

    def returned(self):
        """The third part: message/rfc822 or text/rfc822-headers."""
        return self.parts[2] if len(self.parts) > 2 else None

    def __repr__(self):
        return "<DSN %s %s>" % (self.msg.get("Subject"), self.recipients)


def read_dsns(maildir):
    out = []
    for p in fulmar_test.maildir_files(maildir):
        data = fulmar_test.read_file(p)
        try:
            d = DSN(data, p)
        except Exception:  # noqa: BLE001 - not a DSN
            continue
        if d.is_dsn:
            out.append(d)
    return out


# ---------------------------------------------------------------------------
# The relay daemon

class Relay:
    """A Fulmar daemon with the outbound engine pointed at the world."""

    def __init__(self, daemon, world):
        self.d = daemon
        self.world = world
        self.sub_port = daemon.sub_port

    # -- submitting ---------------------------------------------------------
    def connect(self):
        c = SMTPClient(self.sub_port)
        c.ehlo("submit.client.test")
        cred = base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()
        expect(c.cmd("AUTH PLAIN " + cred), 235)
        return c

    def submit(self, rcpts, msg=None, sender=USER, mail_params="", rcpt_params=None,
               subject=None, client=None):
        """One message from `sender` to `rcpts` (rcpt_params: one string for
        all, or {rcpt: params}); returns (queue id, message bytes)."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        if msg is None:
            msg = make_message(subject=subject or "outbound test", sender=sender or USER,
                               to=rcpts[0], body="Hello %s.\n.leading dot\n" % rcpts[0])
        c = client or self.connect()
        try:
            expect(c.mail(sender, mail_params), 250)
            for r in rcpts:
                p = rcpt_params.get(r, "") if isinstance(rcpt_params, dict) else (rcpt_params or "")
                expect(c.rcpt(r, p), 250)
            rep = expect(c.data(msg), 250)
            assert rep.queue_id, rep
        finally:
            if client is None:
                c.quit()
        return rep.queue_id, msg

    # -- the log ------------------------------------------------------------
    def events(self, event=None, **match):
        out = []
        for ln in self.d.log_text().splitlines():
            if "event=" not in ln:
                continue
            e = parse_log_line(ln)
            if event is not None and e.get("event") != event:
                continue
            if all((e.get(k) or "").lower() == str(v).lower() for k, v in match.items()):
                out.append(e)
        return out

    def deliveries(self, **match):
        return self.events("delivery", **match)

    def wait_events(self, event, n=1, timeout=10.0, **match):
        return fulmar_test.wait_until(lambda: len(self.events(event, **match)) >= n
                                      and self.events(event, **match), timeout) \
            or self.events(event, **match)

    def wait_delivery(self, timeout=10.0, n=1, **match):
        """The first n delivery lines matching (e.g. to=x, status=sent);
        fails with the log tail when they do not come."""
        ev = self.wait_events("delivery", n, timeout, **match)
        assert len(ev) >= n, "no %d delivery line(s) with %r within %.0f s; log:\n%s" % (
            n, match, timeout, self.d.log_tail(40))
        return ev

    # -- the queue ----------------------------------------------------------
    def queue_text(self):
        return "\n".join(self.d.queue_list())

    def wait_gone(self, qid, timeout=10.0):
        ok = fulmar_test.wait_until(lambda: qid not in self.queue_text(), timeout, 0.1)
        assert ok, "message %s still queued:\n%s\nlog:\n%s" % (qid, self.queue_text(),
                                                               self.d.log_tail(30))

    # -- bounces ------------------------------------------------------------
    def dsns(self, rcpt=None, action=None):
        out = []
        for d in read_dsns(self.d.maildir("alice")):
            if rcpt is not None and d.recipient(rcpt) is None:
                continue
            if action is not None and action not in d.actions:
                continue
            out.append(d)
        return out

    def wait_dsn(self, rcpt, action="failed", timeout=10.0):
        got = fulmar_test.wait_until(lambda: self.dsns(rcpt, action), timeout, 0.1)
        assert got, "no %s DSN for %s within %.0f s; log:\n%s" % (
            action, rcpt, timeout, self.d.log_tail(40))
        return got[0]


def relay_config(world, extra=None):
    """The overrides of a relay daemon: resolver, outbound port, loopback
    allowed, short timeouts and retries, a submission listener."""
    cfg = {
        "dns": {"resolvers": world.dns.address, "timeout": 1.0, "reverse_lookups": False},
        "outbound": {
            "port": world.port,
            "allow_loopback": True,
            "helo_name": HELO_NAME,
            "idle_time": 2.0,
            "messages_per_connection": 3,
            "connect_timeout": 2.0,
            "greeting_timeout": 2.0,
            "command_timeout": 2.0,
            "data_timeout": 2.0,
            "data_done_timeout": 3.0,
        },
        "queue": {"retry_first": 1.0, "retry_max": 4.0},
        "limits": {"connections_per_ip": 500},
    }
    if extra:
        fulmar_test.deep_merge(cfg, extra)
    return cfg


def make_relay(world, extra=None, start=True, senders=()):
    """A daemon (not yet registered for teardown) with a plain-text
    submission listener and alice as a user."""
    d = fulmar_test.Daemon(relay_config(world, extra))
    users = os.path.join(d.root, "users")
    r = subprocess.run([d.bin, "user", "add", "--users-file", users, USER],
                       input=(PASSWORD + "\n").encode(), capture_output=True, env=d.env())
    assert r.returncode == 0, r.stderr
    os.chmod(users, 0o644)
    d.sub_port = fulmar_test.free_port()
    d.config["listeners"].append({"address": "127.0.0.1", "port": d.sub_port,
                                  "role": "submission", "auth_plaintext": True})
    d.config["auth"] = {"users_file": users,
                        "senders": [{"user": USER, "addresses": [USER] + list(senders)}]}
    d.write_config()
    if start:
        d.start()
    return Relay(d, world)


def finish_daemons(daemons, request, failed_before):
    """Stop daemons; report sanitizer findings and unclean exits; keep the
    directories when a test failed (or FULMAR_KEEP_TMP=1)."""
    problems = []
    for d in daemons:
        d.stop()
        for rep in d.sanitizer_reports():
            problems.append("sanitizer report from the daemon (%s):\n%s" % (d.root, rep))
        for u in d.unclean:
            problems.append("daemon %s %s" % (d.root, u))
    failed = request.session.testsfailed > failed_before
    for d in daemons:
        if failed or problems:
            print("---- daemon log %s (tail) ----\n%s" % (d.root, d.log_tail(60)))
        elif os.environ.get("FULMAR_KEEP_TMP") != "1":
            d.cleanup()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def wait_until(pred, timeout=10.0, interval=0.05):
    return fulmar_test.wait_until(pred, timeout, interval)


def unique(prefix):
    """A local part unique in this run."""
    unique.n += 1
    return "%s-%d-%d" % (prefix, os.getpid() % 10000, unique.n)


unique.n = 0
