"""Derive multi-client captures from the real public captures (read in place, never edited).

A real second VPN client behind the same router differs from the first by its LAN address, its
timing and the random values each side picks per client: IKE SPIs, ESP/AH SPIs, the PPTP server's
Call ID for that peer. It does not differ in the PPTP client's own Call ID (Windows and pppd start
from the same values), which is exactly what the router must cope with. So each derived client is
the captured client with:
- the client and server addresses mapped (``addr_map``; documentation addresses);
- every timestamp shifted by ``offset`` seconds (overlapping or not);
- IKE initiator/responder SPIs and ESP/AH SPIs XORed with ``spi_tag << 24`` (0: unchanged);
- the PPTP server's Call ID moved by ``server_call_delta`` wherever it appears (the server's own
  Call ID field in its messages, the Peer's Call ID in the client's, the key of client->server GRE);
- IP, TCP and UDP checksums recomputed (captures taken on the sending host carry offloaded,
  i.e. wrong, checksums on outbound packets).

Nothing else of the packets is invented. ``pptp_session()`` joins the two halves the public
captures hold of one PPTP session: a complete control connection (nDPI's pptp.pcap) and GRE data
both ways without its control connection (flowcontainer's pptp.pcap), with the GRE moved onto the
control connection's addresses and Call IDs and into its timeline (between the Outgoing-Call-Reply
and the Set-Link-Info/Call-Clear-Request).

Run as a script to write the derived files: ``python tests/passthrough/passthrough_multiclient.py
OUTDIR``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from natpass.datapath.pcap import PcapWriter, iter_capture
from natpass.packets import pptp as P
from natpass.packets.errors import PacketError
from natpass.packets.ipv4 import fix_ip_checksum, str_to_addr
from natpass.packets.tcp import fix_tcp_checksum
from natpass.packets.udp import fix_udp_checksum

Packet = tuple[float, bytearray]

NDPI_PPTP = "pptp/ndpi__pptp.pcap"
NDPI_CLIENT, NDPI_SERVER = "192.168.43.22", "191.101.61.1"
GRE_DATA = "pptp/flowcontainer__pptp_gre_data.pcap"
GRE_CLIENT, GRE_SERVER = "172.16.30.107", "155.138.217.96"

CORELIGHT_IPSEC = "esp_ah/corelight__ipsec.cap"
IPSEC_CLIENT, IPSEC_GATEWAY = "192.168.140.205", "192.168.140.200"
NDPI_ESP = "esp_ah/ndpi__esp.pcapng"
NDPI_ESP_CLIENT, NDPI_ESP_GATEWAY = "10.2.3.2", "10.3.4.4"

SERVER = "198.51.100.7"
GATEWAY = "198.51.100.20"


@dataclass(frozen=True)
class Client:
    """How one derived client differs from the captured one."""

    addr: str
    offset: float = 0.0
    spi_tag: int = 0
    server_call_delta: int = 0


def load(path: str | Path) -> list[Packet]:
    """(timestamp, IPv4 packet) of every IPv4 packet of a capture, in order."""
    return [(pkt.ts, bytearray(pkt.ip)) for pkt in iter_capture(path) if pkt.ip is not None
            and len(pkt.ip) >= 20 and pkt.ip[0] >> 4 == 4]


def _fix_checksums(buf: bytearray) -> None:
    ihl = (buf[0] & 15) * 4
    total = int.from_bytes(buf[2:4], "big")
    del buf[total:]  # Ethernet padding
    fix_ip_checksum(buf)
    if int.from_bytes(buf[6:8], "big") & 0x1FFF:
        return  # a later fragment holds no L4 header
    seg = memoryview(buf)[ihl:total]
    if buf[9] == 6 and len(seg) >= 20:
        fix_tcp_checksum(buf[12:16], buf[16:20], seg)
    elif buf[9] == 17 and len(seg) >= 8 and int.from_bytes(buf[ihl + 4:ihl + 6], "big") == len(seg):
        fix_udp_checksum(buf[12:16], buf[16:20], seg)


def _xor_spi(buf: bytearray, off: int, tag: int) -> None:
    if len(buf) >= off + 4 and buf[off:off + 4] != b"\x00\x00\x00\x00":
        buf[off] ^= tag & 0xFF


def _shift_u16(buf: bytearray, off: int, delta: int) -> None:
    v = (int.from_bytes(buf[off:off + 2], "big") + delta) & 0xFFFF
    buf[off:off + 2] = v.to_bytes(2, "big")


def _pptp_server_call(buf: bytearray, pay: int, end: int, from_client: bool, delta: int) -> None:
    pos = pay
    while pos + P.HEADER_LEN <= end:
        try:
            length, _, cookie, ctype = P.parse_pptp_header(buf, pos)
        except PacketError:
            return
        if cookie != P.MAGIC_COOKIE or length < P.HEADER_LEN or pos + length > end:
            return
        offsets = P.PEER_CALL_ID_OFFSET if from_client else P.CALL_ID_OFFSET
        if ctype in offsets:
            _shift_u16(buf, pos + offsets[ctype], delta)
        pos += length


def derive(packets: list[Packet], client_orig: str, addr_map: dict[str, str], client: Client,
           gre_keys: dict[int, int] | None = None) -> list[Packet]:
    """One derived client (see the module docstring); ``gre_keys`` maps GRE v1 keys first."""
    amap = {str_to_addr(k): str_to_addr(v) for k, v in addr_map.items()}
    amap[str_to_addr(client_orig)] = str_to_addr(client.addr)
    corig = str_to_addr(client_orig)
    out: list[Packet] = []
    for ts, orig in packets:
        buf = bytearray(orig)
        from_client = bytes(buf[12:16]) == corig
        for off in (12, 16):
            a = bytes(buf[off:off + 4])
            if a in amap:
                buf[off:off + 4] = amap[a]
        ihl = (buf[0] & 15) * 4
        proto = buf[9]
        end = int.from_bytes(buf[2:4], "big")
        first = not int.from_bytes(buf[6:8], "big") & 0x1FFF
        tag = client.spi_tag  # XORed into the top byte of each SPI
        if first and proto == 17 and end >= ihl + 8:
            ports = {int.from_bytes(buf[ihl:ihl + 2], "big"), int.from_bytes(buf[ihl + 2:ihl + 4], "big")}
            pay = ihl + 8
            if tag and 4500 in ports and end >= pay + 4:
                if buf[pay:pay + 4] == b"\x00\x00\x00\x00":
                    pay += 4
                elif end > pay + 1:
                    _xor_spi(buf, pay, tag)  # ESP in UDP
                    pay = -1
            if tag and pay > 0 and ports & {500, 4500} and end >= pay + 16:
                _xor_spi(buf, pay, tag)
                _xor_spi(buf, pay + 8, tag)
        elif first and proto == 50 and tag:
            _xor_spi(buf, ihl, tag)
        elif first and proto == 51 and tag:
            _xor_spi(buf, ihl + 4, tag)
        elif first and proto == 47 and end >= ihl + 8 and buf[ihl + 1] & 7 == 1:
            key = int.from_bytes(buf[ihl + 6:ihl + 8], "big")
            if gre_keys and key in gre_keys:
                key = gre_keys[key]
            if from_client:
                key = (key + client.server_call_delta) & 0xFFFF
            buf[ihl + 6:ihl + 8] = key.to_bytes(2, "big")
        elif first and proto == 6 and client.server_call_delta and end >= ihl + 20:
            sp = int.from_bytes(buf[ihl:ihl + 2], "big")
            dp = int.from_bytes(buf[ihl + 2:ihl + 4], "big")
            if 1723 in (sp, dp):
                pay = ihl + (buf[ihl + 12] >> 4) * 4
                _pptp_server_call(buf, pay, end, from_client, client.server_call_delta)
        _fix_checksums(buf)
        out.append((ts + client.offset, buf))
    return out


def merge(*clients: list[Packet]) -> list[Packet]:
    """All clients' packets in time order (stable: a client's own order is kept)."""
    return sorted((p for c in clients for p in c), key=lambda p: p[0])


def rebase(packets: list[Packet], start: float = 0.0) -> list[Packet]:
    t0 = packets[0][0]
    return [(ts - t0 + start, buf) for ts, buf in packets]


def call_setup(packets: list[Packet]) -> tuple[int, int, int]:
    """(client Call ID, server Call ID, index just after the Outgoing-Call-Reply's ACK) of a
    captured control connection, read from its OCRQ and OCRP."""
    client_id = server_id = None
    for i, (_, buf) in enumerate(packets):
        ihl = (buf[0] & 15) * 4
        if buf[9] != 6:
            continue
        pay = bytes(buf[ihl + (buf[ihl + 12] >> 4) * 4:int.from_bytes(buf[2:4], "big")])
        if len(pay) < P.HEADER_LEN:
            continue
        msg = P.parse_pptp(pay)
        if msg.ctrl_type == P.OCRQ:
            client_id = msg.call_id
        elif msg.ctrl_type == P.OCRP and client_id is not None and msg.call_id is not None:
            server_id = msg.call_id
            return client_id, server_id, i + 2  # the OCRP and the client's ACK of it
    raise ValueError("no Outgoing-Call-Request/Reply in the control connection")


def gre_keys(packets: list[Packet], client: str) -> tuple[int, int]:
    """(key of client->server GRE, key of server->client GRE) of a captured GRE v1 stream."""
    caddr = str_to_addr(client)

    def key(b: bytearray) -> int:
        off = (b[0] & 15) * 4 + 6  # GRE v1 call ID (RFC 2637 4.1)
        return int.from_bytes(b[off:off + 2], "big")

    to_server = {key(b) for _, b in packets if b[9] == 47 and bytes(b[12:16]) == caddr}
    to_client = {key(b) for _, b in packets if b[9] == 47 and bytes(b[16:20]) == caddr}
    if len(to_server) != 1 or len(to_client) != 1:
        raise ValueError("expected one GRE call in each direction")
    return to_server.pop(), to_client.pop()


def pptp_session(captures: Path) -> list[Packet]:
    """One whole PPTP session (control + GRE both ways) between NDPI_CLIENT and NDPI_SERVER."""
    ctl = rebase(load(captures / NDPI_PPTP))
    client_id, server_id, split = call_setup(ctl)
    head, tail = ctl[:split], ctl[split:]
    data = load(captures / GRE_DATA)
    key_out, key_in = gre_keys(data, GRE_CLIENT)
    gre = derive(data, GRE_CLIENT, {GRE_SERVER: NDPI_SERVER}, Client(NDPI_CLIENT),
                 gre_keys={key_out: server_id, key_in: client_id})
    gre = rebase(gre, head[-1][0] + 0.2)
    # the Set-Link-Info, Call-Clear-Request and the rest follow the data
    tail = rebase(tail, gre[-1][0] + 0.5)
    return head + gre + tail


def pptp_clients(captures: Path, clients: list[Client]) -> list[Packet]:
    session = pptp_session(captures)
    return merge(*(derive(session, NDPI_CLIENT, {NDPI_SERVER: SERVER}, c) for c in clients))


def ipsec_clients(captures: Path, clients: list[Client], capture: str = CORELIGHT_IPSEC) -> list[Packet]:
    client, gateway = ((IPSEC_CLIENT, IPSEC_GATEWAY) if capture == CORELIGHT_IPSEC
                       else (NDPI_ESP_CLIENT, NDPI_ESP_GATEWAY))
    base = rebase(load(captures / capture))
    return merge(*(derive(base, client, {gateway: GATEWAY}, c) for c in clients))


def write(path: str | Path, packets: list[Packet]) -> Path:
    with PcapWriter(path) as w:
        for ts, buf in packets:
            w.write(buf, ts)
    return Path(path)


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    caps = Path(__file__).resolve().parents[3] / "shared" / "captures"
    two = [Client("192.168.1.10"), Client("192.168.1.11", offset=0.3, spi_tag=0x11, server_call_delta=1)]
    write(out / "pptp_two_clients_overlapping.pcap", pptp_clients(caps, two))
    write(out / "ipsec_two_clients_overlapping.pcap", ipsec_clients(caps, two))
    apart = [Client("192.168.1.10"), Client("192.168.1.11", offset=60.0, spi_tag=0x11, server_call_delta=1)]
    write(out / "ipsec_two_clients_apart.pcap", ipsec_clients(caps, apart))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
