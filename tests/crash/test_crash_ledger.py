"""The crash ledger (issue 6, item 3) at CI size: local and remote
recipients under load from parallel clients, kill -9 at random moments
and a restart each time, then tests/lib/crash_ledger.py checks that every
acknowledged message was delivered exactly once locally and once or twice
at the sink, that nothing unacknowledged was delivered, and that no queue
file is left in queue/active or moved to corrupt/. bench/crash_ledger.py
runs the same code with 200 kills and more.

FULMAR_LEDGER_KILLS (default 20) and FULMAR_CRASH_SEED size and seed it."""
import os
import time

import pytest

import crash_ledger

KILLS = int(os.environ.get("FULMAR_LEDGER_KILLS", "20"))
SEED = int(os.environ.get("FULMAR_CRASH_SEED", str(int(time.time()))))


@pytest.mark.slow
@pytest.mark.timeout(max(120, KILLS * 3 + 90))
def test_crash_ledger(fulmar_factory, request):
    led = crash_ledger.Ledger(kills=KILLS, threads=6, seed=SEED,
                              make_daemon=lambda **o: fulmar_factory(**o))
    led.run(drain_timeout=60)
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print("\n" + led.report())     # into the CI log, pass or fail
    c = led.counts
    assert c["kills"] == KILLS
    assert c["acked"] > KILLS, "too little load to mean anything: %r" % c
    assert c["delivered_remote"] > 0 and c["delivered_local"] > 0, c
    assert c["lost"] == 0 and c["unacked_delivered"] == 0, led.problems[:20]
    assert c["duplicates_local"] == 0, led.problems[:20]
    assert c["active_left"] == 0 and c["corrupt"] == 0, led.problems[:20]
    assert not led.problems, "%d problems:\n%s" % (len(led.problems),
                                                   "\n".join(led.problems[:20]))
