#!/usr/bin/python3
"""Writes the golden messages of tests/unit/test_dkim_verify.c: messages
signed by python3-dkim (Debian's, 1.1.x) with the keys of this folder, and
the TXT records of those keys. Run it from anywhere; it rewrites the .eml
and .txt files here (the keys are made with openssl when missing).
Signing is deterministic (RSA PKCS#1 v1.5, Ed25519) and t= is fixed, so
running it again gives the same files.

    rsa.key / ed.key       private keys (PKCS#8 PEM)
    rsa.txt / ed.txt       their TXT records (v=DKIM1; k=...; p=...)
    py_*.eml               signed messages, described in SIGNED below
"""
import base64
import os
import subprocess
import time

import dkim

HERE = os.path.dirname(os.path.abspath(__file__))
T = 1715000000           # t= of every signature
DOMAIN = b"example.com"

MSG = (b"From: Alice <alice@example.com>\r\n"
       b"To: Bob <bob@example.net>\r\n"
       b"Subject: a test of\r\n"
       b"  DKIM verification, folded\r\n"
       b"Date: Mon, 6 May 2024 10:00:00 +0000\r\n"
       b"Message-ID: <v1@example.com>\r\n"
       b"\r\n"
       b"Hello Bob,\r\n"
       b"\r\n"
       b"a line  with   spaces \t\r\n"
       b"\r\n"
       b"\r\n")


def path(name):
    return os.path.join(HERE, name)


def keys():
    for name, alg in (("rsa.key", ["-algorithm", "RSA", "-pkeyopt",
                                   "rsa_keygen_bits:2048"]),
                      ("ed.key", ["-algorithm", "ED25519"])):
        if not os.path.exists(path(name)):
            subprocess.run(["openssl", "genpkey"] + alg + ["-out", path(name)],
                           check=True)
    rsa_pem = open(path("rsa.key"), "rb").read()
    spki = subprocess.run(["openssl", "pkey", "-in", path("rsa.key"), "-pubout",
                           "-outform", "DER"], check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-in", path("ed.key"), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    ed_seed = base64.b64encode(der[-32:])        # PKCS#8 ends with the seed
    ed_pub = subprocess.run(["openssl", "pkey", "-in", path("ed.key"), "-pubout",
                             "-outform", "DER"], check=True,
                            capture_output=True).stdout[-32:]
    with open(path("rsa.txt"), "wb") as f:
        f.write(b"v=DKIM1; k=rsa; p=" + base64.b64encode(spki))
    with open(path("ed.txt"), "wb") as f:
        f.write(b"v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_pub))
    return rsa_pem, ed_seed


def sign(msg, sel, key, alg=b"rsa-sha256", **kw):
    real = time.time
    time.time = lambda: T
    try:
        return dkim.sign(msg, sel, DOMAIN, key, signature_algorithm=alg, **kw) + msg
    finally:
        time.time = real


class Expiring(dkim.DKIM):
    """python3-dkim's signer with an x= tag (its sign() has no option for
    it): x= goes in just before b=."""

    def __init__(self, msg, x, **kw):
        super().__init__(msg, **kw)
        self.x = x

    def gen_header(self, fields, *args, **kw):
        fields.insert(len(fields) - 1, (b"x", str(self.x).encode()))
        return super().gen_header(fields, *args, **kw)


def sign_expiring(msg, sel, key, x):
    real = time.time
    time.time = lambda: T
    try:
        return Expiring(msg, x).sign(sel, DOMAIN, key) + msg
    finally:
        time.time = real


def main():
    rsa, ed = keys()
    signed = {
        # relaxed/simple (python3-dkim's default), h= with " : "
        "py_rsa.eml": sign(MSG, b"rsa", rsa),
        "py_ed.eml": sign(MSG, b"ed", ed, alg=b"ed25519-sha256"),
        "py_rsa_simple.eml": sign(MSG, b"rsa", rsa, canonicalize=(b"simple", b"simple")),
        "py_ed_relaxed.eml": sign(MSG, b"ed", ed, alg=b"ed25519-sha256",
                                  canonicalize=(b"relaxed", b"relaxed")),
        # l= of the body as signed; the test appends more after it
        "py_rsa_l.eml": sign(MSG, b"rsa", rsa, length=True),
        "py_rsa_sha1.eml": sign(MSG, b"rsa", rsa, alg=b"rsa-sha1"),
        "py_rsa_i.eml": sign(MSG, b"rsa", rsa, identity=b"alice@mail.example.com"),
        # x= an hour after t=
        "py_rsa_x.eml": sign_expiring(MSG, b"rsa", rsa, T + 3600),
    }
    for name, msg in signed.items():
        with open(path(name), "wb") as f:
            f.write(msg)
    records = {"rsa._domainkey.example.com": open(path("rsa.txt"), "rb").read(),
               "ed._domainkey.example.com": open(path("ed.txt"), "rb").read()}

    def dnsfunc(name, timeout=5):
        return records.get(name.decode().rstrip("."))

    for name, msg in signed.items():
        ok = dkim.verify(msg, dnsfunc=dnsfunc) if "sha1" not in name else None
        print(name, "python3-dkim verify:", ok)


if __name__ == "__main__":
    main()
