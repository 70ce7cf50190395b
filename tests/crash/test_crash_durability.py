"""Durability under kill -9.

Parallel clients send messages while the daemon is killed with SIGKILL at
random moments and restarted on the same state directory. Afterwards,
once the queue has drained:
  - every message that got 250 after DATA is in its Maildir exactly once,
    byte-exact (after the added headers, CRLF converted to LF);
  - a message whose end of data was sent but whose reply was lost in the
    crash is there at most once (all of its recipients, or none);
  - a message whose end of data was never sent, or that got a refusal, is
    not there at all;
  - no delivered file is a fragment.

FULMAR_CRASH_MESSAGES (default 1000) and FULMAR_CRASH_KILLS (default 20)
size the run; FULMAR_CRASH_SEED makes it repeatable.
"""

import os
import random
import re
import threading
import time

import pytest

from crash_ledger import count_maildir_copies
from fulmar_test import ConnectionClosed, SMTPClient, crlf, maildir_files

MESSAGES = int(os.environ.get("FULMAR_CRASH_MESSAGES", "1000"))
KILLS = int(os.environ.get("FULMAR_CRASH_KILLS", "20"))
SEED = int(os.environ.get("FULMAR_CRASH_SEED", str(int(time.time()))))
THREADS = 8
MAX_ATTEMPTS = 20
KILL_GAP = (0.2, 1.5)

# Each logical message goes to one of these (the last one to two mailboxes).
TARGETS = [
    ("alice@example.test", ("alice",)),
    ("bob@example.test", ("bob",)),
    ("carol@example.test", ("carol",)),
    ("dave@catchall.test", ("dave",)),
    ("someone@catchall.test", ("dave",)),
    ("team@example.test", ("alice", "bob")),
]
USERS = ("alice", "bob", "carol", "dave")

MSGID_RE = re.compile(rb"^Message-ID: <crash\.(\d+)\.(\d+)\.(\w+)@client\.test>$", re.M)


class Attempt:
    __slots__ = ("key", "data", "mailboxes", "state", "qid")

    def __init__(self, key, data, mailboxes):
        self.key = key
        self.data = data
        self.mailboxes = mailboxes
        self.state = "incomplete"   # -> ambiguous (end sent) -> acked / refused
        self.qid = None


def build(rnd, n, a, run):
    rcpt, boxes = TARGETS[n % len(TARGETS)]
    lines = []
    for j in range(rnd.randint(3, 300)):
        k = rnd.random()
        if k < 0.05:
            lines.append("." * rnd.randint(1, 3) + "dot line %d" % j)
        elif k < 0.08:
            lines.append("")
        else:
            lines.append("%d.%d.%d " % (n, a, j)
                         + "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789 ")
                                   for _ in range(rnd.randint(1, 90))))
    text = ("From: <client@client.test>\nTo: <%s>\nSubject: crash test %d attempt %d\n"
            "Message-ID: <crash.%d.%d.%s@client.test>\n\n%s\nEND OF MESSAGE %d.%d\n"
            % (rcpt, n, a, n, a, run, "\n".join(lines), n, a))
    return rcpt, crlf(text), boxes


class Run:
    def __init__(self, daemon):
        self.d = daemon
        self.rnd = random.Random(SEED)
        self.run_id = "r%d" % SEED
        self.lock = threading.Lock()
        self.next = 0
        self.attempts = {}
        self.done = threading.Event()
        self.fatal = threading.Event()
        self.kills = 0
        self.restart_errors = []
        self.client_errors = []
        # spread the messages over about the time the kills take
        self.pace = max(0.0, (KILLS * sum(KILL_GAP) / 2.0) * THREADS / max(MESSAGES, 1) * 1.1)

    def take(self):
        with self.lock:
            if self.next >= MESSAGES:
                return None
            n = self.next
            self.next += 1
            return n

    def client(self, tid):
        rnd = random.Random(SEED * 100 + tid)
        c = None
        while not self.fatal.is_set():
            n = self.take()
            if n is None:
                break
            for a in range(MAX_ATTEMPTS):
                if self.fatal.is_set():
                    break
                rcpt, data, boxes = build(rnd, n, a, self.run_id)
                att = Attempt((n, a), data, boxes)
                with self.lock:
                    self.attempts[att.key] = att
                try:
                    if c is None:
                        c = SMTPClient(self.d.port, timeout=15)
                        if c.greeting.code != 220:
                            raise ConnectionClosed()
                        c.ehlo("crash%d.client.test" % tid)
                    if c.mail("client@client.test").code != 250:
                        raise ConnectionClosed()
                    if c.rcpt(rcpt).code != 250:
                        raise ConnectionClosed()
                    if c.cmd("DATA").code != 354:
                        raise ConnectionClosed()
                    payload = re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"
                    cut = len(payload) - 3
                    c.send(payload[:cut])
                    att.state = "ambiguous"
                    c.send(payload[cut:])
                    r = c.reply()
                    if r.code == 250 and r.queue_id:
                        att.state = "acked"
                        att.qid = r.queue_id
                        break
                    att.state = "refused"
                    raise ConnectionClosed()
                except (ConnectionClosed, OSError, AssertionError):
                    # AssertionError: a reply cut in the middle by the kill
                    if c is not None:
                        c.close()
                    c = None
                    time.sleep(rnd.uniform(0.02, 0.2))
            else:
                self.client_errors.append("message %d never acknowledged" % n)
            if self.pace:
                time.sleep(rnd.uniform(0, 2 * self.pace))
        if c is not None:
            try:
                c.quit()
            except (ConnectionClosed, OSError, AssertionError):
                c.close()

    def killer(self):
        while self.kills < KILLS and not self.done.is_set():
            if self.done.wait(self.rnd.uniform(*KILL_GAP)):
                break
            self.d.kill9()
            self.kills += 1
            try:
                self.d.start(timeout=30)
            except Exception as e:   # noqa: BLE001 - reported by the test
                self.restart_errors.append("restart %d failed: %s: %s"
                                           % (self.kills, type(e).__name__, e))
                self.fatal.set()
                return


def wait_drained(d, timeout=90):
    """The queue is empty and the Maildirs stop changing."""
    deadline = time.monotonic() + timeout
    last = None
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        counts = tuple(len(maildir_files(d.maildir(u))) for u in USERS)
        if counts != last:
            last = counts
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since >= 2.0 and d.queue_list() == []:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.timeout(max(300, KILLS * 6 + MESSAGES // 5 + 120))
@pytest.mark.parametrize("path", ["at_receipt", "queue"])
def test_kill9_durability(fulmar_factory, request, path):
    # Both ways a local message can take: straight into the Maildirs at
    # receipt (the default), or through the queue files and the engine.
    d = fulmar_factory(limits={"connections_per_ip": 1000},
                       local={"deliver_at_receipt": path == "at_receipt"})
    run = Run(d)
    t0 = time.monotonic()
    killer = threading.Thread(target=run.killer, name="killer", daemon=True)
    clients = [threading.Thread(target=run.client, args=(i,), name="client%d" % i, daemon=True)
               for i in range(THREADS)]
    killer.start()
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    run.done.set()
    killer.join()
    send_time = time.monotonic() - t0
    assert not run.restart_errors, "%s\n%s" % (run.restart_errors[0], d.log_tail())
    if not d.running:
        d.start()
    # one more restart so that recovery from the last kill state is tested too
    d.kill9()
    d.start()
    drained = wait_drained(d)

    attempts = list(run.attempts.values())
    by_key = {a.key: a for a in attempts}
    found, delivered, problems = count_maildir_copies(d, USERS, MSGID_RE, run.run_id, by_key)

    acked = [a for a in attempts if a.state == "acked"]
    lost = []
    for a in attempts:
        counts = [found.get((a.key, u), 0) for u in a.mailboxes]
        if a.state == "acked":
            if any(c != 1 for c in counts):
                lost.append("acked message %r (queue id %s) found %r times in %r"
                            % (a.key, a.qid, counts, a.mailboxes))
        elif a.state == "ambiguous":
            if any(c > 1 for c in counts) or len(set(counts)) > 1:
                problems.append("unacknowledged message %r found %r times in %r"
                                % (a.key, counts, a.mailboxes))
        else:
            if any(counts):
                problems.append("message %r whose end of data was %s found %r times"
                                % (a.key, "refused" if a.state == "refused" else "never sent",
                                   counts))
    ambiguous_delivered = sum(1 for a in attempts if a.state == "ambiguous"
                              and found.get((a.key, a.mailboxes[0]), 0))
    report = ("crash test: seed=%d messages=%d attempts(sent)=%d acked=%d delivered_files=%d "
              "ambiguous=%d ambiguous_delivered=%d kills=%d send_time=%.1fs drained=%s"
              % (SEED, MESSAGES, len(attempts), len(acked), delivered,
                 sum(a.state == "ambiguous" for a in attempts), ambiguous_delivered,
                 run.kills, send_time, drained))
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print("\n" + report)     # into the CI log, pass or fail
    assert not lost, "%d acknowledged messages lost or duplicated:\n%s" % (
        len(lost), "\n".join(lost[:20]))
    assert not problems, "%d problems:\n%s" % (len(problems), "\n".join(problems[:20]))
    assert drained, "the queue did not drain: %r" % d.queue_list()[:10]
    assert not run.client_errors, run.client_errors[:5]
    assert len(acked) == MESSAGES
