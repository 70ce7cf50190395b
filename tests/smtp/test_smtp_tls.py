"""STARTTLS on the mx listener (RFC 3207): real clients (smtplib, swaks,
openssl s_client), the CVE-2011-0411 injection probe, state reset after
the handshake, refused protocol versions, and the Received: trace."""
import os
import socket
import ssl
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fulmar_test  # noqa: E402
from fulmar_test import (SMTPClient, expect, make_message, split_delivered,  # noqa: E402
                         wait_for_one)


@pytest.fixture
def tls_fulmar(fulmar_factory):
    d = fulmar_factory(start=False)
    cert = os.path.join(d.root, "cert.pem")
    key = os.path.join(d.root, "key.pem")
    r = subprocess.run([d.bin, "tls", "selfsigned", "--cert", cert, "--key", key,
                        "--hostname", "mx.test.local"], capture_output=True, timeout=30,
                       env=d.env())
    assert r.returncode == 0, r.stderr
    assert os.stat(key).st_mode & 0o777 == 0o600
    d.config["listeners"][0].update({"tls_cert": cert, "tls_key": key})
    d.write_config()
    d.start()
    d.cert = cert
    return d


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def raw_reply(sock, timeout=10):
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and lines[-2][3:4] == b" ":
            return data


def test_ehlo_offers_starttls_only_when_configured(tls_fulmar, fulmar):
    with SMTPClient(tls_fulmar.port) as c:
        assert "STARTTLS" in c.ehlo().text
    with SMTPClient(fulmar.port) as c:
        assert "STARTTLS" not in c.ehlo().text
        expect(c.cmd("STARTTLS"), 502, "5.5.1")


def test_smtplib_starttls_delivers_with_esmtps(tls_fulmar):
    import smtplib
    msg = make_message(subject="over tls")
    with smtplib.SMTP("127.0.0.1", tls_fulmar.port, timeout=15) as s:
        s.ehlo("tls.client.test")
        s.starttls(context=client_ctx())
        s.ehlo("tls.client.test")
        assert not s.has_extn("starttls")   # not offered twice
        assert s.sendmail("s@client.test", ["alice@example.test"], msg) == {}
    data = wait_for_one(tls_fulmar.maildir("alice"))
    split_delivered(data, msg)
    head = data.split(b"\n\n")[0]
    assert b"with ESMTPS id" in head, head
    assert b"(using TLSv1.3 with cipher" in head, head
    assert "event=tls" in tls_fulmar.log_text()


def test_swaks_tls(tls_fulmar):
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % tls_fulmar.port, "--tls",
                        "--from", "sw@client.test", "--to", "bob@example.test",
                        "--body", "via swaks tls"], capture_output=True, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "queued as" in out
    assert b"via swaks tls" in wait_for_one(tls_fulmar.maildir("bob"))


def test_openssl_s_client_starttls(tls_fulmar):
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        "127.0.0.1:%d" % tls_fulmar.port, "-brief", "-ign_eof"],
                       input=b"ehlo s.client.test\r\nquit\r\n", capture_output=True,
                       timeout=30)
    text = (r.stdout + r.stderr).decode(errors="replace")
    assert "Protocol version: TLSv1.3" in text, text
    assert "221 2.0.0" in text, text


def test_starttls_injection_is_not_answered_inside_tls(tls_fulmar):
    """CVE-2011-0411: NOOP pipelined behind STARTTLS in the same segment
    must be thrown away, never answered after the handshake."""
    sock = socket.create_connection(("127.0.0.1", tls_fulmar.port), timeout=10)
    raw_reply(sock)
    sock.sendall(b"EHLO inj.client.test\r\n")
    raw_reply(sock)
    sock.sendall(b"STARTTLS\r\nNOOP\r\n")
    first = raw_reply(sock)
    assert first.startswith(b"220 2.0.0"), first
    assert b"250" not in first, first
    tls = client_ctx().wrap_socket(sock, server_hostname="mx.test.local")
    tls.sendall(b"EHLO inj.client.test\r\n")
    got = raw_reply(tls)
    assert got.startswith(b"250-mx.test.local"), got   # the EHLO's, not a NOOP's
    tls.sendall(b"NOOP\r\n")
    assert raw_reply(tls).startswith(b"250 2.0.0"), "session not usable"
    tls.settimeout(0.5)
    try:
        extra = tls.recv(4096)
    except (socket.timeout, ssl.SSLError):
        extra = b""
    assert extra == b"", extra
    tls.close()


def test_state_is_reset_after_starttls(tls_fulmar):
    sock = socket.create_connection(("127.0.0.1", tls_fulmar.port), timeout=10)
    raw_reply(sock)
    sock.sendall(b"EHLO a.client.test\r\n")
    raw_reply(sock)
    sock.sendall(b"STARTTLS\r\n")
    assert raw_reply(sock).startswith(b"220")
    tls = client_ctx().wrap_socket(sock, server_hostname="mx.test.local")
    tls.sendall(b"MAIL FROM:<s@client.test>\r\n")   # no EHLO since the handshake
    assert raw_reply(tls).startswith(b"503 5.5.1"), "EHLO must be required again"
    tls.sendall(b"EHLO a.client.test\r\n")
    assert b"STARTTLS" not in raw_reply(tls)
    tls.sendall(b"STARTTLS\r\n")
    assert raw_reply(tls).startswith(b"503 5.5.1")
    tls.close()


def test_starttls_syntax_and_sequence(tls_fulmar):
    with SMTPClient(tls_fulmar.port) as c:
        c.ehlo()
        expect(c.cmd("STARTTLS now"), 501, "5.5.4")
        expect(c.cmd("MAIL FROM:<s@client.test>"), 250)
        expect(c.cmd("STARTTLS"), 503, "5.5.1")


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_protocols_refused(tls_fulmar, version):
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", version, "-cipher",
                        "DEFAULT@SECLEVEL=0", "-connect",
                        "127.0.0.1:%d" % tls_fulmar.port],
                       input=b"QUIT\r\n", capture_output=True, timeout=30)
    text = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode != 0 or "Cipher is (NONE)" in text, text


def test_handshake_garbage_closes_cleanly(tls_fulmar):
    sock = socket.create_connection(("127.0.0.1", tls_fulmar.port), timeout=10)
    raw_reply(sock)
    sock.sendall(b"EHLO g.client.test\r\nSTARTTLS\r\n")
    time.sleep(0.3)
    sock.recv(4096)
    sock.sendall(b"this is not a TLS ClientHello\r\n" * 10)
    sock.settimeout(5)
    try:
        rest = sock.recv(4096)
    except ConnectionResetError:
        rest = b""
    assert b"250" not in rest
    sock.close()
    with SMTPClient(tls_fulmar.port) as c:   # the server keeps serving
        c.ehlo()


def test_check_config_loads_tls_files(fulmar_factory):
    d = fulmar_factory(start=False)
    d.config["listeners"][0].update({"tls_cert": os.path.join(d.root, "missing.pem"),
                                     "tls_key": os.path.join(d.root, "missing.key")})
    d.write_config()
    r = d.cli("check-config", "--config", d.config_path)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert d.config_path + ":" in err and "missing.pem" in err, err


def test_example_configuration_is_valid():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([fulmar_test.fulmar_bin(), "check-config", "--config",
                        os.path.join(repo, "etc", "fulmar.conf")], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr.decode()


def peer_cn(port, servername=None):
    """Subject CN of the certificate the server shows after STARTTLS."""
    sni = ["-servername", servername] if servername else ["-noservername"]
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        "127.0.0.1:%d" % port, "-brief", "-ign_eof"] + sni,
                       input=b"quit\r\n", capture_output=True, timeout=30)
    text = (r.stdout + r.stderr).decode(errors="replace")
    for ln in text.splitlines():
        if ln.startswith("Peer certificate:"):
            return ln.split("CN = ", 1)[-1].strip()
    raise AssertionError(text)


def test_certificate_reload_on_sighup(tls_fulmar):
    d = tls_fulmar
    assert peer_cn(d.port) == "mx.test.local"
    with SMTPClient(d.port) as c:          # a session open across the reload
        c.ehlo()
        expect(c.cmd("MAIL FROM:<s@client.test>"), 250)
        r = subprocess.run([d.bin, "tls", "selfsigned", "--cert", d.cert, "--key",
                            d.cert.replace("cert.pem", "key.pem"), "--hostname",
                            "renewed.test.local"], capture_output=True, env=d.env())
        assert r.returncode == 0, r.stderr
        if fulmar_test.is_root():           # the daemon rereads it as its own user
            for f in (d.cert, d.cert.replace("cert.pem", "key.pem")):
                fulmar_test._chown_run_user(f)
        d.reload()
        deadline = time.time() + 10
        while "event=tls_reloaded" not in d.log_text() and time.time() < deadline:
            time.sleep(0.1)
        assert "event=tls_reloaded" in d.log_text(), d.log_tail()
        expect(c.cmd("RCPT TO:<alice@example.test>"), 250)   # still served
        expect(c.cmd("DATA"), 354)
        c.send(b"Subject: across reload\r\n\r\nx\r\n.\r\n")
        expect(c.reply(), 250, "2.0.0")
    assert peer_cn(d.port) == "renewed.test.local"


def test_broken_certificate_on_reload_keeps_the_old(tls_fulmar):
    d = tls_fulmar
    with open(d.cert, "w") as f:
        f.write("not a certificate\n")
    d.reload()
    deadline = time.time() + 10
    while "event=tls_reload_failed" not in d.log_text() and time.time() < deadline:
        time.sleep(0.1)
    assert "event=tls_reload_failed" in d.log_text()
    assert peer_cn(d.port) == "mx.test.local"


def test_sni_certificates(fulmar_factory):
    d = fulmar_factory(start=False)
    files = {}
    for host in ("mx.test.local", "other.test.local", "wild.test.local"):
        files[host] = (os.path.join(d.root, host + ".pem"), os.path.join(d.root, host + ".key"))
        subprocess.run([d.bin, "tls", "selfsigned", "--cert", files[host][0], "--key",
                        files[host][1], "--hostname", host], check=True, capture_output=True,
                       env=d.env())
    d.config["listeners"][0].update({
        "tls_cert": files["mx.test.local"][0], "tls_key": files["mx.test.local"][1],
        "sni": [{"name": "other.test.local", "tls_cert": files["other.test.local"][0],
                 "tls_key": files["other.test.local"][1]},
                {"name": "*.wild.test", "tls_cert": files["wild.test.local"][0],
                 "tls_key": files["wild.test.local"][1]}]})
    d.write_config()
    d.start()
    assert peer_cn(d.port) == "mx.test.local"
    assert peer_cn(d.port, "other.test.local") == "other.test.local"
    assert peer_cn(d.port, "OTHER.test.local") == "other.test.local"
    assert peer_cn(d.port, "mail.wild.test") == "wild.test.local"
    assert peer_cn(d.port, "unknown.test") == "mx.test.local"


def s_client(port, *args, stdin=b"quit\r\n"):
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        "127.0.0.1:%d" % port] + list(args), input=stdin,
                       capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def test_no_session_tickets_no_resumption(tls_fulmar):
    rc, text = s_client(tls_fulmar.port, "-ign_eof")
    assert "New Session Ticket" not in text, text
    assert "221 2.0.0" in text, text


def test_close_notify_sent(tls_fulmar):
    p = subprocess.run("(sleep 1; echo QUIT; sleep 1) | openssl s_client -quiet -starttls "
                       "smtp -connect 127.0.0.1:%d" % tls_fulmar.port, shell=True,
                       capture_output=True, timeout=30)
    text = (p.stdout + p.stderr).decode(errors="replace")
    assert "221 2.0.0" in text, text
    assert "unexpected eof" not in text, text


def test_failed_handshake_is_logged(tls_fulmar):
    s_client(tls_fulmar.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    deadline = time.time() + 5
    while "event=tls_failed" not in tls_fulmar.log_text() and time.time() < deadline:
        time.sleep(0.1)
    assert "event=tls_failed" in tls_fulmar.log_text(), tls_fulmar.log_tail()


def test_tls_options_configurable(fulmar_factory):
    d = fulmar_factory(start=False, tls={"min_version": "TLSv1.3"})
    cert, key = os.path.join(d.root, "c.pem"), os.path.join(d.root, "k.pem")
    subprocess.run([d.bin, "tls", "selfsigned", "--cert", cert, "--key", key], check=True,
                   capture_output=True, env=d.env())
    d.config["listeners"][0].update({"tls_cert": cert, "tls_key": key})
    d.write_config()
    d.start()
    rc, text = s_client(d.port, "-tls1_2")
    assert "Cipher is (NONE)" in text or rc != 0, text
    rc, text = s_client(d.port, "-tls1_3", "-ign_eof")
    assert "TLSv1.3" in text and "221 2.0.0" in text, text


def test_bad_tls_options_rejected(fulmar_factory):
    d = fulmar_factory(start=False, tls={"min_version": "TLSv1.0"})
    r = d.cli("check-config", "--config", d.config_path)
    assert r.returncode == 1 and b"TLSv1.2 or TLSv1.3" in r.stderr, r.stderr
