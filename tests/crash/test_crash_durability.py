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

import functools
import os
import time

import pytest

import crash_ledger
from crash_ledger import USERS, count_maildir_copies, msgid_re, wait_drained

MESSAGES = int(os.environ.get("FULMAR_CRASH_MESSAGES", "1000"))
KILLS = int(os.environ.get("FULMAR_CRASH_KILLS", "20"))
SEED = int(os.environ.get("FULMAR_CRASH_SEED", str(int(time.time()))))
THREADS = 8
MAX_ATTEMPTS = 20
KILL_GAP = (0.2, 1.5)
# spread the messages over about the time the kills take
PACE = max(0.0, (KILLS * sum(KILL_GAP) / 2.0) * THREADS / max(MESSAGES, 1) * 1.1)

# Each logical message goes to one of these (the last one to two mailboxes).
TARGETS = [
    ("alice@example.test", ("alice",), ()),
    ("bob@example.test", ("bob",), ()),
    ("carol@example.test", ("carol",), ()),
    ("dave@catchall.test", ("dave",), ()),
    ("someone@catchall.test", ("dave",), ()),
    ("team@example.test", ("alice", "bob"), ()),
]
MSGID_RE = msgid_re("crash")
build = functools.partial(crash_ledger.build, targets=TARGETS, tag="crash", max_lines=300)


@pytest.mark.slow
@pytest.mark.timeout(max(300, KILLS * 6 + MESSAGES // 5 + 120))
@pytest.mark.parametrize("path", ["at_receipt", "queue"])
def test_kill9_durability(fulmar_factory, request, path):
    # Both ways a local message can take: straight into the Maildirs at
    # receipt (the default), or through the queue files and the engine.
    d = fulmar_factory(limits={"connections_per_ip": 1000},
                       local={"deliver_at_receipt": path == "at_receipt"})
    run = crash_ledger.Load(d, kills=KILLS, threads=THREADS, seed=SEED, kill_gap=KILL_GAP,
                            messages=MESSAGES, max_attempts=MAX_ATTEMPTS,
                            retry_gap=(0.02, 0.2), message_gap=(0, 2 * PACE), build=build)
    t0 = time.monotonic()
    run.start()
    for t in run.clients:
        t.join()
    run.done.set()
    run.killer.join()
    send_time = time.monotonic() - t0
    assert not run.errors, "%s\n%s" % (run.errors[0], d.log_tail())
    if not d.running:
        d.start()
    # one more restart so that recovery from the last kill state is tested too
    d.kill9()
    d.start()
    drained = wait_drained(d, 90, USERS)

    attempts = list(run.attempts.values())
    found, delivered, problems = count_maildir_copies(d, USERS, MSGID_RE, run.run_id,
                                                      run.attempts)

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
    assert not run.unacknowledged, run.unacknowledged[:5]
    assert len(acked) == MESSAGES
