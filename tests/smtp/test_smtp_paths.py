"""The two ways a local message travels: delivered at receipt (all
recipients are local mailboxes), or through the queue files and the
delivery engine (forced off, or a recipient the queue must keep)."""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fulmar_test import (make_message, queue_dir_messages, send_one,  # noqa: E402
                         split_delivered,
                         wait_for_one)

FORWARD = {"name": "fwd", "to": ["alice", "someone@remote.test"]}


def events(d, qid):
    return [ln for ln in d.log_text().splitlines() if qid in ln]


@pytest.mark.parametrize("at_receipt", [True, False])
def test_local_message_either_path(fulmar_factory, at_receipt):
    d = fulmar_factory(local={"deliver_at_receipt": at_receipt})
    msg = make_message(subject="path", body="line one\n.dotted\n")
    qid = send_one(d, ["alice@example.test", "bob@example.test"], msg)
    for user in ("alice", "bob"):
        split_delivered(wait_for_one(d.maildir(user)), msg)
    time.sleep(0.3)
    ev = events(d, qid)
    assert any("event=queued" in e for e in ev), ev
    assert sum("event=delivery" in e and "status=sent" in e for e in ev) == 2, ev
    if at_receipt:
        assert any("delivered at receipt" in e for e in ev), ev
        assert queue_dir_messages(d.state_dir) == []
    else:
        assert any("event=removed" in e for e in ev), ev
    assert d.queue_list() == []
    for user in ("alice", "bob"):   # no tmp/ leftovers either way
        assert os.listdir(os.path.join(d.maildir(user), "tmp")) == []


def test_forward_to_remote_stays_queued(fulmar_factory):
    d = fulmar_factory()
    cfg = d.config["local"]["domains"][0]
    cfg["aliases"] = cfg.get("aliases", []) + [FORWARD]
    d.write_config()
    d.reload()
    time.sleep(0.5)
    msg = make_message(subject="forwarded")
    qid = send_one(d, ["fwd@example.test"], msg)
    split_delivered(wait_for_one(d.maildir("alice")), msg)
    deadline = time.time() + 5
    listing = []
    while time.time() < deadline:
        listing = d.queue_list()
        if listing:
            break
        time.sleep(0.2)
    text = "\n".join(map(str, listing))
    assert qid in text, text
    # The test resolver does not answer: the remote copy waits (deferred).
    assert "someone@remote.test" in text, text
    assert "pending" in text or "deferred" in text, text
    assert "alice@example.test" in text and "delivered" in text, text
