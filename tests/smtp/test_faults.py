"""Fault injection (FULMAR_FAULT, src/lib/fsio.h) against the real daemon.

ENOSPC, EDQUOT and EIO on the write, the fsync (of the file or of its
directory), the rename (Maildir) or the committed mark (queue: fchmod),
and the open of a transaction, on both commit
paths: the queue (local.deliver_at_receipt = false) and deliver-at-receipt
straight into the Maildir. For each:
  - the client gets 452 4.3.1 (ENOSPC, EDQUOT) or 451 4.3.0 (anything
    else) after the end of data, never 250;
  - nothing of the refused message is left anywhere: not in the Maildir's
    new/, cur/ or tmp/, not in the queue's active/;
  - the daemon keeps running, and once the fault is over (the spec's
    COUNT) the next message on the same connection gets 250 and is
    delivered, exactly once, byte-exact.

The spec's N counts the calls of one operation, process-wide. The queue
and receipt cases run without prepared queue files (queue.prepared_files
= 0), so before the first message nothing calls them; per message (one
recipient, small content):
  queue:   open 1 (active/ID), write 1 (the whole file at commit),
           fsync 2 (file, then active/), chmod 1; then the delivery
           from the queue: open, write 2+, fsync (file, new/), link.
  receipt: open 1 (tmp/), write 1 (at commit: with one mailbox, the
           added header fields go with the content), fsync 2 (file, then
           new/), rename 1.
With prepared files (src/queue/prepared.h; 8 in these tests), start-up
makes them: open 1-8, then fsync 1 (active/); a message that takes one
then costs write 1, fsync 1 (the file), chmod 1, and no open. A message
written over a recycled file longer than itself also costs truncate 1.
"""

import os
import re
import time

import pytest

from fulmar_test import (SMTPClient, expect, make_message, maildir_files,
                         maildir_tmp_files, prepared_queue_files, queue_dir_messages,
                         split_delivered, wait_for_one, wait_until)

QUEUE = {"local": {"deliver_at_receipt": False}, "queue": {"prepared_files": 0}}
RECEIPT = {"local": {"deliver_at_receipt": True}, "queue": {"prepared_files": 0}}
PREPARED_FILES = 8
PREPARED = {"local": {"deliver_at_receipt": False}, "queue": {"prepared_files": PREPARED_FILES}}
STORAGE = (452, "4.3.1")
LOCAL_ERROR = (451, "4.3.0")


def start_with_fault(fulmar_factory, spec, **overrides):
    d = fulmar_factory(start=False, **overrides)
    plain_env = d.env
    d.env = lambda: dict(plain_env(), FULMAR_FAULT=spec)
    d.start()
    return d


def queue_files(d):
    """Files left in the queue. Empty unmarked files are left out only when
    the daemon keeps prepared files: a refused message's own file looks
    just like one (so the prepared-file cases count their files instead,
    test_prepared_file_commit_fault)."""
    keeps_prepared = d.config.get("queue", {}).get("prepared_files") != 0
    return (queue_dir_messages(d.state_dir, "incoming", skip_prepared=keeps_prepared) +
            queue_dir_messages(d.state_dir, "active", skip_prepared=keeps_prepared))


def prepared_files(d):
    return prepared_queue_files(d.state_dir)


def transaction(c, msg, rcpt="alice@example.test", at_data=False):
    """MAIL, RCPT, DATA on an open session: the reply after the end of
    data, or with at_data, the refusal of DATA itself."""
    expect(c.mail("s@client.test"), 250)
    expect(c.rcpt(rcpt), 250)
    r = c.cmd("DATA")
    if at_data:
        assert r.code != 354, r
        return r
    expect(r, 354)
    c.send(msg + b".\r\n")
    return c.reply()


def accepted_and_delivered(d, msg):
    """One message on a new session: 250, then in alice's Maildir, once."""
    with SMTPClient(d.port) as c:
        c.ehlo()
        expect(transaction(c, msg), 250, "2.0.0")
        c.quit()
    split_delivered(wait_for_one(d.maildir("alice")), msg)
    time.sleep(0.3)  # a late duplicate would show now
    assert len(maildir_files(d.maildir("alice"))) == 1


def check_nothing_left(d, user="alice"):
    assert maildir_files(d.maildir(user)) == [], "refused message delivered"
    assert maildir_tmp_files(d.maildir(user)) == [], "half-written copy in tmp/"
    assert queue_files(d) == [], "refused message left in the queue"


def refused_then_recovers(d, want, at_data=False, event=None):
    refused = make_message(subject="refused")
    good = make_message(subject="after the fault")
    with SMTPClient(d.port) as c:
        c.ehlo()
        r = transaction(c, refused, at_data=at_data)
        code, enh = want
        expect(r, code, enh)
        # A moment for a stray copy or queue file to show up.
        time.sleep(0.3)
        check_nothing_left(d)
        assert d.running
        log = d.log_text()
        assert "event=reject" in log and "%d %s" % (code, enh) in log, log
        if event:
            assert "event=" + event in log, log
        # The fault is over: the same connection goes on.
        r = transaction(c, good)
        expect(r, 250, "2.0.0")
        c.quit()
    files = wait_until(lambda: maildir_files(d.maildir("alice")), timeout=10)
    assert len(files) == 1, files
    with open(files[0], "rb") as f:
        split_delivered(f.read(), good)
    assert wait_until(lambda: queue_files(d) == [], timeout=10), queue_files(d)
    time.sleep(0.3)  # a late duplicate would show now
    assert len(maildir_files(d.maildir("alice"))) == 1
    assert maildir_tmp_files(d.maildir("alice")) == []
    assert d.running


QW, QF, DR = "queue_write_failed", "queue_fsync_failed", "deliver_at_receipt_failed"
CASES = [
    # (path, spec, expected reply, the error event logged)
    ("queue", "write:1:ENOSPC:1", STORAGE, QW),
    ("queue", "write:1:EIO:1", LOCAL_ERROR, QW),
    ("queue", "fsync:1:ENOSPC:1", STORAGE, QW),
    ("queue", "fsync:1:EIO:1", LOCAL_ERROR, QW),
    ("queue", "fsync:2:ENOSPC:1", STORAGE, QF),   # active/, after the mark
    ("queue", "fsync:2:EIO:1", LOCAL_ERROR, QF),
    ("queue", "chmod:1:EIO:1", LOCAL_ERROR, QW),
    ("queue", "chmod:1:EROFS:1", LOCAL_ERROR, QW),
    ("queue", "write:1:EDQUOT:1", STORAGE, QW),
    ("receipt", "write:1:ENOSPC:1", STORAGE, DR),
    ("receipt", "write:1:EIO:1", LOCAL_ERROR, DR),
    ("receipt", "fsync:1:ENOSPC:1", STORAGE, DR),
    ("receipt", "fsync:1:EIO:1", LOCAL_ERROR, DR),
    ("receipt", "fsync:2:ENOSPC:1", STORAGE, DR),  # new/, after the rename
    ("receipt", "fsync:2:EIO:1", LOCAL_ERROR, DR),
    ("receipt", "rename:1:ENOSPC:1", STORAGE, DR),
    ("receipt", "rename:1:EIO:1", LOCAL_ERROR, DR),
    ("receipt", "write:1:EDQUOT:1", STORAGE, DR),
]


@pytest.mark.parametrize("path,spec,want,event", CASES,
                         ids=["%s-%s" % (c[0], c[1].replace(":", "-")) for c in CASES])
def test_commit_fault(fulmar_factory, path, spec, want, event):
    d = start_with_fault(fulmar_factory, spec, **(QUEUE if path == "queue" else RECEIPT))
    refused_then_recovers(d, want, event=event)


# A message written into a prepared file: start-up made the files (open
# 1-8, fsync 1), so the message's own calls come after those.
PREPARED_CASES = [
    ("write:1:ENOSPC:1", STORAGE, QW),
    ("write:1:EIO:1", LOCAL_ERROR, QW),
    ("fsync:2:ENOSPC:1", STORAGE, QW),
    ("fsync:2:EIO:1", LOCAL_ERROR, QW),
    ("chmod:1:EIO:1", LOCAL_ERROR, QW),
]


def start_prepared(fulmar_factory, spec=None):
    """A daemon whose start-up has made its prepared files."""
    d = (start_with_fault(fulmar_factory, spec, **PREPARED) if spec
         else fulmar_factory(**PREPARED))
    assert wait_until(lambda: len(prepared_files(d)) == PREPARED_FILES, timeout=10), \
        prepared_files(d)
    time.sleep(0.2)  # the directory fsync, and the hand-over to the loop
    return d


@pytest.mark.parametrize("spec,want,event", PREPARED_CASES,
                         ids=[c[0].replace(":", "-") for c in PREPARED_CASES])
def test_prepared_file_commit_fault(fulmar_factory, spec, want, event):
    """The commit of a message into a prepared file fails: refused, the
    file is gone, the next message is accepted and delivered."""
    d = start_prepared(fulmar_factory, spec)
    before = set(prepared_files(d))
    refused_then_recovers(d, want, event=event)
    # Both messages took a prepared file (no open of their own: the fault
    # numbering above depends on it).
    # A refused message's file left behind would still look prepared.
    assert "event=fault_injected" in d.log_text()
    assert len(before - set(prepared_files(d))) == 2


def wait_recycled(d):
    """The name of a recycled prepared file (one that holds a finished
    message under another id), once one shows up."""
    def recycled():
        for n in prepared_files(d):
            if os.path.getsize(os.path.join(d.state_dir, "queue", "active", n)) > 0:
                return n
        return None
    name = wait_until(recycled, timeout=10)
    assert name, prepared_files(d)
    return name


@pytest.mark.parametrize("errname,want", [("EIO", LOCAL_ERROR), ("ENOSPC", STORAGE)])
def test_recycled_file_truncate_fault(fulmar_factory, errname, want):
    """A message written over the recycled file of a longer one cannot
    truncate it: refused, the file is gone, the next message is accepted
    and delivered."""
    d = start_prepared(fulmar_factory, "truncate:1:%s:1" % errname)
    big = make_message(subject="long", body=("x" * 76 + "\n") * 1000)
    with SMTPClient(d.port) as c:
        c.ehlo()
        expect(transaction(c, big, rcpt="bob@example.test"), 250, "2.0.0")
        c.quit()
    wait_for_one(d.maildir("bob"))
    name = wait_recycled(d)
    time.sleep(0.2)  # its batch handed to the loop: the next one taken
    refused_then_recovers(d, want, event=QW)
    assert "event=fault_injected" in d.log_text()
    assert name not in prepared_files(d)


def test_recycle_rename_fault(fulmar_factory):
    """The rename of a finished message's file into the pool fails: the
    file is removed instead, nothing is left in the queue, and the next
    finished file is recycled."""
    d = start_prepared(fulmar_factory, "rename:1:EIO:1")
    accepted_and_delivered(d, make_message(subject="not recycled"))
    assert wait_until(lambda: "event=fault_injected" in d.log_text(), timeout=10)
    assert wait_until(lambda: queue_files(d) == [], timeout=10), queue_files(d)
    time.sleep(0.8)  # a recycled file would have joined the pool by now
    active = os.path.join(d.state_dir, "queue", "active")
    assert [n for n in prepared_files(d) if os.path.getsize(os.path.join(active, n))] == []
    with SMTPClient(d.port) as c:
        c.ehlo()
        expect(transaction(c, make_message(subject="recycled")), 250, "2.0.0")
        c.quit()
    wait_recycled(d)
    assert queue_files(d) == []


def test_prepared_files_lifecycle(fulmar_factory):
    """Made at start-up; each message takes one and the pool is refilled;
    removed at a clean stop; removed at start-up after a crash."""
    d = start_prepared(fulmar_factory)
    first = set(prepared_files(d))
    msgs = [make_message(subject="prepared %d" % i) for i in range(20)]
    with SMTPClient(d.port) as c:
        c.ehlo()
        for m in msgs:
            expect(transaction(c, m), 250, "2.0.0")
        c.quit()
    files = wait_until(lambda: len(maildir_files(d.maildir("alice"))) == 20 and
                       maildir_files(d.maildir("alice")), timeout=20)
    assert files and len(files) == 20
    assert wait_until(lambda: queue_files(d) == [], timeout=10), queue_files(d)
    # Refilled (the pool refills once it is half empty, and takes back the
    # files of finished messages): files made since start-up stand in for
    # those taken, some of them recycled.
    assert wait_until(lambda: len(prepared_files(d)) > PREPARED_FILES // 2, timeout=10)
    assert set(prepared_files(d)) - first
    wait_recycled(d)
    d.stop()
    assert os.listdir(os.path.join(d.state_dir, "queue", "active")) == []
    d.start()
    assert wait_until(lambda: len(prepared_files(d)) == PREPARED_FILES, timeout=10)
    # A few more, so that the crash leaves recycled files (finished
    # messages under new ids) as well as new ones.
    with SMTPClient(d.port) as c:
        c.ehlo()
        for i in range(3):
            expect(transaction(c, make_message(subject="before the crash %d" % i)),
                   250, "2.0.0")
        c.quit()
    assert wait_until(lambda: len(maildir_files(d.maildir("alice"))) == 23, timeout=20)
    recycled = wait_recycled(d)
    assert wait_until(lambda: queue_files(d) == [], timeout=10), queue_files(d)
    left = set(prepared_files(d))
    assert recycled in left
    d.kill9()
    d.start()
    assert wait_until(lambda: len(prepared_files(d)) == PREPARED_FILES, timeout=10)
    assert not left & set(prepared_files(d)), "a crash's prepared files were kept"
    log = d.log_text()
    assert "incoming_discarded" not in log, log
    assert "quarantined" not in log, log
    assert os.listdir(os.path.join(d.state_dir, "queue", "corrupt")) == []
    # Three starts, each with nothing to resume (the leftovers, recycled
    # ones included, were not taken for messages).
    assert len(re.findall(r"(?<![0-9])0 messages in the queue", log)) == 3, log
    time.sleep(0.5)  # a message brought back would be delivered again now
    assert len(maildir_files(d.maildir("alice"))) == 23


@pytest.mark.parametrize("spec", ["open:1:EIO:1", "fsync:1:EIO:1", "open:1:ENOSPC"])
def test_prepared_files_cannot_be_made(fulmar_factory, spec):
    """Making the prepared files fails (one of them, their directory's
    fsync, or every open): a warning, and messages create their own queue
    files as without the pool; nothing is refused."""
    d = start_with_fault(fulmar_factory, spec, **PREPARED)
    assert wait_until(lambda: "event=queue_prepare_failed" in d.log_text(), timeout=10)
    if spec.startswith("fsync"):
        # The batch whose directory fsync failed is not kept.
        assert prepared_files(d) == []
    if spec == "open:1:ENOSPC":
        # Every open fails, the queue file's own too: refused at DATA,
        # and the daemon goes on.
        with SMTPClient(d.port) as c:
            c.ehlo()
            r = transaction(c, make_message(), at_data=True)
            expect(r, *STORAGE)
            c.quit()
        assert prepared_files(d) == [] and queue_files(d) == []
        assert d.running
        return
    accepted_and_delivered(d, make_message(subject="without a full pool"))


@pytest.mark.parametrize("errname,want", [("ENOSPC", STORAGE), ("EIO", LOCAL_ERROR)])
def test_queue_file_cannot_be_created(fulmar_factory, errname, want):
    """The queue file's open fails at DATA: refused there, before 354."""
    d = start_with_fault(fulmar_factory, "open:1:%s:1" % errname, **QUEUE)
    refused_then_recovers(d, want, at_data=True)


def test_receipt_open_fault_falls_back_to_the_queue(fulmar_factory):
    """The Maildir copy cannot be created at DATA: the message goes
    through the queue instead (250), and is delivered from there."""
    d = start_with_fault(fulmar_factory, "open:1:ENOSPC:1", **RECEIPT)
    accepted_and_delivered(d, make_message(subject="through the queue"))
    assert "event=deliver_at_receipt_failed" in d.log_text()


def test_lasting_fault_then_restart(fulmar_factory):
    """A fault that does not go away: every message is refused, none is
    half-delivered, the daemon keeps serving; restarted without the fault,
    it accepts and delivers again."""
    d = start_with_fault(fulmar_factory, "fsync:1:ENOSPC", **RECEIPT)
    with SMTPClient(d.port) as c:
        c.ehlo()
        for i in range(3):
            expect(transaction(c, make_message(subject="refused %d" % i)), *STORAGE)
        expect(c.cmd("NOOP"), 250)
        c.quit()
    check_nothing_left(d)
    assert d.running
    d.stop()
    d.env = type(d).env.__get__(d)
    d.start()
    accepted_and_delivered(d, make_message(subject="after the restart"))
