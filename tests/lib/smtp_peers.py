"""smtp_peers: receiving SMTP servers on loopback for the outbound tests.

Two kinds, both recording what they saw in the same shape (Connection,
Transaction) so that tests can assert on envelopes, message bytes, the
grouping of recipients into transactions and the reuse of connections:

- SMTPSink: a well-behaved server built on aiosmtpd (its own event loop in
  a thread). Scriptable per recipient ({"fail@x": "550 5.1.1 no such
  user"}, a list of replies is used one per attempt, then the default;
  a callable(address, transaction) may return a reply or None), for MAIL
  and after DATA; optional STARTTLS (self-signed certificate) or a refused
  STARTTLS, AUTH PLAIN/LOGIN against one user and password, SIZE,
  SMTPUTF8 on or off, DSN, PIPELINING, a cap of recipients per
  transaction (452 4.5.3 beyond), and slow replies.
- RawServer: a plain threaded socket server running a handler function
  per connection, for hostile behaviour the aiosmtpd server cannot
  produce; RawSMTPServer is a small scripted SMTP server on top of it
  (bare-LF replies, a drop in the middle of DATA, a given greeting or EHLO
  reply, pipelining detection). Handlers for the rest: huge_reply,
  endless_continuation, silent, greeting_reply.

Every peer listens on 127.0.0.0/8 or ::1 only, is a context manager and
has start()/stop(). Only the standard library and aiosmtpd are used.
"""
import asyncio
import logging
import os
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

logging.getLogger("mail.log").setLevel(logging.CRITICAL)

CRLF = b"\r\n"


# ---------------------------------------------------------------------------
# What the peers saw

class Transaction:
    """One MAIL ... DATA exchange. `data` is the message as received
    (dot-unstuffed, CRLF line ends), None when DATA was never completed."""

    def __init__(self, conn, mail_from, mail_options):
        self.conn = conn
        self.conn_id = conn.id
        self.mail_from = mail_from
        self.mail_options = list(mail_options)
        self.rcpts = []                 # accepted recipients, in order
        self.rcpt_options = {}          # address -> [params]
        self.refused = []               # (address, reply) of refused RCPTs
        self.data = None
        self.data_reply = None
        self.accepted = False           # a 2xx was sent after DATA
        self.started = time.time()
        self.finished = None

    @property
    def peer(self):
        return self.conn.peer

    @property
    def helo(self):
        return self.conn.helo

    @property
    def tls(self):
        return self.conn.tls

    def __repr__(self):
        return "<Transaction conn=%d from=<%s> rcpts=%r refused=%r accepted=%s size=%s>" % (
            self.conn_id, self.mail_from, self.rcpts, self.refused, self.accepted,
            None if self.data is None else len(self.data))


class Connection:
    def __init__(self, cid, peer, local):
        self.id = cid
        self.peer = peer
        self.local = local
        self.helo = None                # the EHLO/HELO name
        self.esmtp = None               # True after EHLO, False after HELO
        self.tls = False
        self.tls_version = None
        self.auth_user = None
        self.auth_attempts = []         # (mechanism, login, ok)
        self.commands = []              # (time, line) as received
        self.transactions = []
        self.quit = False
        self.quit_at = None
        self.pipelined = False          # a command arrived before the previous reply
        self.started = time.time()
        self.ended = None
        self.notes = {}                 # handler-specific observations

    def log(self, line):
        self.commands.append((time.time(), line))

    def verbs(self):
        return [c.split(" ", 1)[0].upper() for _, c in self.commands]

    def __repr__(self):
        return "<Connection %d peer=%r helo=%r tls=%s txns=%d quit=%s>" % (
            self.id, self.peer, self.helo, self.tls, len(self.transactions), self.quit)


def _domain(addr):
    return addr.rpartition("@")[2].lower()


class Recorder:
    """Thread-safe record of connections and transactions."""

    def __init__(self):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.connections = []
        self.active = 0
        self.max_active = 0
        self._next = 0

    def open(self, peer, local):
        with self.cond:
            self._next += 1
            c = Connection(self._next, peer, local)
            self.connections.append(c)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.cond.notify_all()
            return c

    def close(self, c):
        with self.cond:
            if c.ended is None:
                c.ended = time.time()
                self.active -= 1
            self.cond.notify_all()

    def changed(self):
        with self.cond:
            self.cond.notify_all()

    def clear(self):
        with self.cond:
            self.connections = [c for c in self.connections if c.ended is None]
            for c in self.connections:
                c.transactions = []
            self.max_active = self.active

    # -- queries --------------------------------------------------------
    def transactions(self, rcpt=None, domain=None, accepted_only=True):
        """Transactions, oldest first, optionally those with a recipient
        (accepted or refused) equal to `rcpt` or in `domain`."""
        with self.lock:
            out = [t for c in self.connections for t in c.transactions]
        out.sort(key=lambda t: t.started)
        if accepted_only:
            out = [t for t in out if t.accepted]

        def match(t):
            addrs = [a.lower() for a in t.rcpts] + [a.lower() for a, _ in t.refused]
            if rcpt is not None and rcpt.lower() not in addrs:
                return False
            if domain is not None and not any(_domain(a) == domain.lower() for a in addrs):
                return False
            return True
        return [t for t in out if match(t)]

    def messages_for(self, rcpt):
        """Message bytes accepted for one recipient (one per transaction)."""
        return [t.data for t in self.transactions(rcpt=rcpt)
                if rcpt.lower() in (a.lower() for a in t.rcpts)]

    def conns(self, with_helo=True):
        with self.lock:
            return [c for c in self.connections if c.helo is not None or not with_helo]

    def connections_for(self, rcpt=None, domain=None):
        ids = {t.conn_id for t in self.transactions(rcpt=rcpt, domain=domain,
                                                     accepted_only=False)}
        with self.lock:
            return [c for c in self.connections if c.id in ids]

    def max_concurrent(self):
        """The most connections open at one time, a connection counting
        from its start to its QUIT (or its end): a new connection that
        opens while the old one's close is still on its way does not
        count twice."""
        with self.lock:
            spans = [(c.started, c.quit_at or c.ended or time.time())
                     for c in self.connections]
        points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans],
                        key=lambda p: (p[0], p[1]))
        cur = best = 0
        for _, d in points:
            cur += d
            best = max(best, cur)
        return best

    def wait(self, pred, timeout=10.0):
        """Wait until pred() is true (re-evaluated whenever something is
        recorded, and every 50 ms); returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            left = deadline - time.monotonic()
            if left <= 0:
                return v
            with self.cond:
                self.cond.wait(min(left, 0.05))

    def wait_transactions(self, n, rcpt=None, domain=None, timeout=10.0):
        """At least n accepted transactions matching; returns them all."""
        return self.wait(lambda: len(self.transactions(rcpt=rcpt, domain=domain)) >= n
                         and self.transactions(rcpt=rcpt, domain=domain), timeout) \
            or self.transactions(rcpt=rcpt, domain=domain)


class _Peer:
    """What every peer offers: a context manager over start()/stop(), and
    shortcuts to its Recorder (self.rec)."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def transactions(self, rcpt=None, domain=None, accepted_only=True):
        return self.rec.transactions(rcpt, domain, accepted_only)

    def wait_transactions(self, n, rcpt=None, domain=None, timeout=10.0):
        return self.rec.wait_transactions(n, rcpt, domain, timeout)


class _Script:
    """A reply chosen per key: str (always), list (one per use; None in it
    or after its end means the default), or callable(key, txn) -> str|None."""

    def __init__(self, spec):
        self.lock = threading.Lock()
        self.spec = {}
        self.default = None
        self.uses = {}
        if isinstance(spec, dict):
            self.spec = {k.lower(): (list(v) if isinstance(v, (list, tuple)) else v)
                         for k, v in spec.items()}
        elif spec is not None:
            self.default = list(spec) if isinstance(spec, (list, tuple)) else spec

    def set(self, key, value):
        with self.lock:
            self.spec[key.lower()] = list(value) if isinstance(value, (list, tuple)) else value

    def pick(self, key, txn=None):
        with self.lock:
            k = (key or "").lower()
            if k in self.spec:
                v = self.spec[k]
            elif self.default is not None:
                v = self.default
                k = None
            else:
                return None
            self.uses[k] = self.uses.get(k, 0) + 1
            if isinstance(v, list):
                return v.pop(0) if v else None
        if callable(v):
            return v(key, txn)
        return v


def _is_ok(reply):
    return reply is None or reply[:1] == "2"


# ---------------------------------------------------------------------------
# A self-signed certificate for STARTTLS peers

_cert_lock = threading.Lock()
_cert_cache = {}


def self_signed_cert(cn="peer.test"):
    """(cert_path, key_path) of a self-signed RSA certificate, made once per
    process with the openssl command."""
    with _cert_lock:
        if cn in _cert_cache:
            return _cert_cache[cn]
        d = tempfile.mkdtemp(prefix="fulmar-peer-cert-")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-days", "3", "-subj", "/CN=" + cn, "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        _cert_cache[cn] = (cert, key)
        return cert, key


def server_tls_context(cn="peer.test"):
    cert, key = self_signed_cert(cn)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


# ---------------------------------------------------------------------------
# The aiosmtpd sink

class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP with our EHLO, MAIL and RCPT (null sender, DSN
    parameters, scripted replies) and a record of everything."""

    def __init__(self, sink, handler, **kw):
        self.sink = sink
        self.rec_conn = None
        self.cur_txn = None
        super().__init__(handler, **kw)

    # -- connection -------------------------------------------------------
    def connection_made(self, transport):
        first = self.rec_conn is None
        super().connection_made(transport)
        if first:
            peer = transport.get_extra_info("peername")
            local = transport.get_extra_info("sockname")
            self.rec = self.sink.rec
            self.rec_conn = self.rec.open(peer, local)
        else:
            # The handshake after STARTTLS finished.
            self.rec_conn.tls = True
            obj = transport.get_extra_info("ssl_object")
            self.rec_conn.tls_version = obj.version() if obj else None
            self.cur_txn = None
            self.sink.rec.changed()

    def connection_lost(self, error):
        if self.rec_conn is not None:
            self.rec.close(self.rec_conn)
        super().connection_lost(error)

    async def push(self, status):
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)
        await super().push(status)

    def _set_post_data_state(self):
        super()._set_post_data_state()
        self.cur_txn = None

    def _note(self, line):
        if self.rec_conn is not None:
            self.rec_conn.log(line)
            # Bytes already waiting: the client did not wait for our reply.
            try:
                if self._reader._buffer:   # noqa: SLF001 - aiosmtpd's own reader
                    self.rec_conn.pipelined = True
            except AttributeError:
                pass

    # -- commands ----------------------------------------------------------
    async def smtp_EHLO(self, hostname):
        self._note("EHLO %s" % (hostname or ""))
        if not hostname:
            return await self.push("501 5.5.4 Syntax: EHLO hostname")
        s = self.sink
        if s.ehlo_reply:
            return await self.push(s.ehlo_reply)
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        self.rec_conn.helo = hostname
        self.rec_conn.esmtp = True
        tls_on = self._tls_protocol is not None
        lines = [s.name]
        if s.pipelining:
            lines.append("PIPELINING")
        if s.size:
            lines.append("SIZE %d" % s.size)
        lines += ["8BITMIME", "ENHANCEDSTATUSCODES"]
        if s.smtputf8:
            lines.append("SMTPUTF8")
        if s.dsn:
            lines.append("DSN")
        if (s.starttls or s.starttls_reply) and not tls_on:
            lines.append("STARTTLS")
        if s.auth and (tls_on or not s.auth_require_tls):
            lines.append("AUTH PLAIN LOGIN")
        lines += list(s.extra_ehlo)
        text = "\r\n".join("250-" + x for x in lines[:-1]) + ("\r\n" if len(lines) > 1 else "")
        await self.push(text + "250 " + lines[-1])

    async def smtp_HELO(self, hostname):
        self._note("HELO %s" % (hostname or ""))
        if not hostname:
            return await self.push("501 5.5.4 Syntax: HELO hostname")
        if self.sink.helo_reply:
            return await self.push(self.sink.helo_reply)
        self._set_rset_state()
        self.session.extended_smtp = False
        self.session.host_name = hostname
        self.rec_conn.helo = hostname
        self.rec_conn.esmtp = False
        await self.push("250 %s" % self.sink.name)

    async def smtp_STARTTLS(self, arg):
        self._note("STARTTLS")
        if self.sink.starttls_reply:
            return await self.push(self.sink.starttls_reply)
        return await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg):
        self._note("AUTH %s" % ((arg or "").split(" ")[0]))
        return await super().smtp_AUTH(arg)

    async def smtp_RSET(self, arg):
        self._note("RSET")
        return await super().smtp_RSET(arg)

    async def smtp_NOOP(self, arg):
        self._note("NOOP")
        return await super().smtp_NOOP(arg)

    async def smtp_QUIT(self, arg):
        self._note("QUIT")
        self.rec_conn.quit = True
        self.rec_conn.quit_at = time.time()
        return await super().smtp_QUIT(arg)

    _PATH_RE = re.compile(r"^\s*<([^<>]*)>(.*)$", re.S)

    def _path(self, keyword, arg):
        arg = self._strip_command_keyword(keyword, arg or "")
        if arg is None:
            return None, None
        m = self._PATH_RE.match(arg)
        if not m:
            return None, None
        return m.group(1), m.group(2).split()

    async def smtp_MAIL(self, arg):
        self._note("MAIL %s" % (arg or ""))
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("MAIL"):
            return
        s = self.sink
        if self.cur_txn is not None:
            return await self.push("503 5.5.1 Error: nested MAIL command")
        addr, params = self._path("FROM:", arg)
        if addr is None:
            return await self.push("501 5.5.4 Syntax: MAIL FROM:<address>")
        if params and not self.session.extended_smtp:
            return await self.push("501 5.5.4 parameters need EHLO")
        opts = {}
        for p in params:
            k, eq, v = p.partition("=")
            opts[k.upper()] = v if eq else True
        known = {"SIZE", "BODY"}
        if s.smtputf8:
            known.add("SMTPUTF8")
        if s.dsn:
            known |= {"RET", "ENVID"}
        if s.auth:
            known.add("AUTH")
        unknown = [k for k in opts if k not in known]
        if unknown:
            return await self.push("555 5.5.4 unsupported MAIL parameter %s" % unknown[0])
        if any(ord(ch) > 127 for ch in addr) and "SMTPUTF8" not in opts:
            return await self.push("553 5.6.7 non-ASCII address without SMTPUTF8")
        if s.size and isinstance(opts.get("SIZE"), str):
            if not opts["SIZE"].isdigit():
                return await self.push("501 5.5.4 bad SIZE")
            if int(opts["SIZE"]) > s.size:
                return await self.push("552 5.3.4 message size exceeds fixed maximum")
        txn = Transaction(self.rec_conn, addr, params)
        reply = s.mail_script.pick(addr, txn)
        if not _is_ok(reply):
            self.rec_conn.notes.setdefault("refused_mail", []).append((addr, reply))
            self.sink.rec.changed()
            return await self.push(reply)
        self.envelope.mail_from = addr
        self.envelope.mail_options.extend(params)
        self.cur_txn = txn
        self.rec_conn.transactions.append(txn)
        self.sink.rec.changed()
        await self.push(reply or "250 2.1.0 Ok")

    async def smtp_RCPT(self, arg):
        self._note("RCPT %s" % (arg or ""))
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("RCPT"):
            return
        s = self.sink
        txn = self.cur_txn
        if txn is None:
            return await self.push("503 5.5.1 Error: need MAIL command")
        addr, params = self._path("TO:", arg)
        if not addr:
            return await self.push("501 5.5.4 Syntax: RCPT TO:<address>")
        known = {"NOTIFY", "ORCPT"} if s.dsn else set()
        for p in params:
            if p.partition("=")[0].upper() not in known:
                return await self.push("555 5.5.4 unsupported RCPT parameter %s" % p)
        if any(ord(ch) > 127 for ch in addr) and "SMTPUTF8" not in \
                [o.upper() for o in txn.mail_options]:
            txn.refused.append((addr, "553"))
            return await self.push("553 5.6.7 non-ASCII address without SMTPUTF8")
        reply = s.rcpt_script.pick(addr, txn)
        if reply is None and s.max_rcpts and len(txn.rcpts) >= s.max_rcpts:
            reply = "452 4.5.3 Too many recipients"
        if not _is_ok(reply):
            txn.refused.append((addr, reply))
            self.sink.rec.changed()
            return await self.push(reply)
        txn.rcpts.append(addr)
        txn.rcpt_options[addr] = params
        self.envelope.rcpt_tos.append(addr)
        self.sink.rec.changed()
        await self.push(reply or "250 2.1.5 Ok")

    async def smtp_DATA(self, arg):
        self._note("DATA")
        return await super().smtp_DATA(arg)


class _SinkHandler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        txn = server.cur_txn
        s = self.sink
        txn.data = bytes(envelope.original_content or b"")
        reply = None
        for a in txn.rcpts:
            reply = s.data_script.pick(a, txn)
            if reply is not None:
                break
        if reply is None:
            reply = s.data_reply.pick(None, txn)
        if reply == "DROP":
            # Took the whole message, then the connection breaks before
            # any reply: the client cannot know.
            txn.data_reply = "DROP"
            txn.finished = time.time()
            s.rec.changed()
            server.transport.abort()
            await asyncio.sleep(3600)
        if reply is None:
            s.seq += 1
            reply = "250 2.0.0 Ok: queued as SINK%d" % s.seq
        txn.data_reply = reply
        txn.accepted = reply[:1] == "2"
        txn.finished = time.time()
        s.rec.changed()
        if s.data_delay:
            await asyncio.sleep(s.data_delay)
        return reply


class _SinkController(Controller):
    def __init__(self, sink, **kw):
        self.sink = sink
        super().__init__(_SinkHandler(sink), **kw)

    def factory(self):
        return _SinkSMTP(self.sink, self.handler, **self.SMTP_kwargs)

    def _trigger_server(self):
        # Connect once so that aiosmtpd builds its protocol object; this
        # connection is not recorded as a client (it sends no EHLO).
        host = self.hostname
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect((host, self.port))
            try:
                s.recv(1024)
            except OSError:
                pass


class SMTPSink(_Peer):
    """A receiving SMTP server (aiosmtpd) recording everything.

    host/port: where to listen (port 0: any free one). name: in the
    greeting and EHLO reply. rcpt_replies / data_replies: scripts keyed by
    recipient; mail_reply / data_reply: scripts for every MAIL / DATA (a
    str, a list used one per transaction, or a callable). starttls: offer
    it (self-signed cert); starttls_reply: offer it but answer this
    instead; require_tls: 530 before STARTTLS. auth=(user, password):
    offer AUTH PLAIN LOGIN (inside TLS only when auth_require_tls), with
    auth_required MAIL needs it. size: SIZE limit (None: not advertised,
    not enforced). smtputf8, dsn, pipelining: advertise those. max_rcpts:
    452 4.5.3 past that many recipients in one transaction. delay: seconds
    before every reply; data_delay: more before the reply after DATA.
    ehlo_reply/helo_reply: answer EHLO/HELO with this instead."""

    def __init__(self, host="127.0.0.1", port=0, name="sink.peer.test", rcpt_replies=None,
                 data_replies=None, mail_reply=None, data_reply=None, starttls=False,
                 starttls_reply=None, require_tls=False, auth=None, auth_required=False,
                 auth_require_tls=None, size=None, smtputf8=True, dsn=False, pipelining=True,
                 max_rcpts=None, delay=0.0, data_delay=0.0, ehlo_reply=None, helo_reply=None,
                 extra_ehlo=(), timeout=60):
        self.host = host
        self.port = port or _free_port(host)
        self.name = name
        self.rcpt_script = _Script(rcpt_replies or {})
        self.data_script = _Script(data_replies or {})
        self.mail_script = _Script(mail_reply)
        self.data_reply = _Script(data_reply)
        self.starttls = starttls
        self.starttls_reply = starttls_reply
        self.require_tls = require_tls
        self.auth = auth
        self.auth_required = auth_required
        self.auth_require_tls = bool(starttls) if auth_require_tls is None else auth_require_tls
        self.size = size
        self.smtputf8 = smtputf8
        self.dsn = dsn
        self.pipelining = pipelining
        self.max_rcpts = max_rcpts
        self.delay = delay
        self.data_delay = data_delay
        self.ehlo_reply = ehlo_reply
        self.helo_reply = helo_reply
        self.extra_ehlo = extra_ehlo
        self.timeout = timeout
        self.seq = 0
        self.rec = Recorder()
        self.controller = None

    # scripting at run time
    def script_rcpt(self, addr, reply):
        self.rcpt_script.set(addr, reply)

    def script_data(self, addr, reply):
        self.data_script.set(addr, reply)

    def _authenticator(self, server, session, envelope, mechanism, auth_data):
        login = password = None
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
        ok = self.auth is not None and (login, password) == tuple(self.auth)
        server.rec_conn.auth_attempts.append((mechanism, login, ok))
        if ok:
            server.rec_conn.auth_user = login
        self.rec.changed()
        return AuthResult(success=ok, handled=False)

    def start(self):
        kw = dict(hostname=self.host, port=self.port, server_hostname=self.name,
                  ident="ESMTP sink", data_size_limit=self.size,
                  enable_SMTPUTF8=self.smtputf8, timeout=self.timeout,
                  auth_require_tls=self.auth_require_tls,
                  auth_required=bool(self.auth and self.auth_required),
                  authenticator=self._authenticator if self.auth else None,
                  decode_data=False)
        if self.starttls or self.require_tls:
            kw["tls_context"] = server_tls_context(self.name)
            kw["require_starttls"] = self.require_tls
        self.controller = _SinkController(self, **kw)
        self.controller.start()
        # Forget aiosmtpd's own start-up probe connection: the record
        # starts with the first real client.
        self.rec = Recorder()
        return self

    def stop(self):
        if self.controller is not None:
            try:
                self.controller.stop()
            finally:
                self.controller = None

    def messages_for(self, rcpt):
        return self.rec.messages_for(rcpt)

    @property
    def connections(self):
        return self.rec.conns()

    @property
    def address(self):
        return "[%s]:%d" % (self.host, self.port) if ":" in self.host else \
            "%s:%d" % (self.host, self.port)


def _free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def common_free_port(hosts, tries=50):
    """A port free on every address in hosts (for peers that must share the
    port Fulmar delivers to: outbound.port)."""
    for _ in range(tries):
        port = _free_port(hosts[0])
        ok = True
        for h in hosts:
            fam = socket.AF_INET6 if ":" in h else socket.AF_INET
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no common free port on %r" % (hosts,))


# ---------------------------------------------------------------------------
# Raw scripted servers (threads, blocking sockets)

class RawConn:
    """One accepted connection handed to a RawServer handler."""

    MAX_LINE = 64 * 1024

    def __init__(self, server, sock, rec_conn):
        self.server = server
        self.sock = sock
        self.rec = rec_conn
        self.buf = bytearray()
        self.closed = False
        self.sent = 0

    @property
    def stopping(self):
        return self.server._stop.is_set()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)
        self.sent += len(data)

    def reply(self, text, line_end=CRLF):
        """A reply of one or more lines ("250-a\\n250 b")."""
        if isinstance(text, str):
            text = text.encode("utf-8")
        self.send(b"".join(ln + line_end for ln in text.split(b"\n")))

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def readline(self, timeout=30.0):
        """One line (with its line end), or None when the client closed or
        nothing came within timeout (or the server is stopping)."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > self.MAX_LINE or self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0 or self.stopping:
                return None
            self._fill(min(left, 0.2))

    def pending(self, wait=0.0):
        """Bytes received and not yet read, after waiting `wait` seconds."""
        if wait:
            end = time.monotonic() + wait
            while time.monotonic() < end and not self.closed:
                self._fill(max(0.001, end - time.monotonic()))
        return bytes(self.buf)

    def read_data(self, timeout=30.0, limit=None):
        """DATA content up to CRLF.CRLF, dot-unstuffed; None on close.
        With limit: stop after that many octets (returns what came)."""
        out = bytearray()
        while True:
            line = self.readline(timeout)
            if line is None:
                return None
            if line == b".\r\n":
                return bytes(out)
            if line.startswith(b"."):
                line = line[1:]
            out += line
            if limit is not None and len(out) >= limit:
                return bytes(out)

    def wait_closed(self, timeout=30.0):
        """Read and discard until the client closes; True if it did."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline and not self.stopping:
            self.buf.clear()
            self._fill(0.2)
        return self.closed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class RawServer(_Peer):
    """Accepts connections on host:port and runs handler(conn) for each in
    its own thread; records connections like SMTPSink."""

    def __init__(self, handler, host="127.0.0.1", port=0, name="raw.peer.test"):
        self.handler = handler
        self.host = host
        self.port = port or _free_port(host)
        self.name = name
        self.rec = Recorder()
        self.errors = []
        self._stop = threading.Event()
        self._threads = []
        self._socks = []
        self.lsock = None

    def start(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.lsock = socket.socket(fam, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((self.host, self.port))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        t = threading.Thread(target=self._accept, daemon=True, name="raw-%d" % self.port)
        t.start()
        self._threads.append(t)
        return self

    def _accept(self):
        while not self._stop.is_set():
            try:
                s, peer = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socks.append(s)
            rc = self.rec.open(peer, s.getsockname())
            conn = RawConn(self, s, rc)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, conn):
        try:
            self.handler(conn)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        except Exception as e:   # noqa: BLE001 - shown by tests that look
            self.errors.append("%s: %s" % (type(e).__name__, e))
        finally:
            conn.close()
            self.rec.close(conn.rec)

    def stop(self):
        self._stop.set()
        if self.lsock is not None:
            self.lsock.close()
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(3)

    @property
    def connections(self):
        return self.rec.conns(with_helo=False)


# -- hostile handlers ---------------------------------------------------------

def greeting_reply(text, then_close=True):
    """Send `text` as the greeting (e.g. "421 4.3.2 busy"), then close
    (or wait for the client to go)."""
    def handler(conn):
        conn.reply(text)
        conn.rec.notes["greeting"] = text
        if not then_close:
            conn.wait_closed(60)
    return handler


def silent(conn):
    """Accept, never say anything; wait until the client gives up."""
    t0 = time.time()
    conn.rec.notes["client_closed"] = conn.wait_closed(120)
    conn.rec.notes["waited"] = time.time() - t0


def huge_reply(at="greeting", size=1024 * 1024):
    """A single reply line of `size` octets, as the greeting or as the
    reply to EHLO. Records how many octets went out before the client
    closed."""
    def handler(conn):
        line = b"x" * size
        try:
            if at == "greeting":
                conn.send(b"220 " + line + CRLF)
            else:
                conn.send(b"220 raw.peer.test ESMTP\r\n")
                if conn.readline(30) is None:
                    return
                conn.send(b"250 " + line + CRLF)
        except OSError:
            pass
        conn.rec.notes["client_closed"] = conn.wait_closed(60)
        conn.rec.notes["sent"] = conn.sent
    return handler


def endless_continuation(at="greeting", max_seconds=60):
    """Continuation lines ("220-more") without end, until the client
    closes or max_seconds pass. Records the lines sent and when the client
    closed."""
    def handler(conn):
        t0 = time.time()
        n = 0
        if at != "greeting":
            conn.send(b"220 raw.peer.test ESMTP\r\n")
            if conn.readline(30) is None:
                return
        code = b"220" if at == "greeting" else b"250"
        chunk = b"".join(code + b"-continuation line %d\r\n" % i for i in range(100))
        conn.sock.settimeout(1.0)
        while time.time() - t0 < max_seconds and not conn.stopping:
            try:
                conn.sock.sendall(chunk)
            except socket.timeout:
                # The client stopped reading; is it still there?
                if not conn._fill(0.01) and conn.closed:
                    break
                continue
            except OSError:
                break
            n += 100
            time.sleep(0.001)
        conn.rec.notes["lines"] = n
        conn.rec.notes["closed_after"] = time.time() - t0
        conn.rec.notes["client_closed"] = time.time() - t0 < max_seconds
    return handler


class RawSMTPServer(RawServer):
    """A small scripted SMTP server on raw sockets.

    greeting: the 220 line(s) ("220 name ESMTP"); ehlo_lines: what EHLO
    answers after the name (["PIPELINING", "8BITMIME"]); ehlo_reply /
    helo_reply: answer EHLO/HELO with this instead (e.g. "500 5.5.1
    unrecognized"); line_end: b"\\n" for bare-LF replies; mail_reply /
    rcpt_reply / data_reply: scripts as for SMTPSink; drop_mid_data: for
    the first N transactions (True: all), read part of the content then
    close; mail_delay: seconds to wait before answering MAIL (and whether
    RCPT arrived meanwhile is recorded as conn.pipelined). starttls: offer
    STARTTLS (self-signed certificate); starttls_inject: bytes sent in
    plain text right behind the 220 to STARTTLS, before the handshake (a
    client must discard them, CVE-2011-0411 from the other side)."""

    def __init__(self, host="127.0.0.1", port=0, name="raw.peer.test", greeting=None,
                 ehlo_lines=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"),
                 ehlo_reply=None, helo_reply=None, line_end=CRLF, mail_reply=None,
                 rcpt_reply=None, data_reply=None, drop_mid_data=0, mail_delay=0.0,
                 starttls=False, starttls_inject=b""):
        super().__init__(self._session, host, port, name)
        self.starttls = starttls
        self.starttls_inject = starttls_inject
        self.greeting = greeting or "220 %s ESMTP raw" % name
        self.ehlo_lines = list(ehlo_lines)
        self.ehlo_reply = ehlo_reply
        self.helo_reply = helo_reply
        self.line_end = line_end
        self.mail_script = _Script(mail_reply)
        self.rcpt_script = _Script(rcpt_reply if isinstance(rcpt_reply, dict) else {})
        self.rcpt_default = None if isinstance(rcpt_reply, dict) else rcpt_reply
        self.data_script = _Script(data_reply)
        self.drop_mid_data = drop_mid_data
        self.drops = 0
        self.mail_delay = mail_delay
        self.seq = 0

    def _session(self, conn):
        le = self.line_end
        c = conn.rec
        conn.reply(self.greeting, le)
        txn = None
        while True:
            line = conn.readline(60)
            if line is None:
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
            c.log(cmd)
            if conn.buf:
                c.pipelined = True
            verb = cmd.split(" ", 1)[0].upper()
            arg = cmd[len(verb):].strip()
            if verb == "EHLO":
                if self.ehlo_reply:
                    conn.reply(self.ehlo_reply, le)
                    continue
                c.helo, c.esmtp = arg, True
                txn = None
                lines = [self.name] + self.ehlo_lines
                if self.starttls and not c.tls:
                    lines.append("STARTTLS")
                conn.reply("\n".join(("250-" if i < len(lines) - 1 else "250 ") + x
                                     for i, x in enumerate(lines)), le)
            elif verb == "HELO":
                if self.helo_reply:
                    conn.reply(self.helo_reply, le)
                    continue
                c.helo, c.esmtp = arg, False
                txn = None
                conn.reply("250 " + self.name, le)
            elif verb == "MAIL":
                m = re.match(r"(?i)FROM:\s*<([^<>]*)>\s*(.*)$", arg)
                if not m:
                    conn.reply("501 5.5.4 syntax", le)
                    continue
                if self.mail_delay:
                    time.sleep(self.mail_delay)
                    if conn.pending(0.01):
                        c.pipelined = True
                        c.notes["pipelined_before_mail_reply"] = True
                t = Transaction(c, m.group(1), m.group(2).split())
                r = self.mail_script.pick(m.group(1), t)
                if not _is_ok(r):
                    conn.reply(r, le)
                    continue
                txn = t
                c.transactions.append(txn)
                self.rec.changed()
                conn.reply(r or "250 2.1.0 Ok", le)
            elif verb == "RCPT":
                m = re.match(r"(?i)TO:\s*<([^<>]*)>\s*(.*)$", arg)
                if txn is None or not m:
                    conn.reply("503 5.5.1 need MAIL" if txn is None else "501 5.5.4 syntax", le)
                    continue
                addr = m.group(1)
                r = self.rcpt_script.pick(addr, txn)
                if r is None:
                    r = self.rcpt_default(addr, txn) if callable(self.rcpt_default) \
                        else self.rcpt_default
                if not _is_ok(r):
                    txn.refused.append((addr, r))
                    conn.reply(r, le)
                    continue
                txn.rcpts.append(addr)
                txn.rcpt_options[addr] = m.group(2).split()
                self.rec.changed()
                conn.reply(r or "250 2.1.5 Ok", le)
            elif verb == "DATA":
                if txn is None or not txn.rcpts:
                    conn.reply("503 5.5.1 need RCPT", le)
                    continue
                conn.reply("354 go ahead", le)
                drop = self.drop_mid_data is True or self.drops < (self.drop_mid_data or 0)
                if drop:
                    self.drops += 1
                    part = conn.read_data(60, limit=10)
                    txn.data_reply = "DROPPED MID-DATA"
                    c.notes["dropped_mid_data"] = part
                    self.rec.changed()
                    return
                data = conn.read_data(60)
                if data is None:
                    return
                txn.data = data
                r = self.data_script.pick(None, txn)
                if r is None:
                    self.seq += 1
                    r = "250 2.0.0 Ok: queued as RAW%d" % self.seq
                txn.data_reply = r
                txn.accepted = r[:1] == "2"
                txn.finished = time.time()
                self.rec.changed()
                conn.reply(r, le)
                txn = None
            elif verb == "STARTTLS" and self.starttls and not c.tls:
                conn.send(b"220 2.0.0 Ready to start TLS" + le + self.starttls_inject)
                conn.buf.clear()
                tls = server_tls_context(self.name).wrap_socket(conn.sock, server_side=True)
                conn.sock = tls
                c.tls, c.tls_version = True, tls.version()
                c.helo = None
                txn = None
                self.rec.changed()
            elif verb == "RSET":
                txn = None
                conn.reply("250 2.0.0 Ok", le)
            elif verb == "NOOP":
                conn.reply("250 2.0.0 Ok", le)
            elif verb == "QUIT":
                c.quit = True
                c.quit_at = time.time()
                conn.reply("221 2.0.0 Bye", le)
                return
            else:
                conn.reply("502 5.5.2 not implemented", le)
