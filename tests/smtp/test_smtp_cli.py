"""The command line: check-config (errors as file:line), version, queue
list, usage errors."""

import os
import pwd
import re
import subprocess

import pytest

import fulmar_test
from fulmar_test import Daemon, libconfig_text

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def conf_dir(request):
    d = Daemon()   # not started: only its directory and config are used
    yield d
    d.cleanup()


def run(*args):
    r = subprocess.run([fulmar_test.fulmar_bin()] + list(args), capture_output=True, timeout=30)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def write_lines(d, name, lines):
    p = os.path.join(d.root, name)
    with open(p, "w") as f:
        f.write("\n".join(lines) + "\n")
    return p


def line_of(lines, needle):
    return [i + 1 for i, ln in enumerate(lines) if needle in ln][0]


def reported_lines(stderr, path):
    return [int(n) for n in re.findall(re.escape(path) + r":(\d+):", stderr)]


def no_sanitizer(err):
    assert not any(m in err for m in fulmar_test.SANITIZER_MARKERS), err


def test_check_config_valid(conf_dir):
    rc, out, err = run("check-config", "--config", conf_dir.config_path)
    assert rc == 0, err
    no_sanitizer(err)


def test_check_config_annotated_example_is_valid():
    rc, out, err = run("check-config", "--config",
                       os.path.join(fulmar_test.REPO_ROOT, "etc", "fulmar.conf"))
    assert rc == 0, err


def test_check_config_syntax_error(conf_dir):
    lines = libconfig_text(conf_dir.config).splitlines()
    n = line_of(lines, "hostname =")
    lines[n - 1] = lines[n - 1].replace("=", "")     # "hostname "x";"
    p = write_lines(conf_dir, "syntax.conf", lines)
    rc, out, err = run("check-config", "--config", p)
    assert rc == 1, (rc, err)
    got = reported_lines(err, p)
    assert got and got[0] in (n, n + 1), "want %s:%d: in %r" % (p, n, err)
    no_sanitizer(err)


def test_check_config_unbalanced_braces(conf_dir):
    lines = libconfig_text(conf_dir.config).splitlines() + ["limits = { errors = 5;"]
    p = write_lines(conf_dir, "braces.conf", lines)
    rc, out, err = run("check-config", "--config", p)
    assert rc == 1 and reported_lines(err, p), err


def test_check_config_unknown_role(conf_dir):
    conf_dir.config["listeners"][0]["role"] = "submission-with-magic"
    lines = libconfig_text(conf_dir.config).splitlines()
    p = write_lines(conf_dir, "role.conf", lines)
    rc, out, err = run("check-config", "--config", p)
    assert rc == 1, (rc, err)
    n = line_of(lines, "submission-with-magic")
    assert n in reported_lines(err, p), "want %s:%d: in %r" % (p, n, err)


def test_check_config_missing_maildir(conf_dir):
    conf_dir.config["local"]["domains"][0]["mailboxes"].append({"user": "zed"})
    lines = libconfig_text(conf_dir.config).splitlines()
    p = write_lines(conf_dir, "maildir.conf", lines)
    rc, out, err = run("check-config", "--config", p)
    assert rc == 1, (rc, err)
    n = line_of(lines, '"zed"')
    got = reported_lines(err, p)
    assert any(abs(g - n) <= 1 for g in got), "want %s:%d: in %r" % (p, n, err)


def test_check_config_reports_every_error(conf_dir):
    conf_dir.config["listeners"][0]["role"] = "bogus-role"
    conf_dir.config["listeners"][0]["port"] = 70000
    conf_dir.config["server"]["log_level"] = "loud"
    conf_dir.config["local"]["domains"][0]["mailboxes"].append({"user": "zed"})
    lines = libconfig_text(conf_dir.config).splitlines()
    p = write_lines(conf_dir, "many.conf", lines)
    rc, out, err = run("check-config", "--config", p)
    assert rc == 1, (rc, err)
    got = reported_lines(err, p)
    for needle in ('"bogus-role"', "70000", '"loud"', '"zed"'):
        n = line_of(lines, needle)
        assert any(abs(g - n) <= 1 for g in got), "no error at %s:%d (%s) in %r" % (
            p, n, needle, err)


def test_check_config_missing_file(conf_dir):
    p = os.path.join(conf_dir.root, "does-not-exist.conf")
    rc, out, err = run("check-config", "--config", p)
    assert rc == 1, (rc, err)
    assert p in err


def test_serve_refuses_a_bad_config(conf_dir):
    conf_dir.config["listeners"][0]["role"] = "nonsense"
    conf_dir.write_config()
    r = subprocess.run([fulmar_test.fulmar_bin(), "serve", "--config", conf_dir.config_path],
                       capture_output=True, timeout=20, env=conf_dir.env())
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode != 0
    assert conf_dir.config_path + ":" in err, err


def test_version():
    rc, out, err = run("version")
    assert rc == 0, err
    assert re.fullmatch(r"fulmar \d+\.\d+\.\d+\s*", out), out


def test_unknown_subcommand():
    rc, out, err = run("frobnicate")
    assert rc == 2, (rc, out, err)
    assert "usage" in err.lower(), err


def test_queue_list_empty(fulmar):
    assert fulmar.queue_list() == []


def test_queue_list_when_stopped(conf_dir):
    rc, out, err = run("queue", "list", "--config", conf_dir.config_path)
    assert rc == 0, err
    assert out.strip() == ""


def proc_ids(pid):
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(("Uid:", "Gid:")):
                ids[ln[:3]] = [int(x) for x in ln.split()[1:]]
    return ids


@pytest.mark.skipif(not fulmar_test.is_root(), reason="privilege drop needs root")
def test_drops_root_privileges(fulmar):
    pw = pwd.getpwnam(fulmar_test.RUN_USER)
    ids = proc_ids(fulmar.proc.pid)
    assert set(ids["Uid"]) == {pw.pw_uid}, ids    # real, effective, saved, fs
    assert set(ids["Gid"]) == {pw.pw_gid}, ids
    with fulmar_test.SMTPClient(fulmar.port) as c:
        c.ehlo()
        c.send_mail("s@client.test", ["alice@example.test"], fulmar_test.make_message())
    fulmar_test.wait_for_one(fulmar.maildir("alice"))
    for p in fulmar_test.maildir_files(fulmar.maildir("alice")):
        assert os.stat(p).st_uid == pw.pw_uid


def test_log_file(fulmar_factory):
    d = fulmar_factory(start=False)
    logdir = os.path.join(d.root, "log")
    os.makedirs(logdir)
    fulmar_test._chown_run_user(logdir)
    d.config["server"]["log_file"] = os.path.join(logdir, "fulmar.log")
    d.write_config()
    d.start()
    with fulmar_test.SMTPClient(d.port) as c:
        c.ehlo()
        qid = c.send_mail("s@client.test", ["bob@example.test"], fulmar_test.make_message())
    fulmar_test.wait_for_one(d.maildir("bob"))

    def lines():
        try:
            with open(d.config["server"]["log_file"], errors="replace") as f:
                return [ln for ln in f if qid in ln]
        except FileNotFoundError:
            return []
    assert fulmar_test.wait_until(lambda: len(lines()) >= 2, 5), lines()
    assert any("queued" in ln for ln in lines())
