"""The daemon with one allocation made to fail (FULMAR_FAULT=alloc:N,
src/lib/mem.h), for the out-of-memory sweeps (tests/smtp/test_oom.py,
tests/verify/test_verify_oom.py): start it so that LeakSanitizer works,
and read what the fault did."""

import os
import stat

from fulmar_test import RUN_USER, is_root, maildir_files

OOM_CODES = (451, 421)


def run_as_unprivileged(d):
    """As root, start the daemon as RUN_USER already (a wrapper around the
    binary), so that it never drops privileges and LeakSanitizer works."""
    if not is_root():
        return
    wrapper = os.path.join(d.root, "fulmar-unprivileged")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nexec setpriv --reuid=%s --regid=%s --clear-groups %s "$@"\n'
                % (RUN_USER, RUN_USER, d.bin))
    os.chmod(wrapper, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH
             | stat.S_IXOTH)
    d.bin = wrapper


def alloc_fault_env(base, n):
    """base (an environment) with the nth fallible allocation failing and
    leak checking on."""
    e = dict(base, FULMAR_FAULT="alloc:%d:ENOMEM:1" % n)
    opts = [o for o in e.get("ASAN_OPTIONS", "").split(":")
            if o and not o.startswith("detect_leaks")]
    e["ASAN_OPTIONS"] = ":".join(opts + ["detect_leaks=1"])
    return e


def start_with_alloc_fault(fulmar_factory, n, overrides):
    overrides = dict(overrides)
    extra = overrides.pop("extra_listeners", [])
    d = fulmar_factory(start=False, **overrides)
    if extra:
        d.config["listeners"] += extra
        d.write_config()
    run_as_unprivileged(d)
    plain_env = d.env

    def env():
        return alloc_fault_env(plain_env(), n)

    d.env = env
    d.start()
    return d


def is_oom_refusal(r):
    return r.code in OOM_CODES and r.enh == "4.3.0" and "out of memory" in r.text.lower()


def delivered_with(maildir, subject):
    """The copies in maildir of the message with that subject, as bytes."""
    out = []
    for path in maildir_files(maildir):
        with open(path, "rb") as f:
            data = f.read()
        if subject.encode() in data:
            out.append(data)
    return out


def fault_landed(d):
    return "event=fault_injected" in d.log_text()
