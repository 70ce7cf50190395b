"""Verify messages with opendkim-testmsg, the key records served by the
loopback DNS server of the tests (tests/lib/dns_server.py).

opendkim-testmsg has no option to read keys from a file or to choose a
DNS server: libopendkim asks the resolvers of /etc/resolv.conf, on port
53. So this script runs inside fresh network and mount namespaces
(`unshare -mn`, as root): it brings up the namespace's own loopback,
binds a resolv.conf naming 127.0.0.1 over /etc/resolv.conf (seen by
nothing outside the namespace), starts DNSServer with the records, and
relays 127.0.0.1:53 to it.

    unshare -mn python3 opendkim_netns.py RECORDS.json MSG...

RECORDS.json: {"sel._domainkey.example.com": "v=DKIM1; ...", ...}.
Prints a JSON list: one [exit status, stderr] per message.
"""
import json
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))

from dns_server import DNSServer  # noqa: E402


def relay(front, port):
    """Forward each query on `front` to the DNS server on `port`."""
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.settimeout(2)
    while True:
        query, peer = front.recvfrom(4096)
        back.sendto(query, ("127.0.0.1", port))
        try:
            front.sendto(back.recv(4096), peer)
        except socket.timeout:
            pass


def main():
    records = json.load(open(sys.argv[1]))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    conf = sys.argv[1] + ".resolv.conf"
    with open(conf, "w") as f:
        f.write("nameserver 127.0.0.1\noptions attempts:1 timeout:3\n")
    subprocess.run(["mount", "--bind", conf, "/etc/resolv.conf"], check=True)
    dns = DNSServer({(name, "TXT"): [text] for name, text in records.items()})
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", 53))
    threading.Thread(target=relay, args=(front, dns.port), daemon=True).start()
    results = []
    for path in sys.argv[2:]:
        with open(path, "rb") as msg:
            r = subprocess.run(["opendkim-testmsg"], stdin=msg, capture_output=True,
                               timeout=60)
        results.append([r.returncode, r.stderr.decode("utf-8", "replace")])
    dns.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
