"""Small probes run inside a lab namespace (``python -m natpass.lab.probe ...``), printing JSON.

``udp-icmp DST DPORT TTL``: send one UDP datagram from a fixed source port with the given TTL and
report the ICMP error that comes back (type, code, who sent it, and the *inner* IPv4/UDP header it
quotes), as read from a raw ICMP socket. A traceroute-like probe: TTL 1 expires at the first router,
TTL 2 at the next one; a closed port on the server answers port unreachable. Through a NAT the
inner header must be translated back to the client's own address and port (RFC 5508 REQ-3), and
the ICMP checksum must still be right.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time

from natpass.packets.checksum import verify


def udp_icmp(dst: str, dport: int, ttl: int, timeout: float = 3.0) -> dict[str, object]:
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    udp.bind(("0.0.0.0", 0))
    udp.connect((dst, dport))
    local, sport = udp.getsockname()
    udp.send(b"natpass-lab probe")
    out: dict[str, object] = {"sent": {"src": local, "sport": sport, "dst": dst, "dport": dport, "ttl": ttl}}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([icmp], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        data, (src, _) = icmp.recvfrom(65535)
        ihl = (data[0] & 0x0F) * 4
        msg = data[ihl:]
        if len(msg) < 8 + 20 + 8 or msg[0] not in (3, 11):
            continue
        inner = msg[8:]
        iihl = (inner[0] & 0x0F) * 4
        isrc = socket.inet_ntoa(inner[12:16])
        idst = socket.inet_ntoa(inner[16:20])
        isport, idport = struct.unpack("!HH", inner[iihl : iihl + 4])
        if inner[9] != 17 or idport != dport:
            continue
        out["icmp"] = {
            "type": msg[0], "code": msg[1], "from": src, "checksum_ok": verify(msg),
            "inner_src": isrc, "inner_dst": idst, "inner_sport": isport, "inner_dport": idport,
        }
        break
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "udp-icmp":
        print(json.dumps(udp_icmp(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    print("usage: python -m natpass.lab.probe udp-icmp DST DPORT TTL", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
