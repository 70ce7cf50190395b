"""A tiny authoritative DNS server on loopback for tests (stdlib only).

Serves A, AAAA, PTR, MX and TXT records from a dict; answers NXDOMAIN for
unknown names, SERVFAIL for names listed in `servfail`, and ignores (times
out) names listed in `drop`. UDP only, one thread. Not a general server:
just enough for Fulmar's tests to talk to a real resolver path.
"""
import socket
import struct
import threading

TYPES = {"A": 1, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            b = label.encode()
            out += bytes([len(b)]) + b
    return out + b"\0"


def _decode_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            ptr = struct.unpack("!H", msg[off:off + 2])[0] & 0x3FFF
            labels.append(_decode_name(msg, ptr)[0])
            return ".".join(x for x in labels if x), off + 2
        off += 1
        if n == 0:
            return ".".join(labels), off
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n


def _rdata(rtype, value):
    if rtype == 1:
        return socket.inet_pton(socket.AF_INET, value)
    if rtype == 28:
        return socket.inet_pton(socket.AF_INET6, value)
    if rtype == 12:
        return _encode_name(value)
    if rtype == 15:
        pref, host = value
        return struct.pack("!H", pref) + _encode_name(host)
    if rtype == 16:
        b = value.encode()
        return b"".join(bytes([len(b[i:i + 255])]) + b[i:i + 255]
                        for i in range(0, max(len(b), 1), 255))
    raise ValueError(rtype)


class DNSServer:
    """records: {("name", "TYPE"): [values]}; names are case-insensitive."""

    def __init__(self, records, servfail=(), drop=()):
        self.records = {(n.lower().rstrip("."), t): v for (n, t), v in records.items()}
        self.servfail = {n.lower() for n in servfail}
        self.drop = {n.lower() for n in drop}
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _answer(self, msg):
        qid, flags, qd = struct.unpack("!HHH", msg[:6])
        name, off = _decode_name(msg, 12)
        qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
        question = msg[12:off + 4]
        lname = name.lower()
        self.queries.append((lname, qtype))
        if lname in self.drop:
            return None
        rcode = 0
        answers = []
        if lname in self.servfail:
            rcode = 2
        else:
            tname = {v: k for k, v in TYPES.items()}.get(qtype)
            values = self.records.get((lname, tname))
            if values:
                answers = [_rdata(qtype, v) for v in values]
            elif not any(k[0] == lname for k in self.records):
                rcode = 3
        head = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode, 1,
                           len(answers), 0, 0)
        body = question
        for rd in answers:
            body += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, len(rd)) + rd
        return head + body

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                resp = self._answer(msg)
            except Exception:  # malformed query: no answer
                resp = None
            if resp:
                self.sock.sendto(resp, peer)

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()
