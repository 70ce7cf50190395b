"""
crash_ledger: kill -9 a loaded Fulmar N times and check the ledger.

Parallel clients send messages to local mailboxes and to a remote domain
(a static route to an aiosmtpd sink, smtp_peers.SMTPSink), some to both,
while a killer thread SIGKILLs the daemon at random moments and restarts it
on the same state directory. Each attempt is recorded with what the client
saw: "unsent" (end of data never sent), "ambiguous" (end of data sent, the
reply lost in the kill), "acked" (250 with a queue id) or "refused". After
a last kill and restart, once the queue has drained, the ledger checks:

  - every acked message is in each of its Maildirs exactly once, byte-exact
    after the added header fields, and at the sink once or twice for each
    remote recipient (twice: the sink had said 250 and Fulmar died before
    journaling it);
  - an ambiguous one is in its Maildirs at most once, at the sink at most
    twice; an unsent or refused one is nowhere;
  - nothing is a fragment, nothing is in the wrong mailbox;
  - STATE_DIR/queue/active is empty once the daemon is stopped cleanly
    (a corrupt file would stay there or be moved to corrupt/, whose
    contents are reported).

Used by bench/crash_ledger.py (N = 200 kills and more) and by
tests/crash/test_crash_ledger.py (a CI-sized run). Its pieces (Attempt,
build, Load: the clients and the killer, wait_drained,
count_maildir_copies) also serve tests/crash/test_crash_durability.py
and test_crash_outbound.py. Standard library plus aiosmtpd (through
smtp_peers).
"""

import os
import random
import re
import threading
import time

import fulmar_test
from fulmar_test import (ConnectionClosed, SMTPClient, crlf, maildir_files,
                         queue_dir_messages, read_file, to_lf)
from smtp_peers import SMTPSink

REMOTE_DOMAIN = "ledger.remote.test"
USERS = ("alice", "bob", "carol", "dave")

# (local recipient or None, its mailboxes, remote recipients)
TARGETS = [
    ("alice@example.test", ("alice",), ()),
    (None, (), ("r1@" + REMOTE_DOMAIN,)),
    ("bob@example.test", ("bob",), ("r2@" + REMOTE_DOMAIN,)),
    ("team@example.test", ("alice", "bob"), ()),
    ("someone@catchall.test", ("dave",), ("r3@" + REMOTE_DOMAIN, "r4@" + REMOTE_DOMAIN)),
    (None, (), ("r5@" + REMOTE_DOMAIN,)),
    ("carol@example.test", ("carol",), ()),
]


def msgid_re(tag):
    """The Message-ID field of build's messages with that tag: groups
    message number, attempt number, run id."""
    return re.compile(rb"^Message-ID: <" + re.escape(tag.encode())
                      + rb"\.(\d+)\.(\d+)\.(\w+)@client\.test>\r?$", re.M)


MSGID_RE = msgid_re("ledger")


class Attempt:
    """One try (a) at sending message n: key (n, a), the bytes, the
    envelope recipients, the local mailboxes and remote recipients it is
    for, how far it got (state) and the queue id of its 250."""
    __slots__ = ("key", "data", "rcpts", "mailboxes", "remote", "state", "qid")

    def __init__(self, key, data, rcpts, mailboxes=(), remote=()):
        self.key = key
        self.data = data
        self.rcpts = rcpts
        self.mailboxes = mailboxes
        self.remote = remote
        self.state = "unsent"       # -> ambiguous (end sent) -> acked / refused
        self.qid = None


def build(rnd, n, a, run_id, targets=TARGETS, tag="ledger", max_lines=200):
    """Attempt a of message n, for targets[n % len(targets)] ((local
    recipient or None, its mailboxes, remote recipients)): 3 to max_lines
    random lines (dot lines and empty ones among them), the Message-ID
    <tag.n.a.run_id@client.test> (msgid_re(tag) finds it)."""
    local, boxes, remote = targets[n % len(targets)]
    rcpts = ([local] if local else []) + list(remote)
    lines = []
    for j in range(rnd.randint(3, max_lines)):
        k = rnd.random()
        if k < 0.05:
            lines.append("." * rnd.randint(1, 3) + "dot line %d" % j)
        elif k < 0.08:
            lines.append("")
        else:
            lines.append("%d.%d.%d " % (n, a, j) + "".join(
                rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789 ")
                for _ in range(rnd.randint(1, 90))))
    text = ("From: <client@client.test>\nTo: <%s>\nSubject: %s %d attempt %d\n"
            "Message-ID: <%s.%d.%d.%s@client.test>\n"
            "Date: Sun, 29 Nov 2026 09:00:00 +0000\n\n%s\nEND OF MESSAGE %d.%d\n"
            % (rcpts[0], tag, n, a, tag, n, a, run_id, "\n".join(lines), n, a))
    return Attempt((n, a), crlf(text), rcpts, boxes, remote)


def daemon_overrides(sink):
    return {
        "server": {"relay_networks": ["127.0.0.0/8"]},
        "limits": {"connections_per_ip": 1000},
        "routes": [{"domain": REMOTE_DOMAIN, "host": "127.0.0.1", "port": sink.port}],
        "outbound": {"tls": "none", "allow_loopback": True, "connect_timeout": 2.0,
                     "greeting_timeout": 2.0, "command_timeout": 2.0,
                     "data_timeout": 2.0, "data_done_timeout": 3.0, "idle_time": 1.0,
                     "connections_per_destination": 4},
        "queue": {"retry_first": 1.0, "retry_max": 2.0},
    }


def count_maildir_copies(d, users, msgid_re, run_id, by_key):
    """The copies of a crash run's messages in the users' Maildirs:
    ({(key, user): copies}, files read, problems). A file must carry one
    Message-ID of this run (msgid_re: groups thread, number, run id), be a
    known attempt of by_key ({(thread, number): attempt with .data and
    .mailboxes}), end with its content byte for byte, and be in one of
    its mailboxes."""
    copies = {}
    files = 0
    problems = []
    for u in users:
        for path in maildir_files(d.maildir(u)):
            data = read_file(path)
            files += 1
            ids = msgid_re.findall(data)
            if len(ids) != 1 or ids[0][2].decode() != run_id:
                problems.append("%s: no single Message-ID of this run (fragment? bounce?): %r"
                                % (path, data[:300]))
                continue
            key = (int(ids[0][0]), int(ids[0][1]))
            att = by_key.get(key)
            if att is None:
                problems.append("%s: unknown message %r" % (path, key))
                continue
            if not data.endswith(to_lf(att.data)):
                problems.append("%s: message %r is not byte-exact (fragment?)" % (path, key))
            if u not in att.mailboxes:
                problems.append("%s: message %r in the wrong mailbox" % (path, key))
            copies[(key, u)] = copies.get((key, u), 0) + 1
    return copies, files, problems


def wait_drained(d, timeout, users=USERS, sink=None):
    """True once d's queue is empty and nothing has arrived (in the users'
    Maildirs, at the sink) for 2 s; False after timeout seconds."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = tuple(len(maildir_files(d.maildir(u))) for u in users)
        if sink is not None:
            now += (len(sink.transactions(accepted_only=False)),)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 2.0 and d.queue_list() == []:
            return True
        time.sleep(0.2)
    return False


class Load:
    """Parallel clients sending to the daemon d while a killer thread
    SIGKILLs it at random moments and restarts it on the same state
    directory.

    Each client (threads of them) takes the next message number (until
    `messages` are taken, or forever) and sends attempts at it, made by
    build(rnd, n, a, run_id) -> Attempt, until one gets 250 with a queue
    id: at most max_attempts (a message still without one goes in
    .unacknowledged), retry_gap seconds apart, from sender, on a
    connection kept from message to message (connect(tid) -> an
    SMTPClient ready for MAIL; default: the mx port, EHLO) and made again
    after a failure. Every attempt is in .attempts, by key, with the
    state it reached. A client rests message_gap seconds between messages
    and stops once fatal or done is set (done: after its current message).

    The killer kills and restarts d kills times, kill_gap seconds apart,
    and stops early once done is set; a restart that fails goes in .errors
    and sets fatal. start() starts .killer and .clients."""

    def __init__(self, d=None, kills=20, threads=8, seed=None, kill_gap=(0.05, 0.6),
                 messages=None, max_attempts=1000, retry_gap=(0.01, 0.1),
                 message_gap=(0, 0.02), build=build, connect=None,
                 sender="client@client.test", log=None):
        self.d = d
        self.kills_wanted = kills
        self.threads = threads
        self.seed = int(time.time()) if seed is None else seed
        self.kill_gap = kill_gap
        self.messages = messages
        self.max_attempts = max_attempts
        self.retry_gap = retry_gap
        self.message_gap = message_gap
        self.build = build
        self.connect = connect or self._connect
        self.sender = sender
        self.log = log or (lambda s: None)
        self.rnd = random.Random(self.seed)
        self.run_id = "r%d" % self.seed
        self.lock = threading.Lock()
        self.next = 0
        self.attempts = {}
        self.done = threading.Event()
        self.fatal = threading.Event()
        self.kills = 0
        self.errors = []
        self.unacknowledged = []
        self.killer = None
        self.clients = []

    def start(self):
        self.killer = threading.Thread(target=self._killer, name="killer", daemon=True)
        self.clients = [threading.Thread(target=self._client, args=(i,), name="client%d" % i,
                                         daemon=True) for i in range(self.threads)]
        self.killer.start()
        for t in self.clients:
            t.start()

    # -- the clients --------------------------------------------------------
    def _take(self):
        with self.lock:
            if self.messages is not None and self.next >= self.messages:
                return None
            self.next += 1
            return self.next - 1

    def _connect(self, tid):
        c = SMTPClient(self.d.port, timeout=15)
        if c.greeting.code != 220:
            c.close()
            raise ConnectionClosed()
        c.ehlo("load%d.client.test" % tid)
        return c

    def _send(self, c, att):
        """One transaction of att on c; ConnectionClosed unless acked."""
        if c.mail(self.sender).code != 250:
            raise ConnectionClosed()
        for r in att.rcpts:
            if c.rcpt(r).code != 250:
                raise ConnectionClosed()
        if c.cmd("DATA").code != 354:
            raise ConnectionClosed()
        payload = re.sub(rb"(?m)^\.", b"..", att.data) + b".\r\n"
        c.send(payload[:-3])
        att.state = "ambiguous"
        c.send(payload[-3:])
        r = c.reply()
        if r.code == 250 and r.queue_id:
            att.state, att.qid = "acked", r.queue_id
            return
        att.state = "refused"
        raise ConnectionClosed()

    def _client(self, tid):
        rnd = random.Random(self.seed * 100 + tid)
        c = None
        while not self.done.is_set() and not self.fatal.is_set():
            n = self._take()
            if n is None:
                break
            for a in range(self.max_attempts):
                if self.fatal.is_set() or (self.done.is_set() and a > 0):
                    break
                att = self.build(rnd, n, a, self.run_id)
                with self.lock:
                    self.attempts[att.key] = att
                try:
                    if c is None:
                        c = self.connect(tid)
                    self._send(c, att)
                    break
                except (ConnectionClosed, OSError, AssertionError):
                    # AssertionError: a reply cut in the middle by the kill
                    if c is not None:
                        c.close()
                    c = None
                    time.sleep(rnd.uniform(*self.retry_gap))
            else:
                with self.lock:
                    self.unacknowledged.append("message %d never acknowledged" % n)
            time.sleep(rnd.uniform(*self.message_gap))
        if c is not None:
            try:
                c.quit()
            except (ConnectionClosed, OSError, AssertionError):
                c.close()

    # -- the killer ---------------------------------------------------------
    def _killer(self):
        while self.kills < self.kills_wanted and not self.fatal.is_set():
            if self.done.wait(self.rnd.uniform(*self.kill_gap)):
                break
            self.d.kill9()
            self.kills += 1
            if self.kills % 25 == 0:
                self.log("%d kills, %d attempts" % (self.kills, len(self.attempts)))
            try:
                self.d.start(timeout=30)
            except Exception as e:  # noqa: BLE001 - reported by the caller
                self.errors.append("restart %d failed: %s: %s" % (self.kills, type(e).__name__, e))
                self.fatal.set()
                return


class Ledger(Load):
    """One run. make_daemon(**overrides) -> a started fulmar_test.Daemon
    (the CI test passes its fulmar_factory, so sanitizer reports fail it)."""

    def __init__(self, kills=200, threads=8, seed=None, kill_gap=(0.05, 0.6),
                 make_daemon=None, log=None):
        super().__init__(kills=kills, threads=threads, seed=seed, kill_gap=kill_gap, log=log)
        self.make_daemon = make_daemon or (lambda **o: fulmar_test.Daemon(o).start())
        self.sink = None
        self.counts = None
        self.problems = []

    # -- the run ------------------------------------------------------------
    def run(self, drain_timeout=120.0):
        self.sink = SMTPSink(host="127.0.0.1", name="sink.ledger.test").start()
        try:
            self.d = self.make_daemon(**daemon_overrides(self.sink))
            t0 = time.monotonic()
            self.start()
            self.killer.join()
            self.done.set()
            for t in self.clients:
                t.join(60)
            self.send_time = time.monotonic() - t0
            if not self.fatal.is_set():
                # recovery from whatever the last client left half-done
                self.d.kill9()
                self.d.start(timeout=30)
                self.drained = wait_drained(self.d, drain_timeout, USERS, self.sink)
                # A clean stop removes the unused prepared queue files, so
                # whatever is left in active/ is a message (or a leak).
                self.d.stop()
            else:
                self.drained = False
            self.check()
            return self.counts
        finally:
            self.sink.stop()

    # -- the ledger ---------------------------------------------------------
    def queue_dirs(self):
        """Every file left in active/ and corrupt/ (the daemon is stopped)."""
        return (queue_dir_messages(self.d.state_dir, "active", skip_prepared=False),
                queue_dir_messages(self.d.state_dir, "corrupt", skip_prepared=False))

    def check(self):
        by_key = self.attempts
        problems = []
        local, files_local, found_problems = count_maildir_copies(
            self.d, USERS, MSGID_RE, self.run_id, by_key)
        problems += found_problems
        remote = {}     # (key, rcpt) -> count
        copies_remote = 0
        for t in self.sink.transactions():
            m = MSGID_RE.search(t.data)
            if not m or m.group(3).decode() != self.run_id:
                problems.append("sink: a transaction without a Message-ID of this run: %r"
                                % t.data[:300])
                continue
            key = (int(m.group(1)), int(m.group(2)))
            att = by_key.get(key)
            if att is None:
                problems.append("sink: unknown message %r" % (key,))
                continue
            if not t.data.endswith(att.data):
                problems.append("sink: message %r changed in transit" % (key,))
            for r in t.rcpts:
                if r not in att.remote:
                    problems.append("sink: message %r for %s, not one of its recipients"
                                    % (key, r))
                remote[(key, r)] = remote.get((key, r), 0) + 1
                copies_remote += 1

        c = dict(sent=0, acked=0, ambiguous=0, refused=0, kills=self.kills,
                 delivered_local=files_local, delivered_remote=copies_remote,
                 duplicates_local=0, duplicates_remote=0, lost=0,
                 unacked_delivered=0, ambiguous_delivered=0)
        for a in by_key.values():
            if a.state != "unsent":
                c["sent"] += 1
            c[a.state] = c.get(a.state, 0) + 1
            nl = [local.get((a.key, u), 0) for u in a.mailboxes]
            nr = [remote.get((a.key, r), 0) for r in a.remote]
            c["duplicates_local"] += sum(max(0, n - 1) for n in nl)
            c["duplicates_remote"] += sum(max(0, n - 1) for n in nr)
            if a.state == "acked":
                if any(n == 0 for n in nl + nr):
                    c["lost"] += 1
                    problems.append("acked message %r (queue id %s) lost: local %r remote %r"
                                    % (a.key, a.qid, nl, nr))
                if any(n > 1 for n in nl):
                    problems.append("acked message %r (queue id %s) delivered %r times locally"
                                    % (a.key, a.qid, nl))
                if any(n > 2 for n in nr):
                    problems.append("acked message %r (queue id %s) at the sink %r times"
                                    % (a.key, a.qid, nr))
            elif a.state == "ambiguous":
                if any(nl + nr):
                    c["ambiguous_delivered"] += 1
                if any(n > 1 for n in nl) or any(n > 2 for n in nr):
                    problems.append("unacknowledged message %r delivered local %r remote %r"
                                    % (a.key, nl, nr))
            elif any(nl + nr):
                c["unacked_delivered"] += 1
                problems.append("message %r (%s) delivered local %r remote %r"
                                % (a.key, "end of data never sent" if a.state == "unsent"
                                   else "refused", nl, nr))
        active, corrupt = self.queue_dirs()
        c["active_left"] = len(active)
        c["corrupt"] = len(corrupt)
        if active:
            problems.append("left in queue/active: %r" % active[:10])
        if corrupt:
            problems.append("in queue/corrupt: %r" % corrupt[:10])
        if not self.drained:
            problems.append("the queue did not drain: %r" % self.d.queue_list()[:10])
        problems += self.errors
        self.counts = c
        self.problems = problems
        return c

    def report(self):
        c = self.counts
        return ("crash ledger: seed=%d kills=%d sent=%d acked=%d ambiguous=%d refused=%d "
                "delivered_local=%d delivered_remote=%d duplicates_local=%d "
                "duplicates_remote=%d lost=%d unacked_delivered=%d ambiguous_delivered=%d "
                "active_left=%d corrupt=%d send_time=%.1fs"
                % (self.seed, c["kills"], c["sent"], c["acked"], c["ambiguous"], c["refused"],
                   c["delivered_local"], c["delivered_remote"], c["duplicates_local"],
                   c["duplicates_remote"], c["lost"], c["unacked_delivered"],
                   c["ambiguous_delivered"], c["active_left"], c["corrupt"],
                   getattr(self, "send_time", 0.0)))
