"""Real headers from the public captures, parsed by natpass and compared field by field with tshark."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tshark_check import tshark_available

from natpass.datapath.pcap import iter_capture
from natpass.packets import PacketError, esp, gre, ike, ipv4, l2tp, pptp, tcp, udp

FIELDS = [
    "frame.number", "ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.id", "ip.len", "ip.hdr_len",
    "ip.flags.df", "ip.flags.mf", "ip.frag_offset",
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.hdr_len",
    "udp.srcport", "udp.dstport", "udp.length",
    "gre.key.call_id", "gre.sequence_number", "gre.ack_number",
    "pptp.control_message_type", "pptp.call_id", "pptp.peer_call_id",
    "esp.spi", "esp.sequence", "ah.spi", "ah.sequence",
    "isakmp.ispi", "isakmp.rspi", "isakmp.exchangetype", "isakmp.length",
    "l2tp.tunnel", "l2tp.session",
]


def _tshark_rows(path: Path) -> dict[int, dict[str, str]]:
    cmd = ["tshark", "-n", "-r", str(path), "-o", "ip.defragment:FALSE",
           "-o", "tcp.desegment_tcp_streams:FALSE", "-T", "fields", "-E", "occurrence=f",
           "-E", "separator=\t"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
    rows = {}
    for line in out.splitlines():
        values = line.split("\t")
        row = dict(zip(FIELDS, values, strict=False))
        rows[int(row["frame.number"])] = {k: v for k, v in row.items() if v}
    return rows


def _int(v: str) -> int:
    if v in ("True", "False"):
        return int(v == "True")
    return int(v, 16) if v.startswith("0x") else int(v)


def _ours(pkt: bytes) -> dict[str, Any]:
    """natpass's view of one IPv4 packet, under tshark's field names."""
    out: dict[str, Any] = {}
    h = ipv4.parse_ipv4(pkt)
    out.update({"ip.src": ipv4.addr_to_str(h.src), "ip.dst": ipv4.addr_to_str(h.dst), "ip.proto": h.proto,
                "ip.ttl": h.ttl, "ip.id": h.ident, "ip.len": h.total_length, "ip.hdr_len": h.header_len,
                "ip.flags.df": int(h.df), "ip.flags.mf": int(h.mf), "ip.frag_offset": h.frag_offset // 8})
    if h.frag_offset:
        return out
    o = h.header_len
    end = h.total_length
    body = pkt[:end]
    if h.proto == ipv4.PROTO_TCP:
        t = tcp.parse_tcp(body, o)
        out.update({"tcp.srcport": t.sport, "tcp.dstport": t.dport, "tcp.seq_raw": t.seq, "tcp.ack_raw": t.ack,
                    "tcp.flags": t.flags, "tcp.hdr_len": t.data_offset})
        po = o + t.data_offset
        if pptp.PPTP_PORT in (t.sport, t.dport) and end > po:
            m = pptp.parse_pptp(body, po)
            out["pptp.control_message_type"] = m.ctrl_type
            if m.call_id is not None:
                out["pptp.call_id"] = m.call_id
            if m.peer_call_id is not None:
                out["pptp.peer_call_id"] = m.peer_call_id
    elif h.proto == ipv4.PROTO_UDP and not h.mf:
        u = udp.parse_udp(body, o)
        out.update({"udp.srcport": u.sport, "udp.dstport": u.dport, "udp.length": u.length})
        po = o + 8
        payload = body[po:o + u.length]
        ports = (u.sport, u.dport)
        ike_at = None
        if ike.IKE_PORT in ports:
            ike_at = po
        elif ike.NATT_PORT in ports:
            kind = ike.classify_natt(payload)
            if kind == ike.NATT_CLASS_IKE:
                ike_at = po + 4
            elif kind == ike.NATT_CLASS_ESP:
                e = esp.parse_esp(body, po)
                out.update({"esp.spi": e.spi, "esp.sequence": e.seq})
        if ike_at is not None:
            k = ike.parse_ike(body[:o + u.length], ike_at)
            ike.payloads(body[:o + u.length], ike_at)
            out.update({"isakmp.ispi": k.spi_i.hex(), "isakmp.rspi": k.spi_r.hex(),
                        "isakmp.exchangetype": k.exchange, "isakmp.length": k.length})
        if l2tp.L2TP_PORT in ports:
            lh = l2tp.parse_l2tp(payload)
            out.update({"l2tp.tunnel": lh.tunnel_id, "l2tp.session": lh.session_id})
            if lh.is_control:
                l2tp.parse_control(payload)
    elif h.proto == ipv4.PROTO_GRE:
        g = gre.parse_gre(body, o)
        if g.version == 1:
            out["gre.key.call_id"] = g.call_id
            if g.seq is not None:
                out["gre.sequence_number"] = g.seq
            if g.ack is not None:
                out["gre.ack_number"] = g.ack
    elif h.proto == ipv4.PROTO_ESP:
        e = esp.parse_esp(body, o)
        out.update({"esp.spi": e.spi, "esp.sequence": e.seq})
    elif h.proto == ipv4.PROTO_AH:
        a = esp.parse_ah(body, o)
        out.update({"ah.spi": a.spi, "ah.sequence": a.seq})
        if a.next_header == ipv4.PROTO_ESP:
            e = esp.parse_esp(body, o + a.length)
            out.update({"esp.spi": e.spi, "esp.sequence": e.seq})
    return out


def _capture_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*") if p.suffix in (".pcap", ".pcapng", ".cap"))


def test_real_headers_match_tshark_field_by_field(captures: Path) -> None:
    if not tshark_available():
        pytest.skip("tshark not installed")
    compared: Counter[str] = Counter()
    mismatches: list[str] = []
    malformed: list[str] = []
    for path in _capture_files(captures):
        rows = _tshark_rows(path)
        for cp in iter_capture(path):
            if cp.ip is None:
                continue
            row = rows.get(cp.index, {})
            try:
                ours = _ours(cp.ip)
            except PacketError as exc:
                if cp.captured >= cp.length:
                    malformed.append(f"{path.name}#{cp.index}: {exc}")
                continue
            for field, value in ours.items():
                theirs = row.get(field)
                if theirs is None:
                    continue  # tshark did not dissect this layer (e.g. a non-standard port)
                if field in ("ip.src", "ip.dst", "isakmp.ispi", "isakmp.rspi"):
                    same = theirs.replace(":", "") == value
                else:
                    same = _int(theirs) == value
                compared[field.split(".")[0]] += 1
                if not same:
                    mismatches.append(f"{path.name}#{cp.index} {field}: tshark {theirs} natpass {value}")
    assert not mismatches, mismatches[:20]
    # Each header family was actually met and compared in the captures.
    for family in ("ip", "tcp", "udp", "gre", "pptp", "esp", "ah", "isakmp", "l2tp"):
        assert compared[family] > 0, f"no {family} field compared: {dict(compared)}"
    # Only frames cut by the snapshot length may fail to parse; every complete frame parses.
    assert not malformed, malformed[:20]


def test_truncated_capture_frames_raise_packet_error_not_crash(captures: Path) -> None:
    cut = [cp for p in _capture_files(captures) for cp in iter_capture(p) if cp.ip is not None and cp.captured < cp.length]
    assert cut, "expected snapshot-truncated frames in the captures"
    for cp in cut:
        assert cp.ip is not None
        try:
            _ours(cp.ip)
        except PacketError:
            pass
