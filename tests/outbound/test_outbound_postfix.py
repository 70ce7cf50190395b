"""End to end with a real receiving MTA: Debian's Postfix, as a private
instance on a loopback port (its own config and queue directories under a
temp dir, virtual Maildir delivery for pf.test, STARTTLS with a self-signed
certificate, no DNS). Fulmar reaches it through an MX record of the test
zone; the message lands in Postfix's Maildir with its body byte for byte,
and Postfix's own refusal of an unknown user becomes Fulmar's bounce."""
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from fulmar_test import (free_port, make_message, make_test_root, maildir_files, read_file,
                         to_lf)
from outbound_lib import USER, unique, wait_until
from smtp_peers import self_signed_cert

pytestmark = pytest.mark.timeout(60)

DOMAIN = "pf.test"
MAILBOXES = ("inbox1", "inbox2", "inbox3")
VUID = 5000


def _postfix_missing():
    if os.geteuid() != 0:
        return "the private Postfix instance needs root"
    if shutil.which("postfix") is None and not os.path.exists("/usr/sbin/postfix"):
        return "postfix is not installed (scripts/install-deps.sh --test installs it)"
    try:
        subprocess.run(["getent", "passwd", "postfix"], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        return "no postfix user"
    return None


class Postfix:
    def __init__(self):
        self.root = make_test_root("fulmar-postfix-")
        self.port = free_port()
        self.conf = os.path.join(self.root, "etc")
        self.spool = os.path.join(self.root, "spool")
        self.data = os.path.join(self.root, "data")
        self.vmail = os.path.join(self.root, "vmail")
        self.maillog = os.path.join(self.root, "maillog")
        for d in (self.conf, self.spool, self.data, os.path.join(self.vmail, DOMAIN)):
            os.makedirs(d, exist_ok=True)
        for d in (self.root, self.conf, self.vmail):
            os.chmod(d, 0o755)
        shutil.chown(self.data, "postfix")
        for d, _, _ in os.walk(os.path.join(self.vmail, DOMAIN)):
            os.chown(d, VUID, VUID)
        os.chown(os.path.join(self.vmail, DOMAIN), VUID, VUID)
        with open(os.path.join(self.conf, "vmailbox"), "w") as f:
            for m in MAILBOXES:
                f.write("%s@%s %s/%s/\n" % (m, DOMAIN, DOMAIN, m))
        cert, key = self_signed_cert("postfix.e2e.test")
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(f"""# private Postfix instance for Fulmar's outbound end-to-end test
compatibility_level = 3.6
queue_directory = {self.spool}
data_directory = {self.data}
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.e2e.test
mydomain = e2e.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost =
relay_domains =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination
smtpd_peername_lookup = no
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtp_host_lookup = native
biff = no
notify_classes =
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {self.vmail}
virtual_mailbox_maps = texthash:{self.conf}/vmailbox
virtual_uid_maps = static:{VUID}
virtual_gid_maps = static:{VUID}
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_loglevel = 1
maillog_file = {self.maillog}
maillog_file_prefixes = {self.root}
""")
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(f"""127.0.0.1:{self.port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
""")

    def run(self, *args):
        return subprocess.run(["postfix", "-c", self.conf] + list(args),
                              capture_output=True, text=True, timeout=30)

    def start(self):
        r = self.run("start")
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: %s %s" % (r.stdout, r.stderr))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    if s.recv(100).startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("postfix does not answer on %d:\n%s" % (self.port, self.log()))

    def stop(self):
        pidfile = os.path.join(self.spool, "pid", "master.pid")
        pid = None
        try:
            pid = int(open(pidfile).read().strip())
        except (OSError, ValueError):
            pass
        r = self.run("stop")
        if r.returncode != 0:
            self.run("abort")
        if pid:
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)

    def log(self):
        try:
            return open(self.maillog, encoding="utf-8", errors="replace").read()
        except OSError:
            return ""

    def maildir(self, box):
        return os.path.join(self.vmail, DOMAIN, box)


@pytest.fixture(scope="module")
def postfix():
    why = _postfix_missing()
    if why:
        pytest.skip(why)
    pf = Postfix()
    pf.start()
    yield pf
    pf.stop()
    shutil.rmtree(pf.root, ignore_errors=True)


@pytest.fixture(scope="module")
def pf_relay(relay_factory, world, postfix):
    # Postfix's port is the outbound port; pf.test's MX is 127.0.0.1.
    world.route_to(DOMAIN, "127.0.0.1")
    return relay_factory({"outbound": {"port": postfix.port}})


def body_of(data):
    return to_lf(data).split(b"\n\n", 1)[1]


def test_delivery_into_postfix(pf_relay, postfix):
    rcpts = ["%s@%s" % (m, DOMAIN) for m in MAILBOXES[:2]]
    body = ("Postfix end to end %s\n.a line with a leading dot\n..two\n" % unique("pf")
            + "\n".join("line %d %s" % (i, "z" * (i % 70)) for i in range(300)) + "\n")
    msg = make_message(subject="to postfix", sender=USER, to=rcpts[0], body=body)
    qid, _ = pf_relay.submit(rcpts, msg=msg)
    for r in rcpts:
        pf_relay.wait_delivery(to=r, status="sent", timeout=20)
    for box in MAILBOXES[:2]:
        files = wait_until(lambda b=box: maildir_files(postfix.maildir(b)), 15)
        assert files, "nothing in Postfix's Maildir %s; postfix log:\n%s" % (box, postfix.log())
        data = read_file(files[-1])
        assert body_of(data) == body_of(msg), "body changed on the way to Postfix"
        assert to_lf(data).endswith(to_lf(msg)), data[:800]
    pf_relay.wait_gone(qid)
    log = postfix.log()
    # one SMTP transaction for both recipients, over TLS, from Fulmar
    qids = set(re.findall(r"postfix/smtpd\[\d+\]: ([0-9A-F]+): client=", log))
    assert len(qids) >= 1
    assert re.search(r"Anonymous TLS connection established from \S+\[127\.0\.0\.1\]", log) \
        or "TLS connection established from" in log, log[-2000:]
    ev = pf_relay.deliveries(to=rcpts[0], status="sent")[0]
    assert "[127.0.0.1]:%d" % postfix.port in ev["relay"], ev
    m = re.search(r"queued as ([0-9A-F]+)", ev.get("detail", ""))
    assert m, ev
    assert m.group(1) in log


def test_postfix_refusal_bounces(pf_relay, postfix):
    rcpt = "%s@%s" % (unique("nobody"), DOMAIN)
    good = "%s@%s" % (MAILBOXES[2], DOMAIN)
    qid, msg = pf_relay.submit([rcpt, good])
    ev = pf_relay.wait_delivery(to=rcpt, timeout=20)[0]
    assert ev["status"] == "bounced" and ev["dsn"] == "5.1.1", ev
    assert "User unknown in virtual mailbox table" in ev["detail"], ev
    d = pf_relay.wait_dsn(rcpt)
    r = d.recipient(rcpt)
    assert r["status"] == "5.1.1" and "User unknown" in r["diagnostic-code"], r
    assert "127.0.0.1" in r["remote-mta"] or "mx.pf.test" in r["remote-mta"], r
    pf_relay.wait_delivery(to=good, status="sent", timeout=20)
    assert wait_until(lambda: maildir_files(postfix.maildir(MAILBOXES[2])), 15)
    pf_relay.wait_gone(qid)
