"""
fulmar_test: shared pieces of Fulmar's black-box tests (tests/smtp,
tests/crash, tests/imap).

- Daemon: writes a libconfig file into a fresh 0755 directory under /tmp,
  starts `fulmar serve` in the foreground, waits for the 220 greeting, stops
  it with SIGTERM (SIGKILL after 10 s) and scans its stderr for sanitizer
  reports.
- SMTPClient: a raw SMTP client (no smtplib) that reads complete, possibly
  multi-line, replies, for the edge cases real clients never produce.
- Maildir helpers: wait for deliveries, split the headers Fulmar prepends
  from the message as sent.

Only the standard library is used. All traffic goes to 127.0.0.1.
"""

import base64
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HOSTNAME = "mx.test.local"
LOCAL_DOMAIN = "example.test"
CATCHALL_DOMAIN = "catchall.test"
MAILBOXES = {
    "alice@example.test": "alice",
    "bob@example.test": "bob",
    "carol@example.test": "carol",
    "dave@catchall.test": "dave",
}
RUN_USER = "fulmar"

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:")
LEAK_MARKER = "ERROR: LeakSanitizer"

QUEUED_RE = re.compile(r"^250 2\.0\.0 Ok: queued as ([A-Za-z0-9]+)\s*$")


def fulmar_bin():
    return os.environ.get("FULMAR_BIN", os.path.join(REPO_ROOT, "build-asan", "fulmar"))


def is_root():
    return os.geteuid() == 0


def ensure_run_user():
    """As root the daemon drops privileges to RUN_USER: make sure it exists."""
    if not is_root():
        return
    try:
        pwd.getpwnam(RUN_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", RUN_USER], check=True)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------
# libconfig writer

def _cfg_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError("cannot write %r to libconfig" % (v,))


def _cfg_value(v, indent):
    pad = "  " * indent
    if isinstance(v, dict):
        inner = "".join("%s  %s = %s;\n" % (pad, k, _cfg_value(x, indent + 1))
                        for k, x in v.items())
        return "{\n" + inner + pad + "}"
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, dict) for x in v):
            items = (",\n".join(pad + "  " + _cfg_value(x, indent + 1) for x in v))
            return "(\n" + items + "\n" + pad + ")"
        if any(isinstance(x, (dict, list, tuple)) for x in v):
            return "( " + ", ".join(_cfg_value(x, indent + 1) for x in v) + " )"
        return "[ " + ", ".join(_cfg_scalar(x) for x in v) + " ]"
    return _cfg_scalar(v)


def libconfig_text(cfg):
    """Serialize nested dicts / lists / scalars in libconfig syntax.
    A list of dicts becomes a list "( ... )", a list of scalars an array."""
    return "".join("%s = %s;\n" % (k, _cfg_value(v, 0)) for k, v in cfg.items())


def deep_merge(base, over):
    """Merge `over` into `base` (dicts recursively; other values replace).
    A value of None deletes the key."""
    for k, v in over.items():
        if v is None:
            base.pop(k, None)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def default_config(root, port):
    server = {
        "hostname": HOSTNAME,
        "state_dir": os.path.join(root, "state"),
        "log_level": "info",
    }
    if is_root():
        server["user"] = RUN_USER
    md = lambda u: os.path.join(root, "mail", u)  # noqa: E731
    return {
        "server": server,
        "listeners": [{"address": "127.0.0.1", "port": port, "role": "mx"}],
        # Short enough that a test never waits long for a clean stop.
        "timeouts": {"shutdown": 3.0},
        # Tests never ask a real DNS server: reverse lookups are off, and
        # outbound routing asks a loopback port where nothing listens (so
        # remote recipients are deferred), unless a test points it at its
        # own DNS server (tests/lib/dns_server.py).
        "dns": {"reverse_lookups": False, "resolvers": "127.0.0.1:9"},
        # SPF/DKIM/DMARC checks on the mx listener are tested on their own
        # (tests/smtp/test_inbound_auth.py); elsewhere they are off.
        "inbound": {"checks": False},
        "local": {
            "recipient_delimiter": "+",
            "domains": [
                {
                    "name": LOCAL_DOMAIN,
                    "mailboxes": [
                        {"user": "alice", "maildir": md("alice")},
                        {"user": "bob", "maildir": md("bob")},
                        {"user": "carol", "maildir": md("carol")},
                    ],
                    "aliases": [
                        {"name": "postmaster", "to": ["alice"]},
                        {"name": "team", "to": ["alice", "bob"]},
                    ],
                },
                {
                    "name": CATCHALL_DOMAIN,
                    "mailboxes": [{"user": "dave", "maildir": md("dave")}],
                    "catch_all": "dave",
                },
            ],
        },
    }


# ---------------------------------------------------------------------------
# The daemon

class DaemonError(Exception):
    pass


def _chown_run_user(path):
    if is_root():
        pw = pwd.getpwnam(RUN_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def make_test_root(prefix="fulmar-test-"):
    """A fresh directory under /tmp, mode 0755 (pytest's tmp_path is 0700,
    which the unprivileged daemon user could not enter)."""
    root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(root, 0o755)
    return root


class Daemon:
    """One Fulmar daemon with its own directory, config and port."""

    def __init__(self, overrides=None, root=None, port=None):
        ensure_run_user()
        self.bin = fulmar_bin()
        if not os.access(self.bin, os.X_OK):
            raise DaemonError(
                "fulmar binary not found at %s (set FULMAR_BIN, or build with: cmake -S . "
                "-B build-asan -DFULMAR_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug && "
                "cmake --build build-asan)" % self.bin)
        self.root = root or make_test_root()
        self.port = port or free_port()
        self.config_path = os.path.join(self.root, "fulmar.conf")
        self.stderr_path = os.path.join(self.root, "fulmar.stderr")
        self.stdout_path = os.path.join(self.root, "fulmar.stdout")
        self.config = default_config(self.root, self.port)
        if overrides:
            deep_merge(self.config, overrides)
        # The state and mail folders belong to the unprivileged user, as an
        # administrator would set them up; Fulmar creates what is inside.
        for sub in ("state", "mail"):
            p = os.path.join(self.root, sub)
            os.makedirs(p, exist_ok=True)
            os.chmod(p, 0o755)
            _chown_run_user(p)
        self.proc = None
        self._exit_recorded = True
        self.exits = []          # (returncode, how) of every run
        self.unclean = []        # descriptions of stops that were not clean
        self.write_config()

    # -- paths ---------------------------------------------------------
    @property
    def state_dir(self):
        return self.config["server"]["state_dir"]

    def maildir(self, user):
        return os.path.join(self.root, "mail", user)

    @property
    def log_file(self):
        return self.config["server"].get("log_file")

    # -- config --------------------------------------------------------
    def write_config(self):
        text = libconfig_text(self.config)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, self.config_path)

    def add_mailbox(self, user, domain=LOCAL_DOMAIN):
        for d in self.config["local"]["domains"]:
            if d["name"] == domain:
                d.setdefault("mailboxes", []).append(
                    {"user": user, "maildir": self.maildir(user)})
                return
        raise KeyError(domain)

    # -- process -------------------------------------------------------
    def env(self):
        env = dict(os.environ)
        asan = ["abort_on_error=0", "print_summary=1"]
        if os.environ.get("FULMAR_TEST_LEAKS") != "1":
            # LeakSanitizer cannot run after the daemon drops privileges,
            # and leaks at exit are not what these tests measure.
            asan.append("detect_leaks=0")
        if env.get("ASAN_OPTIONS"):
            asan.insert(0, env["ASAN_OPTIONS"])
        env["ASAN_OPTIONS"] = ":".join(asan)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        return env

    def start(self, wait=True, timeout=20.0):
        if self.proc is not None and self.proc.poll() is None:
            raise DaemonError("already running")
        if not os.access(self.bin, os.X_OK):
            raise DaemonError("fulmar binary not found at %s" % self.bin)
        self._exit_recorded = False
        err = open(self.stderr_path, "ab")
        out = open(self.stdout_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self.bin, "serve", "--config", self.config_path],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=self.root, env=self.env())
        finally:
            err.close()
            out.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._record("startup-failed")
                raise DaemonError("fulmar exited with %s during start-up:\n%s"
                                  % (self.proc.returncode, self.log_tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.settimeout(5)
                    buf = b""
                    while b"\n" not in buf:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    if buf.startswith(b"220 ") or buf.startswith(b"220-"):
                        try:
                            s.sendall(b"QUIT\r\n")
                            s.recv(4096)
                        except OSError:
                            pass
                        return
                    last = buf
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise DaemonError("fulmar did not greet on port %d within %.0f s (last: %r):\n%s"
                          % (self.port, timeout, last, self.log_tail()))

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self):
        self.signal(signal.SIGHUP)

    def _record(self, how, unclean=None):
        self.exits.append((self.proc.returncode, how))
        self._exit_recorded = True
        if unclean:
            self.unclean.append(unclean)

    def stop(self, timeout=10.0):
        """SIGTERM, wait, SIGKILL after `timeout`. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._record("sigterm-timeout",
                             "did not exit within %.0f s of SIGTERM (killed)" % timeout)
                return self.proc.returncode
            rc = self.proc.returncode
            self._record("sigterm", None if rc == 0 else "exited with status %s after SIGTERM" % rc)
            return rc
        if not self._exit_recorded:
            self._record("exited-by-itself",
                         "had exited by itself with status %s" % self.proc.returncode)
        return self.proc.returncode

    def wait_exit(self, timeout):
        """Wait for an exit the test caused (e.g. its own SIGTERM). Returns
        the exit status, or None if still running after timeout."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if not self._exit_recorded:
            self._record("expected")
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self._record("sigkill")

    def restart(self, timeout=20.0):
        self.stop()
        return self.start(timeout=timeout)

    # -- logs ----------------------------------------------------------
    def log_text(self):
        parts = []
        for p in (self.stderr_path, self.log_file):
            if p and os.path.exists(p):
                with open(p, "rb") as f:
                    parts.append(f.read().decode("utf-8", "replace"))
        return "".join(parts)

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_lines_with(self, needle):
        return [ln for ln in self.log_text().splitlines() if needle in ln]

    def sanitizer_reports(self):
        text = self.log_text()
        markers = list(SANITIZER_MARKERS)
        if os.environ.get("FULMAR_TEST_LEAKS") == "1":
            markers.append(LEAK_MARKER)
        out = []
        lines = text.splitlines()
        for i, ln in enumerate(lines):
            if any(m in ln for m in markers):
                out.append("\n".join(lines[max(0, i - 2):i + 30]))
        return out

    # -- CLI -----------------------------------------------------------
    def cli(self, *args, timeout=30):
        return subprocess.run([self.bin] + list(args), capture_output=True,
                              timeout=timeout, env=self.env(), cwd=self.root)

    def queue_list(self):
        r = self.cli("queue", "list", "--config", self.config_path)
        if r.returncode != 0:
            raise DaemonError("fulmar queue list exited %d: %s"
                              % (r.returncode, r.stderr.decode("utf-8", "replace")))
        return [ln for ln in r.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------
# Raw SMTP client

class ConnectionClosed(Exception):
    def __init__(self, partial=b""):
        super().__init__("connection closed by the server (pending: %r)" % (partial[:200],))
        self.partial = partial


class Reply:
    """One SMTP reply: code, the text of each line, and the RFC 3463
    enhanced status code of the first line (None when absent)."""

    ENH_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")

    def __init__(self, code, lines, raw):
        self.code = code
        self.lines = lines
        self.raw = raw

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enh(self):
        m = self.ENH_RE.match(self.lines[0]) if self.lines else None
        return "%s.%s.%s" % m.groups() if m else None

    def line_enh(self, i):
        m = self.ENH_RE.match(self.lines[i])
        return "%s.%s.%s" % m.groups() if m else None

    @property
    def queue_id(self):
        m = QUEUED_RE.match(self.raw.decode("utf-8", "replace").split("\r\n")[0].rstrip("\n"))
        return m.group(1) if m else None

    def __repr__(self):
        return "<Reply %r>" % (self.raw.decode("utf-8", "replace"),)

    def __str__(self):
        return self.raw.decode("utf-8", "replace").rstrip()


def expect(reply, code, enh=None, contains=None):
    """Assert a reply's code (and enhanced code, and a piece of text)."""
    assert reply is not None, "no reply"
    ok = reply.code == code and (enh is None or reply.enh == enh)
    if contains is not None:
        ok = ok and contains.lower() in reply.text.lower()
    assert ok, "expected %s%s%s, got %r" % (
        code, " " + enh if enh else "", " containing %r" % contains if contains else "", reply)
    return reply


class SMTPClient:
    """Raw SMTP over a TCP socket to 127.0.0.1."""

    def __init__(self, port, timeout=10.0, read_greeting=True, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.greeting = self.reply() if read_greeting else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- wire ----------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionClosed(bytes(self.buf))
        self.buf += chunk

    def _line(self, timeout):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            self._fill(timeout)

    def reply(self, timeout=None):
        """Read one complete reply (all lines of a multi-line one)."""
        timeout = self.timeout if timeout is None else timeout
        raw = b""
        lines = []
        code = None
        while True:
            line = self._line(timeout)
            raw += line
            s = line.rstrip(b"\r\n").decode("utf-8", "replace")
            if len(s) < 3 or not s[:3].isdigit() or (len(s) > 3 and s[3] not in " -"):
                raise AssertionError("malformed reply line %r (so far %r)" % (line, raw))
            if code is None:
                code = int(s[:3])
            elif int(s[:3]) != code:
                raise AssertionError("reply code changed inside a multi-line reply: %r" % raw)
            lines.append(s[4:])
            if len(s) == 3 or s[3] == " ":
                return Reply(code, lines, raw)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        return self.reply(timeout)

    def pending(self, wait=0.3):
        """Bytes the server sent that no reply() has consumed, after waiting
        `wait` seconds; b"" when nothing more came. Raises ConnectionClosed
        only when nothing was pending and the server closed."""
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            try:
                self._fill(left)
            except socket.timeout:
                break
            except ConnectionClosed:
                if self.buf:
                    break
                raise
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def poll(self, wait=0.0):
        """Read what is available within `wait` seconds into the buffer,
        without consuming it. Returns (buffered bytes, closed)."""
        self.sock.settimeout(max(wait, 0.0001))
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            return bytes(self.buf), False
        except (ConnectionResetError, BrokenPipeError):
            return bytes(self.buf), True
        if not chunk:
            return bytes(self.buf), True
        self.buf += chunk
        return bytes(self.buf), False

    def wait_closed(self, timeout=5.0):
        """True when the server closes the connection within timeout.
        Whatever it sends before closing is kept in self.buf."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                self._fill(max(0.01, end - time.monotonic()))
            except ConnectionClosed:
                return True
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
        return False

    # -- conveniences --------------------------------------------------
    def ehlo(self, name="client.test"):
        return expect(self.cmd("EHLO " + name), 250)

    def helo(self, name="client.test"):
        return expect(self.cmd("HELO " + name), 250)

    def mail(self, addr, params=""):
        return self.cmd("MAIL FROM:<%s>%s" % (addr, " " + params if params else ""))

    def rcpt(self, addr, params=""):
        return self.cmd("RCPT TO:<%s>%s" % (addr, " " + params if params else ""))

    def data(self, message, stuff=True):
        """DATA with `message` (CRLF lines); returns the final reply."""
        expect(self.cmd("DATA"), 354)
        payload = dot_stuff(message) if stuff else message
        if not payload.endswith(b"\r\n") and payload:
            payload += b"\r\n"
        self.send(payload + b".\r\n")
        return self.reply()

    def send_mail(self, sender, rcpts, message):
        """One whole transaction after EHLO; returns the queue id."""
        expect(self.mail(sender), 250, "2.1.0")
        for r in rcpts:
            expect(self.rcpt(r), 250, "2.1.5")
        r = self.data(message)
        expect(r, 250, "2.0.0")
        assert r.queue_id, "no queue id in %r" % r
        return r.queue_id

    def quit(self):
        try:
            return self.cmd("QUIT")
        finally:
            self.close()


# ---------------------------------------------------------------------------
# Messages

def dot_stuff(message):
    if isinstance(message, str):
        message = message.encode("utf-8")
    out = re.sub(rb"(?m)^\.", b"..", message)
    return out


def crlf(text):
    """Text with LF (or CRLF) lines -> bytes with CRLF lines."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def to_lf(data):
    return data.replace(b"\r\n", b"\n")


_seq = [0]


def _openssl(*args):
    return subprocess.run(["openssl"] + list(args), check=True, capture_output=True).stdout


def dkim_rsa_key(directory):
    """A 2048-bit RSA key made by openssl in directory, for messages that
    python3-dkim signs: (the private key in PEM, its DKIM key record
    "v=DKIM1; k=rsa; p=...")."""
    key = os.path.join(directory, "dkim-rsa.pem")
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
    der = _openssl("pkey", "-in", key, "-pubout", "-outform", "DER")
    with open(key, "rb") as f:
        return f.read(), "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def dkim_ed25519_key(directory):
    """An Ed25519 key made by openssl in directory, for messages that
    python3-dkim signs: (the private key as python3-dkim wants it, the
    seed in base64, its DKIM key record "v=DKIM1; k=ed25519; p=...")."""
    key = os.path.join(directory, "dkim-ed25519.pem")
    _openssl("genpkey", "-algorithm", "ED25519", "-out", key)
    # PKCS#8 and SubjectPublicKeyInfo DER end with the seed, the public key
    seed = _openssl("pkey", "-in", key, "-outform", "DER")[-32:]
    pub = _openssl("pkey", "-in", key, "-pubout", "-outform", "DER")[-32:]
    return base64.b64encode(seed), "v=DKIM1; k=ed25519; p=" + base64.b64encode(pub).decode()


def dkim_zone_record(text):
    """The DKIM key record in the zone-file text `fulmar dkim keygen`
    prints: its quoted strings (none over 255 octets) joined."""
    m = re.search(r"IN TXT \((.*?)\)", text, re.S)
    assert m, text
    strings = re.findall(r'"([^"]*)"', m.group(1))
    assert all(len(s) <= 255 for s in strings), strings
    return "".join(strings)


def dkim_keygen(keydir, domain, selector, *extra):
    """A key made by `fulmar dkim keygen DOMAIN SELECTOR --dir keydir
    [extra]` (extra: "--ed25519", "--bits", ...), keydir and the key given
    to RUN_USER so that a daemon can read them: (the key's path, the
    DKIM key record keygen printed)."""
    r = subprocess.run([fulmar_bin(), "dkim", "keygen", domain, selector, "--dir", keydir]
                       + list(extra), capture_output=True, timeout=120)
    assert r.returncode == 0, "fulmar dkim keygen: exit %d\n%s" % (r.returncode,
                                                                  r.stderr.decode())
    record = dkim_zone_record(r.stdout.decode())
    path = os.path.join(keydir, "%s.%s.key" % (domain, selector))
    _chown_run_user(keydir)
    _chown_run_user(path)
    return path, record


HEADER_HOLD = 64 * 1024   # the header section a session holds (session_txn.c)


def header_filler(room):
    """Unsigned filler header fields of exactly room octets (at least
    about 420), each line under 1,000 octets."""
    fill = b"X-Filler: " + b"x" * 388 + b"\r\n"   # 400 octets
    n = (room - len(fill)) // len(fill)
    pad = b"X-Pad: " + b"p" * (room - n * len(fill) - 9) + b"\r\n"
    out = fill * n + pad
    assert len(out) == room
    return out


def make_message(subject="test", body="Hello.\n", sender="sender@client.test",
                 to="alice@example.test", msgid=None, extra_headers=()):
    """An RFC 5322 message with CRLF line endings and a unique Message-ID."""
    _seq[0] += 1
    if msgid is None:
        msgid = "<%d.%d.%d@client.test>" % (os.getpid(), _seq[0], time.monotonic_ns())
    head = ["From: <%s>" % sender, "To: <%s>" % to, "Subject: %s" % subject,
            "Message-ID: %s" % msgid, "Date: Sun, 29 Nov 2026 09:00:00 +0000"]
    head += list(extra_headers)
    if isinstance(body, bytes):
        return crlf("\n".join(head).encode("utf-8") + b"\n\n" + body)
    return crlf("\n".join(head) + "\n\n" + body)


# ---------------------------------------------------------------------------
# Queue

def queue_file_id(path):
    """The id in the I record of the queue file at path (the second
    record, after V), or None when the file does not start that way."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        return None
    if head[:1] != b"V" or len(head) < 5:
        return None
    at = 5 + int.from_bytes(head[1:5], "big")
    if head[at:at + 1] != b"I" or len(head) < at + 5:
        return None
    n = int.from_bytes(head[at + 1:at + 5], "big")
    return head[at + 5:at + 5 + n].decode("ascii", "replace")


def is_prepared_queue_file(path):
    """One of the files the queue keeps ahead of need
    (src/queue/prepared.h), not a message: empty without the committed
    mark (mode 0600), or recycled, holding a finished message under
    another id (its I record)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if st.st_size == 0:
        return (st.st_mode & 0o777) == 0o600
    fid = queue_file_id(path)
    return fid is not None and fid != os.path.basename(path)


def queue_dir_messages(state_dir, sub="active", skip_prepared=True):
    """Names in STATE_DIR/queue/SUB, prepared files left out (unless
    skip_prepared is false: every name)."""
    d = os.path.join(state_dir, "queue", sub)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    return sorted(n for n in names
                  if not (skip_prepared and is_prepared_queue_file(os.path.join(d, n))))


def prepared_queue_files(state_dir):
    """Names of the prepared files in STATE_DIR/queue/active."""
    d = os.path.join(state_dir, "queue", "active")
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if is_prepared_queue_file(os.path.join(d, n)))


# Maildir

def maildir_files(maildir):
    """Delivered files: new/ and cur/ (a reader may have moved them)."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        out += [os.path.join(d, n) for n in names if not n.startswith(".")]
    return sorted(out)


def maildir_tmp_files(maildir):
    try:
        return os.listdir(os.path.join(maildir, "tmp"))
    except FileNotFoundError:
        return []


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def maildir_messages(maildir):
    return [read_file(p) for p in maildir_files(maildir)]


def wait_for_count(maildir, n, timeout=10.0, settle=0.3):
    """Poll until at least n messages are in the Maildir, then wait `settle`
    seconds more so that a surplus delivery would show too. Returns the
    file contents."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(maildir_files(maildir)) < n:
        time.sleep(0.05)
    if settle:
        time.sleep(settle)
    return maildir_messages(maildir)


def wait_for_one(maildir, timeout=10.0):
    msgs = wait_for_count(maildir, 1, timeout)
    assert len(msgs) == 1, "expected exactly 1 message in %s, found %d" % (maildir, len(msgs))
    return msgs[0]


def parse_fields(header_block):
    """b"Name: value\\n\\tmore\\n..." -> [(name_lower, unfolded value)]."""
    fields = []
    for raw in header_block.split(b"\n"):
        if not raw:
            continue
        if raw[:1] in (b" ", b"\t") and fields:
            n, v = fields[-1]
            fields[-1] = (n, v + " " + raw.strip().decode("utf-8", "replace"))
            continue
        name, sep, value = raw.partition(b":")
        assert sep, "not a header field: %r" % raw
        fields.append((name.decode("utf-8", "replace").strip().lower(),
                       value.strip().decode("utf-8", "replace")))
    return fields


def split_delivered(data, original):
    """Check that a delivered file is Fulmar's added header fields followed
    by `original` (the message as sent, CRLF converted to LF). Returns the
    added fields as [(name_lower, value)]."""
    original = to_lf(original)
    assert data.endswith(original), (
        "delivered file does not end with the message as sent\n"
        "delivered (first 600 octets): %r\nexpected tail (first 300): %r"
        % (data[:600], original[:300]))
    prefix = data[:len(data) - len(original)]
    assert prefix.endswith(b"\n"), "added headers not newline-terminated: %r" % prefix[-200:]
    assert b"\r" not in prefix, "CR in the added headers: %r" % prefix
    return parse_fields(prefix)


def check_added_headers(fields, sender, mailbox, helo=None, qid=None, for_rcpt=None,
                        proto="ESMTP"):
    """Assert the Return-Path / Delivered-To / Received fields Fulmar adds."""
    names = [n for n, _ in fields]
    assert names[:2] == ["return-path", "delivered-to"], "added fields: %r" % (fields,)
    assert "received" in names, "no Received: in %r" % (fields,)
    assert fields[0][1] == "<%s>" % sender, "Return-Path: %r" % fields[0][1]
    assert fields[1][1].strip("<>").lower() == mailbox.lower(), "Delivered-To: %r" % fields[1][1]
    rec = [v for n, v in fields if n == "received"][0]
    assert rec.startswith("from "), rec
    if helo:
        assert helo in rec, "EHLO name %r not in Received: %r" % (helo, rec)
    assert "[127.0.0.1]" in rec, rec
    assert re.search(r"\bwith %s\b" % re.escape(proto), rec), "protocol %s not in %r" % (proto, rec)
    assert re.search(r"\bby %s\b" % re.escape(HOSTNAME), rec), rec
    if qid:
        assert re.search(r"\bid <?%s>?" % re.escape(qid), rec), "id %s not in %r" % (qid, rec)
    if for_rcpt:
        assert re.search(r"\bfor <?%s>?" % re.escape(for_rcpt), rec), \
            "for %s not in %r" % (for_rcpt, rec)
    return rec


def all_maildir_counts(daemon):
    return {u: len(maildir_files(daemon.maildir(u))) for u in MAILBOXES.values()}


def wait_until(pred, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


def dot_stuff(msg):
    """RFC 5321 4.5.2 transparency: double a leading dot on every line."""
    return (b"." if msg.startswith(b".") else b"") + msg.replace(b"\r\n.", b"\r\n..")


def send_one(d, rcpts, msg, sender="s@client.test"):
    """One transaction on a fresh connection; returns the queue id."""
    with SMTPClient(d.port) as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<%s>" % sender), 250)
        for r in rcpts:
            expect(c.cmd("RCPT TO:<%s>" % r), 250)
        expect(c.cmd("DATA"), 354)
        c.send(dot_stuff(msg) + b".\r\n")
        return expect(c.reply(), 250, "2.0.0").queue_id
