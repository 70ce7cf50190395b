"""A Maildir that cannot be written: the message is still accepted (into
the queue), the recipient is deferred with the reason, retried with
backoff, and delivered exactly once when the Maildir is writable again,
also across a restart."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fulmar_test import (make_message, maildir_files, send_one,  # noqa: E402
                         split_delivered, wait_for_one)


def wait_deferred(d, qid, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = "\n".join(map(str, d.queue_list()))
        if qid in text and "deferred" in text:
            return text
        time.sleep(0.2)
    raise AssertionError("not deferred: %r\n%s" % (d.queue_list(), d.log_tail()))


def test_unwritable_maildir_defers_then_delivers(fulmar_factory):
    d = fulmar_factory(queue={"retry_first": 1.0, "retry_max": 2.0})
    tmp = os.path.join(d.maildir("alice"), "tmp")
    os.chmod(tmp, 0o500)
    try:
        msg = make_message(subject="deferred")
        qid = send_one(d, ["alice@example.test"], msg)
        text = wait_deferred(d, qid)
        assert "alice@example.test" in text and "Permission denied" in text, text
        assert maildir_files(d.maildir("alice")) == []
        log = d.log_text()
        assert "event=deliver_at_receipt_failed" in log, log
        assert "status=deferred" in log and qid in log, log
    finally:
        os.chmod(tmp, 0o700)
    split_delivered(wait_for_one(d.maildir("alice"), timeout=15), msg)
    time.sleep(2.5)  # another retry round would show a duplicate
    assert len(maildir_files(d.maildir("alice"))) == 1
    assert d.queue_list() == []


def test_deferred_message_survives_restart(fulmar_factory):
    d = fulmar_factory(queue={"retry_first": 3.0, "retry_max": 3.0})
    tmp = os.path.join(d.maildir("bob"), "tmp")
    os.chmod(tmp, 0o500)
    try:
        msg = make_message(subject="after restart")
        qid = send_one(d, ["bob@example.test"], msg)
        wait_deferred(d, qid)
        d.stop()
    finally:
        os.chmod(tmp, 0o700)
    d.start()  # the journal kept its next attempt: it is retried then
    split_delivered(wait_for_one(d.maildir("bob"), timeout=15), msg)
    assert "1 messages in the queue" in d.log_text()
    assert len(maildir_files(d.maildir("bob"))) == 1
    deadline = time.time() + 5
    while d.queue_list() and time.time() < deadline:
        time.sleep(0.2)
    assert d.queue_list() == []
