"""
Fixtures shared by tests/smtp, tests/crash and tests/imap: start Fulmar
daemons on loopback (see tests/lib/fulmar_test.py), check them for
sanitizer reports when they stop, and a per-test time limit
(@pytest.mark.timeout(seconds), default 120) so that a hung daemon fails
one test instead of hanging the suite.
"""

import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

import fulmar_test  # noqa: E402

DEFAULT_TIMEOUT = 120


class TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    marker = item.get_closest_marker("timeout")
    seconds = marker.args[0] if marker else DEFAULT_TIMEOUT

    def on_alarm(signum, frame):
        raise TestTimeout("test exceeded its %s s time limit" % seconds)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session", autouse=True)
def _run_user():
    fulmar_test.ensure_run_user()


def _finish(daemons, request):
    """Stop every daemon; fail on sanitizer reports or unclean exits."""
    problems = []
    for d in daemons:
        d.stop()
        for rep in d.sanitizer_reports():
            problems.append("sanitizer report from the daemon (%s):\n%s" % (d.root, rep))
        for u in d.unclean:
            problems.append("daemon %s %s" % (d.root, u))
    failed = any(getattr(request.node, "rep_" + w, None) is not None
                 and getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    keep = failed or problems or os.environ.get("FULMAR_KEEP_TMP") == "1"
    for d in daemons:
        if failed or problems:
            print("---- daemon log %s (tail) ----\n%s" % (d.root, d.log_tail(80)))
        if not keep:
            d.cleanup()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def fulmar_factory(request):
    """fulmar_factory(start=True, **overrides) -> Daemon. Overrides are merged
    into the default config, e.g. limits={"recipients": 5},
    timeouts={"command": 1.0}. Every daemon is stopped at teardown."""
    daemons = []

    def make(start=True, **overrides):
        d = fulmar_test.Daemon(overrides)
        daemons.append(d)
        if start:
            d.start()
        return d

    yield make
    _finish(daemons, request)


@pytest.fixture
def fulmar(fulmar_factory):
    """A running daemon with the default test configuration."""
    return fulmar_factory()


@pytest.fixture(scope="module")
def shared_fulmar(request):
    """One daemon for a whole module, for tests that deliver nothing and
    leave no state behind (each opens its own connections)."""
    d = fulmar_test.Daemon({"limits": {"connections_per_ip": 200}})
    d.start()
    yield d
    _finish([d], request)
