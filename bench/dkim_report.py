#!/usr/bin/env python3
"""Helpers of bench/dkim_run.sh: the key records, the check that what the
sink received is really signed, and the tables.

  dkim_report.py records OUT.json NAME=FILE...
      The TXT record of each key from a zone-file text (what `fulmar dkim
      record` prints, or opendkim-genkey's SELECTOR.txt): the quoted
      strings between "(" and ")", joined; written as {NAME: record}.

  dkim_report.py check --records REC.json [--expect SIGS] FILE...
      Verifies every DKIM-Signature of each message FILE (smtp-sink's dump
      files, LF line ends, or CRLF files) with python3-dkim, the keys
      looked up in REC.json instead of the DNS. SIGS: the signatures each
      message must carry, "ALG/SELECTOR,..." (e.g.
      "rsa-sha256/frsa,ed25519-sha256/fed"); empty: none at all. Prints a
      JSON object; exits 1 when a message is not as expected. Needs
      Debian's python3-dkim (and python3-nacl for Ed25519): run it with
      /usr/bin/python3.

  dkim_report.py report RESULTS.jsonl [--out FILE.md] [--note TEXT]
      The tables of docs/benchmarks.md's "DKIM signing" section.
      Throughput and CPU are medians over the rounds; the Fulmar/Postfix
      ratios are medians of the per-round ratios.
"""

import argparse
import json
import re
import sys

from report import fmt, load_problems, med
from tls_load import fmt_ratio


# ---------------------------------------------------------------- records
def cmd_records(a):
    out = {}
    for spec in a.keys:
        name, path = spec.split("=", 1)
        text = open(path).read()
        body = text[text.index("("):text.index(")", text.index("("))]
        out[name.rstrip(".") + "."] = "".join(re.findall(r'"([^"]*)"', body))
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


# ---------------------------------------------------------------- check
SIG_FIELD = re.compile(rb"^dkim-signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.I | re.M)


def tag(sig, name):
    m = re.search(rb"(?:^|;)\s*" + name + rb"\s*=\s*([^;]*)", sig)
    return re.sub(rb"\s+", b"", m.group(1)).decode() if m else "?"


def cmd_check(a):
    import dkim  # Debian's python3-dkim

    with open(a.records) as f:
        records = json.load(f)

    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        return records.get(n.rstrip(".") + ".", "").encode()

    want = sorted(x for x in a.expect.split(",") if x)
    files = ok = 0
    failures = []
    for path in a.files:
        files += 1
        raw = open(path, "rb").read()
        msg = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        head = msg.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        sigs = [m.group(1) for m in SIG_FIELD.finditer(head)]
        got = sorted(f"{tag(s, b'a')}/{tag(s, b's')}" for s in sigs)
        bad = []
        if got != want:
            bad.append(f"signatures {got or 'none'}, expected {want or 'none'}")
        d = dkim.DKIM(msg)
        for i in range(len(sigs)):
            try:
                if not d.verify(idx=i, dnsfunc=dnsfunc):
                    bad.append(f"signature {i + 1} ({got[i] if i < len(got) else '?'}) "
                               "does not verify")
            except dkim.DKIMException as e:
                bad.append(f"signature {i + 1}: {e}")
        if bad:
            failures.append(f"{path}: " + "; ".join(bad))
        else:
            ok += 1
    res = {"files": files, "ok": ok, "expect": want, "failures": failures[:5],
           "failed": len(failures)}
    print(json.dumps(res))
    sys.exit(0 if files and not failures else 1)


# ---------------------------------------------------------------- report
FULMAR = ("fulmar/none", "fulmar/rsa", "fulmar/ed25519", "fulmar/dual")
POSTFIX = ("postfix/plain", "postfix/opendkim", "postfix/opendkim-unix")
HEAD = {"fulmar/none": "Fulmar unsigned", "fulmar/rsa": "Fulmar RSA",
        "fulmar/ed25519": "Fulmar Ed25519", "fulmar/dual": "Fulmar dual",
        "postfix/plain": "Postfix unsigned",
        "postfix/opendkim": "Postfix + OpenDKIM (TCP)",
        "postfix/opendkim-unix": "Postfix + OpenDKIM (UNIX socket)"}
# Fulmar/Postfix pairs: the unsigned runs, and Fulmar's signed runs against
# Postfix signing through OpenDKIM (RSA-2048), its milter on loopback TCP
# and on a UNIX-domain socket.
PAIRS = (("unsigned", "fulmar/none", "postfix/plain"),
         ("RSA vs OpenDKIM TCP", "fulmar/rsa", "postfix/opendkim"),
         ("RSA vs OpenDKIM UNIX", "fulmar/rsa", "postfix/opendkim-unix"),
         ("Ed25519 vs OpenDKIM TCP", "fulmar/ed25519", "postfix/opendkim"),
         ("dual vs OpenDKIM TCP", "fulmar/dual", "postfix/opendkim"))


def table(header, rows):
    w = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i])
                               for i, h in enumerate(header)) + " |",
             "|" + "|".join("-" * (w[i] + 2) if i == 0 else "-" * (w[i] + 1) + ":"
                            for i in range(len(header))) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i])
                                       for i, c in enumerate(r)) + " |")
    return "\n".join(lines) + "\n"


def cmd_report(a):
    cost, speed, relay, direct, checks, signed, logs = [], None, {}, {}, [], [], []
    with open(a.results) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            k = rec["kind"]
            if k == "cost":
                cost.append(rec["res"])
            elif k == "openssl_speed":
                speed = rec["res"]
            elif k == "relay":
                relay.setdefault((rec["label"], rec["res"]["sessions"]), []).append(rec["res"])
            elif k == "direct":
                direct.setdefault(rec["res"]["sessions"], []).append(rec["res"])
            elif k == "check":
                checks.append(rec)
            elif k == "signed":
                signed.append(rec)
            elif k == "log" and rec["lines"]:
                logs.append(rec)
    text = ""
    problems = []

    # 1. Signing cost per message.
    if cost:
        def c(impl, alg, key):
            return med(r[key] for r in cost if r["impl"] == impl and r["alg"] == alg)
        msg_bytes = cost[0]["msg_bytes"]
        rounds = max(r["round"] for r in cost)
        rows = []
        for alg, name in (("rsa-sha256", "RSA-2048"), ("ed25519-sha256", "Ed25519"),
                          ("dual", "dual (RSA-2048 + Ed25519)")):
            fu, od = c("fulmar", alg, "us_per_sig"), c("opendkim", alg, "us_per_sig")
            fs, os_ = c("fulmar", alg, "sigs_per_s"), c("opendkim", alg, "sigs_per_s")
            if fu is None:
                continue
            rows.append((f"µs of CPU per message, {name}", fmt(fu, 0), fmt(od, 0),
                         fmt_ratio(fu / od) if od else "–"))
            rows.append((f"messages signed per second per core, {name}", fmt(fs, 0),
                         fmt(os_, 0), fmt_ratio(fs / os_) if os_ else "–"))
        text += (f"Signing cost: one {msg_bytes:,}-octet message signed over and over in "
                 f"one thread (bench/dkim_cost.c), relaxed/relaxed, the same keys; "
                 f"medians of {rounds} rounds.\n\n")
        text += table(("figure", "Fulmar", "OpenDKIM (libopendkim)", "Fulmar/OpenDKIM"), rows)
        if speed:
            text += (f"\nOpenSSL alone on this machine (`openssl speed`): RSA-2048 "
                     f"{speed['rsa2048_sign_per_s']:,.0f} signatures/s "
                     f"({1e6 / speed['rsa2048_sign_per_s']:,.0f} µs), Ed25519 "
                     f"{speed['ed25519_sign_per_s']:,.0f} signatures/s "
                     f"({1e6 / speed['ed25519_sign_per_s']:,.0f} µs).\n")
        text += "\n"

    # 2. Relay with signing on and off.
    if relay:
        labels = [x for x in FULMAR + POSTFIX if any(k[0] == x for k in relay)]
        levels = sorted({k[1] for k in relay})
        rows = []

        def val(label, n, key):
            rs = relay.get((label, n))
            if not rs:
                return None
            if key == "deliver_rate" and any(r["deliver_s"] is None for r in rs):
                return f"{max(r['count'] - r['delivered'] for r in rs)} lost"
            return med(r[key] for r in rs)

        for n in levels:
            cnt = med(r["count"] for lb in labels for r in relay.get((lb, n), []))
            rows.append((f"messages/s end to end, {n} sessions ({int(cnt):,} msgs)",
                         *(fmt(val(lb, n, "deliver_rate"), 0) for lb in labels)))
        for n in levels:
            rows.append((f"server CPU s per 1,000 messages, {n} sessions",
                         *(fmt(val(lb, n, "cpu_per_1000"), 2) for lb in labels)))
        for n in levels:
            if any(lb.startswith("postfix/opendkim") for lb in labels):
                rows.append((f"of which the opendkim process, {n} sessions",
                             *(fmt(med(r["extra_cpu_s"] * 1000.0 / r["count"]
                                       for r in relay.get((lb, n), [])), 2)
                               if lb.startswith("postfix/opendkim") else "–" for lb in labels)))
        for n in levels:
            def added(lb):
                base = "fulmar/none" if lb.startswith("fulmar") else "postfix/plain"
                if lb == base:
                    return "–"
                v, b = val(lb, n, "cpu_per_1000"), val(base, n, "cpu_per_1000")
                return fmt(v - b, 2) if v is not None and b is not None else "–"
            rows.append((f"CPU s per 1,000 added by signing, {n} sessions",
                         *(added(lb) for lb in labels)))
        text += table(("figure", *(HEAD[lb] for lb in labels)), rows)
        if direct:
            text += ("\nCeiling of the harness, smtp-source straight into smtp-sink: " +
                     ", ".join(f"{med(r['deliver_rate'] for r in rs):,.0f} messages/s "
                               f"at {n} sessions" for n, rs in sorted(direct.items())) + ".\n")

        # Ratios, paired per round.
        def paired(f_, p_, n, key):
            fs, ps = relay.get((f_, n), []), relay.get((p_, n), [])
            rs = [x[key] / y[key] for x, y in zip(fs, ps) if x.get(key) and y.get(key)]
            return med(rs)
        rrows = []
        pairs = [p for p in PAIRS if p[1] in labels and p[2] in labels]
        for n in levels:
            rrows.append((f"messages/s, {n} sessions",
                          *(fmt_ratio(paired(f_, p_, n, "deliver_rate")) for _, f_, p_ in pairs)))
        for n in levels:
            rrows.append((f"CPU per message, {n} sessions",
                          *(fmt_ratio(paired(f_, p_, n, "cpu_per_1000")) for _, f_, p_ in pairs)))
        for n in levels:
            def add_ratio(f_, p_):
                if f_ == "fulmar/none":
                    return "–"
                fv, fb = val(f_, n, "cpu_per_1000"), val("fulmar/none", n, "cpu_per_1000")
                pv, pb = val(p_, n, "cpu_per_1000"), val("postfix/plain", n, "cpu_per_1000")
                if None in (fv, fb, pv, pb) or pv - pb <= 0:
                    return "–"
                return fmt_ratio((fv - fb) / (pv - pb))
            rrows.append((f"CPU added by signing, {n} sessions",
                          *(add_ratio(f_, p_) for _, f_, p_ in pairs)))
        if pairs:
            text += "\nFulmar/Postfix (medians of the per-round ratios; Fulmar's signed runs " \
                    "against Postfix signing through OpenDKIM, RSA-2048):\n\n"
            text += table(("ratio Fulmar/Postfix", *(p[0] for p in pairs)), rrows)

        problems += load_problems(relay, "reached the sink")

    # 3. What proves the signing.
    if checks or signed:
        lines = []
        by = {}
        for rec in checks:
            by.setdefault(rec["label"], []).append(rec["res"])
        for lb in [x for x in FULMAR + POSTFIX if x in by]:
            rs = by[lb]
            files, ok = sum(r["files"] for r in rs), sum(r["ok"] for r in rs)
            exp = rs[0]["expect"]
            lines.append(f"{HEAD[lb]}: {ok} of {files} messages sampled from the server "
                         + (f"carried exactly {' and '.join(exp)}, each verified"
                            if exp else "carried no DKIM-Signature (as expected)"))
        if "cost" in by:
            rs = by["cost"]
            lines.append(f"signing cost: {sum(r['ok'] for r in rs)} of "
                         f"{sum(r['files'] for r in rs)} messages signed by bench/dkim_cost "
                         "(each signer and algorithm) verified")
        for rs in by.values():
            for r in rs:
                problems.extend(r["failures"])
        sig_by = {}
        for rec in signed:
            t = sig_by.setdefault(rec["label"], [0, 0])
            t[0] += rec["signed"]
            t[1] += rec["count"]
        for lb, (s_, n_) in sorted(sig_by.items(), key=lambda x: FULMAR.index(x[0])):
            lines.append(f"{HEAD[lb]}: `event=signed` log lines during the measured runs: "
                         f"{s_:,} for {n_:,} messages")
            want = 0 if lb == "fulmar/none" else n_
            if s_ != want:
                problems.append(f"{lb}: {s_} messages signed of {n_} sent (expected {want})")
        text += "\nSigning checked in this run (python3-dkim, keys from the records " \
                "instead of the DNS):\n" + "".join(f"- {x}\n" for x in lines)

    for rec in logs:
        problems.append(f"{rec['label']}: {rec['lines']} warning/error lines in Fulmar's log, "
                        f"e.g. {rec['sample'][:2]}")
    if a.note:
        text += f"\n{a.note}\n"
    if problems:
        text += "\nProblems seen in this run:\n" + "".join(f"- {p}\n" for p in problems)
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("records")
    r.add_argument("out")
    r.add_argument("keys", nargs="+", metavar="NAME=FILE")
    r.set_defaults(fn=cmd_records)
    c = sub.add_parser("check")
    c.add_argument("--records", required=True)
    c.add_argument("--expect", default="")
    c.add_argument("files", nargs="*")
    c.set_defaults(fn=cmd_check)
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("--out")
    p.add_argument("--note")
    p.set_defaults(fn=cmd_report)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
