"""A tiny authoritative DNS server on loopback for tests (stdlib only).

Serves A, AAAA, PTR, MX, TXT and CNAME records from a dict:

    DNSServer({("example.test", "MX"): [(10, "mx1.example.test")],
               ("mx1.example.test", "A"): ["127.0.0.10"],
               ("nullmx.test", "MX"): [(0, ".")],            # Null MX (RFC 7505)
               ("alias.test", "CNAME"): ["example.test"],
               ("exists.test", "TXT"): []},                   # NODATA for every type
              servfail=["broken.test", ("half.test", "MX")],
              drop=["silent.test"])

Answers:
- a name with records of the asked type: those records (NOERROR);
- a name with a CNAME (and the asked type is not CNAME): the CNAME, then
  the chain is followed inside the served data (at most 8 links) and the
  target's records of the asked type are added; the rcode is the final
  target's (NXDOMAIN when the chain ends at a name not served);
- a name that exists with other types only (or listed with []): NOERROR
  with an empty answer (NODATA);
- any other name: NXDOMAIN.
`servfail` and `drop` take names (every type) or (name, "TYPE") pairs:
SERVFAIL, or no answer at all (the client times out). Names are
case-insensitive. Records can be changed while serving with set()/remove().
UDP only, one thread, 127.0.0.1 only. `queries` lists (name, qtype number)
of every question received, in order.
"""
import socket
import struct
import threading

TYPES = {"A": 1, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
TYPE_NAMES = {v: k for k, v in TYPES.items()}

RCODE_NOERROR = 0
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3

MAX_CNAME_CHAIN = 8


def _norm(name):
    return name.lower().rstrip(".")


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            b = label.encode()
            out += bytes([len(b)]) + b
    return out + b"\0"


def _decode_name(msg, off, depth=0):
    if depth > 16:
        raise ValueError("compression loop")
    labels = []
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            ptr = struct.unpack("!H", msg[off:off + 2])[0] & 0x3FFF
            labels.append(_decode_name(msg, ptr, depth + 1)[0])
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
    if rtype in (5, 12):
        return _encode_name(value)
    if rtype == 15:
        pref, host = value
        # host "." (or "") is the root: a Null MX (RFC 7505) is MX 0 "."
        return struct.pack("!H", pref) + _encode_name(host)
    if rtype == 16:
        b = value.encode()
        return b"".join(bytes([len(b[i:i + 255])]) + b[i:i + 255]
                        for i in range(0, max(len(b), 1), 255))
    raise ValueError(rtype)


class DNSServer:
    """records: {("name", "TYPE"): [values]}; names are case-insensitive.
    MX values are (preference, host); CNAME and PTR values are names."""

    def __init__(self, records, servfail=(), drop=(), ttl=60):
        self.lock = threading.Lock()
        self.records = {}
        for (n, t), v in records.items():
            self.records[(_norm(n), t.upper())] = list(v)
        self.servfail = {self._key(x) for x in servfail}
        self.drop = {self._key(x) for x in drop}
        self.ttl = ttl
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True,
                                       name="dns-%d" % self.port)
        self.thread.start()

    # -- the data -----------------------------------------------------
    @staticmethod
    def _key(x):
        if isinstance(x, (tuple, list)):
            return (_norm(x[0]), x[1].upper())
        return (_norm(x), None)

    @property
    def address(self):
        """The value for Fulmar's dns.resolvers."""
        return "127.0.0.1:%d" % self.port

    def set(self, name, rtype, values):
        with self.lock:
            self.records[(_norm(name), rtype.upper())] = list(values)

    def remove(self, name, rtype=None):
        with self.lock:
            for k in list(self.records):
                if k[0] == _norm(name) and (rtype is None or k[1] == rtype.upper()):
                    del self.records[k]

    def set_servfail(self, name, rtype=None, on=True):
        k = (_norm(name), rtype.upper() if rtype else None)
        with self.lock:
            (self.servfail.add if on else self.servfail.discard)(k)

    def set_drop(self, name, rtype=None, on=True):
        k = (_norm(name), rtype.upper() if rtype else None)
        with self.lock:
            (self.drop.add if on else self.drop.discard)(k)

    def queried(self, name, rtype=None):
        """How many questions for name (and type) were received."""
        n = _norm(name)
        t = TYPES[rtype.upper()] if rtype else None
        return sum(1 for q, qt in list(self.queries) if q == n and (t is None or qt == t))

    def _listed(self, which, lname, tname):
        return (lname, None) in which or (lname, tname) in which

    def _exists(self, lname):
        return any(k[0] == lname for k in self.records)

    def _resolve(self, lname, qtype):
        """(rcode, [(owner, rtype, rdata)]) for a question, following CNAMEs."""
        tname = TYPE_NAMES.get(qtype)
        answers = []
        name = lname
        seen = set()
        for _ in range(MAX_CNAME_CHAIN + 1):
            values = self.records.get((name, tname)) if tname else None
            if values:
                answers += [(name, qtype, _rdata(qtype, v)) for v in values]
                return RCODE_NOERROR, answers
            cname = self.records.get((name, "CNAME"))
            if cname and qtype != 5:
                target = _norm(cname[0])
                answers.append((name, 5, _rdata(5, target)))
                if target in seen:
                    return RCODE_SERVFAIL, []
                seen.add(name)
                name = target
                continue
            if self._exists(name):
                return RCODE_NOERROR, answers      # NODATA (after any CNAMEs)
            return RCODE_NXDOMAIN, answers
        return RCODE_SERVFAIL, []

    # -- the wire -----------------------------------------------------
    def _answer(self, msg):
        qid, flags, qd = struct.unpack("!HHH", msg[:6])
        name, off = _decode_name(msg, 12)
        qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
        question = msg[12:off + 4]
        lname = _norm(name)
        tname = TYPE_NAMES.get(qtype, str(qtype))
        with self.lock:
            self.queries.append((lname, qtype))
            if self._listed(self.drop, lname, tname):
                return None
            if self._listed(self.servfail, lname, tname):
                rcode, answers = RCODE_SERVFAIL, []
            else:
                rcode, answers = self._resolve(lname, qtype)
        # QR, AA, RD copied, RA
        head = struct.pack("!HHHHHH", qid, 0x8480 | (flags & 0x0100) | rcode, 1,
                           len(answers), 0, 0)
        body = question
        for owner, rtype, rd in answers:
            # the question's name as a pointer, other owners written out
            oname = b"\xc0\x0c" if owner == lname else _encode_name(owner)
            body += oname + struct.pack("!HHIH", rtype, 1, self.ttl, len(rd)) + rd
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
                try:
                    self.sock.sendto(resp, peer)
                except OSError:
                    pass

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
