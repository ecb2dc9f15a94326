"""Hybrid datapath without namespaces: the ownership description, its BPF rendering (run in a
Python interpreter of classic BPF), the port split and the fragment handling."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hybrid_frames import (
    LAN_SERVER,
    PACKET_BROADCAST,
    PACKET_HOST,
    cases,
    fragment_cases,
    ipv4,
    run_bpf,
    tcp,
    udp,
)

from natpass.datapath.hybrid import Hybrid, OwnedEngine, conntrack_sysctls, hybrid_warnings
from natpass.datapath.owned import (
    IKE_PORT,
    L2TP_PORT,
    NATT_PORT,
    PPTP_PORT,
    bpf_program,
    check_settings,
    nft_owned,
    ownership,
)
from natpass.nat import verdict as V
from natpass.nat.config import NatConfig, PortForward, Timeouts
from natpass.passthrough import build_engine

LAN_ADDR = bytes([192, 168, 1, 1])
SERVER = bytes([192, 168, 1, 11])
FORWARDS = ((6, PPTP_PORT, SERVER, PPTP_PORT), (6, 8080, SERVER, 8080))


def _own(natt: str = "kernel"):  # type: ignore[no-untyped-def]
    return ownership("lan0", "wan0", LAN_ADDR, natt=natt, forwards=FORWARDS)


@pytest.mark.parametrize("natt", ["kernel", "natpass"])
def test_bpf_takes_exactly_what_natpass_owns(natt: str) -> None:
    own = _own(natt)
    programs = {s.side: bpf_program(s) for s in own.sides()}
    wrong = []
    for case in cases(natt) + fragment_cases():
        pkttype = PACKET_BROADCAST if case.broadcast else PACKET_HOST
        got = run_bpf(programs[case.side], case.frame, pkttype) > 0
        if got != case.owned:
            wrong.append((case.name, got))
    assert wrong == []


def test_every_owned_port_has_a_drop_rule_for_the_kernel() -> None:
    """The nft rendering names each port match of the description (the namespace test runs both)."""
    own = _own()
    rules = "\n".join(nft_owned(own).chains)
    for side in own.sides():
        for m in side.ports:
            for lo, hi in m.ports:
                assert (str(lo) if lo == hi else f"{lo}-{hi}") in rules


def test_kernel_masquerade_range_and_natpass_ports_cannot_collide() -> None:
    rng = random.Random(7)
    for _ in range(300):
        lo = rng.randrange(NATT_PORT + 1 + 1024, 65536)
        hi = rng.randrange(lo, 65536)
        natt = rng.choice(["kernel", "natpass"])
        fwd = tuple((rng.choice([6, 17]), rng.choice([PPTP_PORT, IKE_PORT, L2TP_PORT, NATT_PORT, 8080, 443]),
                     SERVER, 1000 + i) for i in range(rng.randrange(3)))
        try:
            own = ownership("lan0", "wan0", LAN_ADDR, (lo, hi), natt, fwd)
        except ValueError:
            assert lo - 1 - NATT_PORT < 1024 + 1  # only a range that leaves the kernel too little
            continue
        klo, khi = own.kernel_ports
        assert khi - klo + 1 >= 1024
        # Every WAN port natpass listens on or hands out lies outside the kernel's range.
        for m in own.wan.ports:
            for plo, phi in m.ports:
                assert phi < klo or plo > khi, (m, own.kernel_ports)


def _engine(hybrid: Hybrid):  # type: ignore[no-untyped-def]
    nat = hybrid.engine_config(hybrid.nat)
    return build_engine(nat)


def test_natpass_allocator_stays_in_its_range_and_returns_come_back_to_natpass() -> None:
    """Outbound flows of every kind through natpass's engine: each WAN source port it picks is one
    the WAN-side filter takes back (so replies reach natpass), never one of the kernel's."""
    nat = NatConfig(wan_addresses=(bytes([203, 0, 113, 1]),),
                    forwards=(PortForward(6, PPTP_PORT, SERVER, PPTP_PORT), PortForward(6, 8080, SERVER, 8080)))
    hybrid = Hybrid("lan0", "wan0", LAN_ADDR, nat, (61440, 65535), "kernel")
    engine = _engine(hybrid)
    wan_prog = bpf_program(hybrid.own.wan)
    klo, khi = hybrid.own.kernel_ports
    rng = random.Random(3)
    seen = 0
    for i in range(400):
        host = f"192.168.1.{10 + i % 50}"
        sport = rng.choice([500, 1701, 1723, 40000 + i, 61500 + i, 2000 + i])
        if rng.random() < 0.5:
            pkt = bytearray(ipv4(host, "198.51.100.10", 17, udp(sport, rng.choice([IKE_PORT, L2TP_PORT]))))
        else:
            pkt = bytearray(ipv4(host, "198.51.100.10", 6, tcp(sport, PPTP_PORT)))
        code = engine.process(pkt, True, 1.0)
        if code != V.TO_WAN:
            continue
        seen += 1
        wport = int.from_bytes(pkt[20:22], "big")
        assert not klo <= wport <= khi, wport
        reply = ipv4("198.51.100.10", "203.0.113.1", pkt[9], (udp if pkt[9] == 17 else tcp)(
            int.from_bytes(pkt[22:24], "big"), wport))
        frame = bytes(6) + bytes(6) + b"\x08\x00" + reply
        assert run_bpf(wan_prog, frame, PACKET_HOST) > 0, (pkt[9], wport)
    assert seen > 300


def test_engine_config_serves_only_passthrough_forwards() -> None:
    nat = NatConfig(forwards=(PortForward(6, PPTP_PORT, SERVER, PPTP_PORT), PortForward(6, 8080, SERVER, 8080)))
    hybrid = Hybrid("lan0", "wan0", LAN_ADDR, nat, (61440, 65535), "kernel")
    cfg = hybrid.engine_config(nat)
    assert [f.wan_port for f in cfg.forwards] == [PPTP_PORT]
    assert cfg.port_range == (61440, 65535) and not cfg.port_preservation
    ruleset = hybrid.nft_ruleset()
    assert f"tcp dport 8080 dnat ip to {LAN_SERVER}:8080" in ruleset
    assert "dport 1723 dnat" not in ruleset
    assert f"masquerade to :{PPTP_PORT + 1}-61439" in ruleset


def test_settings_are_checked() -> None:
    assert check_settings([61440, 65535], "kernel") is None
    assert check_settings([61440, 65535], "both") is not None
    assert check_settings([3000, 65535], "kernel") is not None  # would overlap 4500 / leave no room
    assert check_settings([65535, 61440], "kernel") is not None
    assert check_settings("61440-65535", "kernel") is not None


def test_conntrack_timeouts_follow_natpass() -> None:
    got = conntrack_sysctls(Timeouts(udp=321, tcp_established=8000, tcp_transitory=250, icmp=70))
    assert got["net/netfilter/nf_conntrack_udp_timeout"] == "321"
    assert got["net/netfilter/nf_conntrack_udp_timeout_stream"] == "321"
    assert got["net/netfilter/nf_conntrack_tcp_timeout_established"] == "8000"
    assert got["net/netfilter/nf_conntrack_tcp_timeout_syn_sent"] == "250"
    assert got["net/netfilter/nf_conntrack_icmp_timeout"] == "70"


def test_warnings_name_what_binds_natpass_only() -> None:
    text = " ".join(hybrid_warnings(NatConfig(mapping="address-dependent")))
    assert "mapping" in text and "hairpinning" in text


class _Recorder:
    """An engine stand-in recording what reaches it."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.reply = None
        self.emitted: list[bytearray] = []

    def process(self, buf: bytearray, from_lan: bool, now: float) -> int:
        self.seen.append(bytes(buf))
        return V.TO_WAN

    def expire(self, now: float) -> None:
        return None


def _frag(ident: int, offset_units: int, more: bool, src: str = "192.168.1.10") -> bytearray:
    flags = (0x2000 if more else 0) | offset_units
    payload = udp(500, 500, b"z" * 8) if offset_units == 0 else b"z" * 16
    return bytearray(ipv4(src, "198.51.100.10", 17, payload, ident=ident, frag=flags))


def test_later_fragments_reach_the_engine_only_for_natpass_datagrams() -> None:
    rec = _Recorder()
    owned = OwnedEngine(rec, fragment_timeout=30.0)
    # natpass's datagram: its later fragment first, then the first one (which natpass's filter took).
    later = _frag(7, 3, False)
    assert owned.process(later, True, 0.0) == V.HELD  # kept, neither sent nor dropped
    assert rec.seen == []
    assert owned.process(_frag(7, 0, True), True, 0.1) == V.TO_WAN
    assert rec.seen[0] == bytes(later) and len(rec.seen) == 2
    assert owned.process(_frag(7, 4, False), True, 0.2) == V.TO_WAN  # known now: straight through
    # The kernel's datagram: only later fragments come to natpass; forgotten, not dropped.
    owned.process(_frag(8, 3, False), True, 0.3)
    owned.expire(31.0)
    assert owned.kernel_fragments == 1
    assert len(rec.seen) == 3
    # Not fragments: straight through.
    owned.process(bytearray(ipv4("192.168.1.10", "198.51.100.10", 17, udp(500, 500))), True, 32.0)
    assert len(rec.seen) == 4


def test_waiting_fragments_are_bounded() -> None:
    owned = OwnedEngine(_Recorder(), fragment_timeout=30.0)
    for i in range(1000):
        owned.process(_frag(i, 3, False, src=str(ipaddress.IPv4Address("192.168.1.10"))), True, 0.0)
    assert owned._waiting_count <= 256
    assert owned.kernel_fragments == 1000 - owned._waiting_count


def _merged_tcp(payload: bytes, flags: int) -> bytearray:
    import struct

    tcph = struct.pack("!HHIIBBHHH", 40000, PPTP_PORT, 1000, 5, 0x50, flags, 65535, 0, 0)
    return bytearray(ipv4("192.168.1.10", "198.51.100.10", 6, tcph + payload, ident=0xFFFE))


def test_a_merged_tcp_frame_is_segmented_as_the_sender_sent_it() -> None:
    from natpass.datapath.hybrid import segment_tcp
    from natpass.packets.checksum import internet_checksum
    from natpass.packets.tcp import fix_tcp_checksum

    payload = bytes(range(256)) * 23  # 5888 bytes: four 1460-byte segments and a short one
    merged = _merged_tcp(payload, 0x80 | 0x10 | 0x08 | 0x01)  # CWR ACK PSH FIN
    segs = segment_tcp(merged, 1500)
    assert [len(s) for s in segs] == [1500] * 4 + [40 + len(payload) - 4 * 1460]
    assert b"".join(bytes(s[40:]) for s in segs) == payload
    for i, s in enumerate(segs):
        assert internet_checksum(bytes(s[:20])) == 0
        before = bytes(s)
        fix_tcp_checksum(s[12:16], s[16:20], memoryview(s)[20:])
        assert bytes(s) == before  # the checksum was already right
        assert int.from_bytes(s[24:28], "big") == 1000 + i * 1460
        assert int.from_bytes(s[4:6], "big") == (0xFFFE + i) & 0xFFFF
        flags = s[33]
        assert bool(flags & 0x80) == (i == 0) and bool(flags & 0x09) == (i == len(segs) - 1)
        assert flags & 0x10
    assert len(segment_tcp(_merged_tcp(b"x" * 100, 0x10), 1500)) == 1


def test_owned_engine_sends_the_segments_of_a_merged_frame() -> None:
    rec = _Recorder()
    owned = OwnedEngine(rec, mtu=1500)
    code = owned.process(_merged_tcp(b"y" * 4000, 0x18), True, 1.0)
    assert code == V.MULTI | V.TO_WAN
    sent = owned.emitted
    assert len(sent) == 3 and all(len(s) <= 1500 for s in sent)
    assert len(rec.seen) == 3
    assert owned.merged_frames == 1 and owned.merged_segments == 3
    assert owned.process(_merged_tcp(b"y" * 100, 0x18), True, 1.0) == V.TO_WAN  # fits: as it is


def test_config_accepts_hybrid_and_refuses_bad_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from natpass.router.config import ConfigError, load_config

    base = ('[wan]\naddresses = ["203.0.113.1"]\ninterface = "wan0"\n[lan]\nprefixes = ["192.168.1.0/24"]\n'
            'interface = "lan0"\n[router]\ndatapath = "hybrid"\n')
    good = tmp_path / "good.toml"
    good.write_text(base + "hybrid_ports = [60000, 65535]\nhybrid_natt = \"natpass\"\n")
    cfg = load_config(str(good))
    assert (cfg.datapath, cfg.hybrid_ports, cfg.hybrid_natt) == ("hybrid", (60000, 65535), "natpass")
    for extra, key in (("hybrid_ports = [2000, 65535]\n", "hybrid_ports"), ('hybrid_natt = "both"\n', "hybrid_natt")):
        bad = tmp_path / "bad.toml"
        bad.write_text(base + extra)
        with pytest.raises(ConfigError) as err:
            load_config(str(bad))
        assert key in str(err.value) and err.value.line == base.count("\n") + 1
