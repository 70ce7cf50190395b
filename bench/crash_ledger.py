#!/usr/bin/python3
"""
bench/crash_ledger.py: the crash ledger of issue 6 at full size.

Parallel clients send mail to local mailboxes and to a remote domain (an
aiosmtpd sink behind a static route) while the daemon is killed with
SIGKILL --kills times (default 200) at random moments and restarted; then
the ledger is checked (tests/lib/crash_ledger.py says what) and its counts
printed. Exit status 0 when the ledger holds, 1 when it does not.

  bench/crash_ledger.py [--kills N] [--threads N] [--seed S] [--bin PATH] [--keep]

--bin defaults to $FULMAR_BIN, else build-asan/fulmar; a release build
(RelWithDebInfo) restarts faster, so 200 kills take a few minutes.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--bin", default=None, help="the fulmar binary")
    ap.add_argument("--keep", action="store_true", help="keep the daemon's directory")
    args = ap.parse_args()
    if args.bin:
        os.environ["FULMAR_BIN"] = os.path.abspath(args.bin)

    import crash_ledger   # after FULMAR_BIN is set
    import fulmar_test
    fulmar_test.ensure_run_user()

    t0 = time.monotonic()
    led = crash_ledger.Ledger(kills=args.kills, threads=args.threads, seed=args.seed,
                              log=lambda s: print("  " + s, flush=True))
    print("crash ledger: %d kills, %d clients, seed %d, binary %s"
          % (args.kills, args.threads, led.seed, fulmar_test.fulmar_bin()), flush=True)
    try:
        c = led.run()
    finally:
        if led.d is not None:
            led.d.stop()
    c = led.counts
    print("messages sent (end of data sent):   %d" % c["sent"])
    print("acked (250):                        %d" % c["acked"])
    print("reply lost in a kill (ambiguous):   %d (%d of them delivered)"
          % (c["ambiguous"], c["ambiguous_delivered"]))
    print("refused:                            %d" % c["refused"])
    print("kills:                              %d" % c["kills"])
    print("delivered local (Maildir files):    %d" % c["delivered_local"])
    print("delivered remote (sink copies):     %d" % c["delivered_remote"])
    print("duplicates local / remote:          %d / %d"
          % (c["duplicates_local"], c["duplicates_remote"]))
    print("lost (acked, not delivered):        %d" % c["lost"])
    print("unacked but delivered:              %d" % c["unacked_delivered"])
    print("left in queue/active / in corrupt/: %d / %d" % (c["active_left"], c["corrupt"]))
    print("time: %.0f s (sending and killing %.0f s)" % (time.monotonic() - t0, led.send_time))
    print(led.report())
    for p in led.problems[:30]:
        print("PROBLEM: " + p)
    reports = led.d.sanitizer_reports() if led.d is not None else []
    for r in reports[:3]:
        print("SANITIZER: " + r)
    ok = not led.problems and not reports
    if led.d is not None:
        if args.keep or not ok:
            print("daemon directory kept: %s" % led.d.root)
        else:
            led.d.cleanup()
    print("ledger %s" % ("holds" if ok else "BROKEN"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
