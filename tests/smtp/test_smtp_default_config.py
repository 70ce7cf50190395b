"""The README's first command: `fulmar serve` with no --config runs the
embedded default on 127.0.0.1:2525/2587/2465 under ./var, makes its
self-signed certificate, and a user added with `fulmar user add` can
submit on both submission ports."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fulmar_test  # noqa: E402

PORTS = (2525, 2587, 2465)


def port_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_embedded_default_configuration():
    if not all(port_free(p) for p in PORTS):
        pytest.skip("the default ports are in use here")
    fulmar_test.ensure_run_user()
    root = fulmar_test.make_test_root("fulmar-default-")
    bin_ = fulmar_test.fulmar_bin()
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=0"
    proc = subprocess.Popen([bin_, "serve"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and not all(not port_free(p) for p in PORTS):
            time.sleep(0.1)
        assert all(not port_free(p) for p in PORTS), "default ports not listening"
        assert os.path.exists(os.path.join(root, "var", "tls", "cert.pem"))
        r = subprocess.run([bin_, "user", "add", "alice@example.test"], cwd=root, env=env,
                           input=b"demo password\n", capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        proc.send_signal(signal.SIGHUP)
        log = os.path.join(root, "var", "log", "fulmar.log")
        deadline = time.time() + 10
        while time.time() < deadline:
            if os.path.exists(log) and "1 users" in open(log).read():
                break
            time.sleep(0.1)
        for flags, port in ((["--tls"], 2587), (["--tlsc"], 2465)):
            r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port] + flags +
                               ["--auth", "PLAIN", "--auth-user", "alice@example.test",
                                "--auth-password", "demo password",
                                "--from", "alice@example.test", "--to", "bob@example.test"],
                               capture_output=True, timeout=60)
            assert r.returncode == 0, r.stdout.decode(errors="replace")
        r = subprocess.run(["swaks", "--server", "127.0.0.1:2525", "--to",
                            "alice@example.test", "--from", "x@client.test"],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stdout.decode(errors="replace")
        new = os.path.join(root, "var", "mail", "example.test", "bob", "new")
        deadline = time.time() + 10
        while time.time() < deadline and len(os.listdir(new)) < 2:
            time.sleep(0.1)
        assert len(os.listdir(new)) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            err = proc.communicate(timeout=15)[1].decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            err = proc.communicate()[1].decode(errors="replace")
    assert proc.returncode == 0, err
    assert "AddressSanitizer" not in err and "runtime error:" not in err, err
