"""kill -9 during remote delivery.

Submitting clients send a few hundred messages (AUTH on a submission
listener) for a remote domain whose MX is an aiosmtpd sink on loopback,
while the daemon is killed with SIGKILL at random moments and restarted on
the same state directory. Once the queue is empty:
  - every message that got 250 from Fulmar arrived at the sink at least
    once, byte-exact after Fulmar's Received: line, for each recipient;
  - nothing arrived that Fulmar did not acknowledge (a message whose end of
    data was sent but whose reply was lost in a kill may or may not be
    there; one whose end of data was never sent must not);
  - duplicates (the remote had said 250 and Fulmar died before recording
    it) are counted and printed, and are few: at most one per connection
    in flight per kill;
  - a quarter of the messages also go to a second domain (a second
    destination, so their 250s are journaled at the end of the round);
  - every tenth message also has a recipient the sink refuses (550): the
    sender (alice, a local mailbox) has a bounce for each of those that
    Fulmar acknowledged (a bounce is committed before the failure is
    journaled, so a kill may repeat a bounce but never lose one).

FULMAR_CRASH_OUT_MESSAGES (default 300), FULMAR_CRASH_OUT_KILLS (default 6)
and FULMAR_CRASH_SEED size and seed the run.
"""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "outbound"))

from crash_ledger import Attempt, Load, msgid_re  # noqa: E402
from fulmar_test import crlf  # noqa: E402
from outbound_lib import USER, World, finish_daemons, make_relay, read_dsns  # noqa: E402

MESSAGES = int(os.environ.get("FULMAR_CRASH_OUT_MESSAGES", "300"))
KILLS = int(os.environ.get("FULMAR_CRASH_OUT_KILLS", "6"))
SEED = int(os.environ.get("FULMAR_CRASH_SEED", str(int(time.time()))))
THREADS = 4
CONNS_PER_DEST = 4
KILL_GAP = (0.4, 1.4)
SUBMIT_SECONDS = 6.0          # the submissions are spread over about this long
DOMAIN = "crash.outbound.test"
DOMAIN2 = "crash2.outbound.test"

MSGID_RE = msgid_re("oc")


def failing_rcpt(n, a):
    return "fail.%d.%d@%s" % (n, a, DOMAIN)


def build(rnd, n, a, run_id):
    rcpts = ["u%d@%s" % (n % 7, DOMAIN)]
    if n % 5 == 0:
        rcpts.append("v%d@%s" % (n % 3, DOMAIN))
    if n % 10 == 3:
        rcpts.append(failing_rcpt(n, a))
    if n % 4 == 1:
        # a second destination: its 250s are journaled when the round ends
        rcpts.append("w%d@%s" % (n % 5, DOMAIN2))
    lines = []
    for j in range(rnd.randint(2, 80)):
        if rnd.random() < 0.05:
            lines.append("." * rnd.randint(1, 2) + "dot %d" % j)
        else:
            lines.append("%d.%d.%d %s" % (n, a, j, "".join(
                rnd.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(rnd.randint(1, 70)))))
    text = ("From: <%s>\nTo: <%s>\nSubject: outbound crash %d.%d\n"
            "Message-ID: <oc.%d.%d.%s@client.test>\nDate: Sun, 29 Nov 2026 09:00:00 +0000\n\n"
            "%s\nEND %d.%d\n" % (USER, rcpts[0], n, a, n, a, run_id, "\n".join(lines), n, a))
    return Attempt((n, a), crlf(text), rcpts)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill9_during_remote_delivery(request):
    before = request.session.testsfailed
    world = World()
    daemons = []
    try:
        sink = world.sink("127.0.0.10", data_delay=0.01)
        sink.rcpt_script.default = \
            lambda a, t: "550 5.1.1 no such user" if a.startswith("fail.") else None
        world.route_to(DOMAIN, "127.0.0.10")
        world.route_to(DOMAIN2, "127.0.0.10")
        relay = make_relay(world, {"outbound": {"connections_per_destination": CONNS_PER_DEST,
                                                "messages_per_connection": 50},
                                   "queue": {"retry_first": 1.0, "retry_max": 2.0}})
        daemons.append(relay.d)
        run = Load(relay.d, kills=KILLS, threads=THREADS, seed=SEED, kill_gap=KILL_GAP,
                   messages=MESSAGES, max_attempts=30, retry_gap=(0.05, 0.3),
                   message_gap=(0, 2 * SUBMIT_SECONDS * THREADS / max(MESSAGES, 1)),
                   build=build, connect=lambda tid: relay.connect(), sender=USER)
        t0 = time.monotonic()
        run.start()
        for t in run.clients:
            t.join(90)
        assert not any(t.is_alive() for t in run.clients), "a client did not finish"
        # let the killer hit the deliveries still running, then stop it
        run.killer.join(max(0.0, KILLS * KILL_GAP[1] - (time.monotonic() - t0)))
        run.done.set()
        run.killer.join(35)
        assert not run.errors and not run.unacknowledged, run.errors + run.unacknowledged

        acked = [a for a in run.attempts.values() if a.state == "acked"]
        want = {}
        for a in acked:
            for r in a.rcpts:
                if not r.startswith("fail."):
                    want.setdefault(a.key + (r,), a)

        def arrived():
            got = {}
            for t in sink.transactions():
                m = MSGID_RE.search(t.data)
                if not m:
                    continue
                for r in t.rcpts:
                    got.setdefault((int(m.group(1)), int(m.group(2)), r), []).append(t)
            return got

        want_bounces = {failing_rcpt(*a.key) for a in acked
                        if failing_rcpt(*a.key) in a.rcpts}

        def bounced():
            out = {}
            for d in read_dsns(relay.d.maildir("alice")):
                for r in d.recipients:
                    addr = r.get("final-recipient", "").split(";")[-1].strip()
                    if r.get("action", "").lower() == "failed":
                        out[addr] = out.get(addr, 0) + 1
            return out

        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            got = arrived()
            if all(k in got for k in want) and want_bounces <= set(bounced()) \
                    and relay.d.queue_list() == []:
                break
            time.sleep(0.3)
        time.sleep(1.0)     # anything more that would still come
        got = arrived()
        bounces = bounced()
        queue_left = relay.d.queue_list()
        lost_bounces = sorted(want_bounces - set(bounces))
        dup_bounces = {k: v for k, v in bounces.items() if v > 1}

        missing = sorted(k for k in want if k not in got)
        unacked_arrived = []
        dups = {k: len(v) for k, v in got.items() if len(v) > 1}
        corrupt = []
        for k, txns in got.items():
            a = run.attempts.get(k[:2])
            if a is None or a.state == "unsent" or a.state == "refused":
                unacked_arrived.append((k, a.state if a else "unknown"))
                continue
            for t in txns:
                if not t.data.endswith(a.data):
                    corrupt.append(k)
        ambiguous = [a for a in run.attempts.values() if a.state == "ambiguous"]
        print("outbound crash run seed=%d: %d messages, %d attempts (%d acked, %d ambiguous), "
              "%d kills, %.1f s; %d recipient copies duplicated: %s"
              % (SEED, MESSAGES, len(run.attempts), len(acked), len(ambiguous), run.kills,
                 time.monotonic() - t0, len(dups), sorted(dups.items())[:20]))
        print("bounces: %d wanted, %d repeated: %s" % (len(want_bounces), len(dup_bounces),
                                                       sorted(dup_bounces.items())[:10]))
        assert run.kills == KILLS
        assert not missing, "%d acknowledged messages never reached the sink: %r\nqueue: %r" % (
            len(missing), missing[:10], queue_left[:10])
        assert not unacked_arrived, "arrived without Fulmar's 250: %r" % unacked_arrived[:10]
        assert not corrupt, "changed in transit: %r" % corrupt[:10]
        assert not lost_bounces, "no bounce for %r" % lost_bounces[:10]
        assert queue_left == [], queue_left[:20]
        # per kill at most the transactions in flight (two destinations,
        # CONNS_PER_DEST connections each, two recipients a transaction)
        assert sum(n - 1 for n in dups.values()) <= KILLS * CONNS_PER_DEST * 2 * 2, \
            "too many duplicates for %d kills: %r" % (KILLS, dups)
        assert all(n <= 1 + KILLS for n in dups.values()), dups
    finally:
        finish_daemons(daemons, request, before)
        world.close()
