"""Dovecot reads what Fulmar delivers: deliver a message to alice, point
Debian's dovecot-imapd at alice's Maildir (a private instance with its own
config, no system service) and fetch the message over IMAP."""

import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time

import pytest

from fulmar_test import (RUN_USER, SMTPClient, free_port, is_root, make_message,
                         make_test_root, split_delivered, wait_for_one)

pytestmark = pytest.mark.timeout(90)

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
PASSWORD = "alice-secret"


class Dovecot:
    def __init__(self, maildir, owner_uid, owner_gid):
        self.root = make_test_root("fulmar-dovecot-")
        self.port = free_port()
        self.conf = os.path.join(self.root, "dovecot.conf")
        self.log = os.path.join(self.root, "dovecot.log")
        run = os.path.join(self.root, "run")
        state = os.path.join(self.root, "state")
        for p in (run, state):
            os.makedirs(p, mode=0o755)
        passwd = os.path.join(self.root, "passwd")
        with open(passwd, "w") as f:
            f.write("alice:{PLAIN}%s:%d:%d::%s::userdb_mail=maildir:%s\n"
                    % (PASSWORD, owner_uid, owner_gid, maildir, maildir))
        os.chmod(passwd, 0o644)
        if is_root():
            internal, login = "dovecot", "dovenull"
        else:
            internal = login = pwd.getpwuid(os.getuid()).pw_name
        with open(self.conf, "w") as f:
            f.write("""
protocols = imap
listen = 127.0.0.1
base_dir = {run}
state_dir = {state}
log_path = {log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
first_valid_gid = 1
default_internal_user = {internal}
default_login_user = {login}
mail_location = maildir:{maildir}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""".format(run=run, state=state, log=self.log, internal=internal, login=login,
           maildir=maildir, passwd=passwd, port=self.port))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode("utf-8", "replace")
                raise AssertionError("dovecot exited %s: %s\n%s"
                                     % (self.proc.returncode, out, self.log_text()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(5)
                    if s.recv(1024).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("dovecot did not listen on %d:\n%s" % (self.port, self.log_text()))

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def dovecot_for():
    started = []

    def make(maildir):
        st = os.stat(maildir)
        d = Dovecot(maildir, st.st_uid, st.st_gid)
        started.append(d)
        d.start()
        return d

    yield make
    for d in started:
        d.stop()


def test_dovecot_reads_delivered_message(fulmar, dovecot_for):
    if not os.path.exists(DOVECOT):
        pytest.fail("dovecot is not installed (apt-get install dovecot-imapd)")
    body = "Hello Alice,\n\nthis came through Fulmar.\n.\n..leading dots\nGrüße ✓\n"
    msg = make_message(subject="for dovecot", body=body,
                       extra_headers=["MIME-Version: 1.0",
                                      "Content-Type: text/plain; charset=utf-8",
                                      "Content-Transfer-Encoding: 8bit"])
    with SMTPClient(fulmar.port) as c:
        c.ehlo("imap.client.test")
        qid = c.send_mail("sender@client.test", ["alice@example.test"], msg)
    delivered = wait_for_one(fulmar.maildir("alice"))
    split_delivered(delivered, msg)
    if is_root():
        assert os.stat(fulmar.maildir("alice")).st_uid == pwd.getpwnam(RUN_USER).pw_uid

    dc = dovecot_for(fulmar.maildir("alice"))
    imap = imaplib.IMAP4("127.0.0.1", dc.port, timeout=15)
    try:
        typ, _ = imap.login("alice", PASSWORD)
        assert typ == "OK", dc.log_text()
        typ, data = imap.select("INBOX")
        assert typ == "OK" and int(data[0]) == 1, (typ, data, dc.log_text())
        typ, data = imap.fetch("1", "(RFC822 BODY.PEEK[TEXT] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", data
        parts = {}
        for item in data:
            if isinstance(item, tuple):
                key = item[0].decode()
                if "RFC822 {" in key:
                    parts["full"] = item[1]
                if "BODY[TEXT]" in key:
                    parts["text"] = item[1]
                if "HEADER.FIELDS" in key:
                    parts["subject"] = item[1]
        assert set(parts) == {"full", "text", "subject"}, data
        # IMAP serves the file with CRLF line ends
        assert parts["full"] == delivered.replace(b"\n", b"\r\n"), (parts["full"][:300],
                                                                     delivered[:300])
        assert parts["text"] == body.replace("\n", "\r\n").encode("utf-8")
        assert parts["subject"].strip() == b"Subject: for dovecot"
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (RETURN-PATH DELIVERED-TO)])")
        hdr = data[0][1]
        assert b"Return-Path: <sender@client.test>" in hdr, hdr
        assert b"alice@example.test" in hdr, hdr
        imap.close()
    finally:
        try:
            imap.logout()
        except Exception:
            pass
    assert qid
