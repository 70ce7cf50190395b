"""queue.min_free (as Postfix's queue_minfree): MAIL gets 452 4.3.1 while
the file system of state_dir has less free space than that (or than that
plus the SIZE= announced), and 250 again once it is set to 0 (reload) or
space comes back.

The state_dir is a real 8 MB tmpfs, mounted for the test, so this needs
root (as CI runs the tests); elsewhere it is skipped.
"""

import os
import pwd
import subprocess
import time

import pytest

from fulmar_test import (RUN_USER, SMTPClient, expect, is_root, make_message,
                         maildir_files, wait_until)

MB = 1024 * 1024


@pytest.fixture
def small_state(fulmar_factory):
    """A daemon (not started) whose state_dir is an 8 MB tmpfs."""
    if not is_root():
        pytest.skip("mounting a tmpfs for state_dir needs root")
    d = fulmar_factory(start=False)
    pw = pwd.getpwnam(RUN_USER)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o",
                        "size=8m,mode=0755,uid=%d,gid=%d" % (pw.pw_uid, pw.pw_gid),
                        "fulmar-test", d.state_dir], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % r.stderr.decode(errors="replace").strip())
    try:
        yield d
    finally:
        d.stop()
        subprocess.run(["umount", d.state_dir], check=False)


def set_min_free(d, value):
    d.config.setdefault("queue", {})["min_free"] = value
    d.write_config()
    mark = len(d.log_lines_with("event=reloaded"))
    d.reload()
    assert wait_until(lambda: len(d.log_lines_with("event=reloaded")) > mark, timeout=10), \
        d.log_tail()


def mail_reply(d, params=""):
    with SMTPClient(d.port) as c:
        c.ehlo()
        r = c.mail("s@client.test", params)
        c.quit()
        return r


def test_min_free_refuses_then_reload_accepts(small_state):
    d = small_state
    d.config["queue"] = {"min_free": 16 * MB}  # more than the 8 MB there is
    d.write_config()
    d.start()
    expect(mail_reply(d), 452, "4.3.1", "insufficient system storage")
    log = d.log_text()
    assert "event=insufficient_storage" in log and "min_free=%d" % (16 * MB) in log, log
    # The session goes on: a refused MAIL is not the end of it.
    with SMTPClient(d.port) as c:
        c.ehlo()
        expect(c.mail("s@client.test"), 452, "4.3.1")
        expect(c.cmd("NOOP"), 250)
        c.quit()
    set_min_free(d, 0)
    msg = make_message(subject="min_free off")
    with SMTPClient(d.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["alice@example.test"], msg)  # 250 or it raises
        c.quit()
    assert wait_until(lambda: maildir_files(d.maildir("alice")), timeout=10)


def test_min_free_with_size_and_space_coming_back(small_state):
    d = small_state
    d.config["queue"] = {"min_free": 2 * MB}
    d.write_config()
    d.start()
    expect(mail_reply(d), 250, "2.1.0")
    # Enough for min_free, not for min_free plus the announced size.
    expect(mail_reply(d, "SIZE=%d" % (7 * MB)), 452, "4.3.1")
    # Fill the disk below the floor: refused (once the cached figure,
    # at most a second old, has been renewed).
    filler = os.path.join(d.state_dir, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * (7 * MB))
    time.sleep(1.1)
    expect(mail_reply(d), 452, "4.3.1")
    # Space comes back: accepted again, without a restart.
    os.unlink(filler)
    time.sleep(1.1)
    expect(mail_reply(d), 250, "2.1.0")
    assert d.running
