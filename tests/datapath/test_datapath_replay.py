"""The what-if replay: real captures through the engine, the WAN side as the far end saw it."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tshark_check import bad_checksums, decode, tshark_available

from natpass.datapath.pcap import iter_capture
from natpass.datapath.replay import infer_lan, replay_capture
from natpass.nat.config import NatConfig, Passthrough

ALL_ON = NatConfig(passthrough=Passthrough(pptp=True, ipsec=True, l2tp=True))
ALL_OFF = NatConfig()
WAN = ipaddress.IPv4Address("203.0.113.1").packed


def _captures(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*") if p.suffix in (".pcap", ".pcapng", ".cap"))


def test_replay_of_every_public_capture_writes_clean_wan_side(captures: Path, tmp_path: Path) -> None:
    assert tshark_available()
    for cap in _captures(captures):
        input_malformed = [f for f in bad_checksums(cap) if "alformed" in f]
        for name, cfg in (("on", ALL_ON), ("off", ALL_OFF)):
            out = tmp_path / f"{cap.stem}-{name}.pcap"
            res = replay_capture(cap, cfg, lan=["auto"], out=out)
            s = res.summary
            assert s["packets"] == sum(1 for _ in iter_capture(cap))
            assert s["forwarded"] + s["dropped"] + s["held"] + s["non_ipv4"] + s["lan_local"] + s["truncated"] == s["packets"]
            assert sum(s["drops"].values()) <= s["dropped"]
            per_proto = sum(sum(v.values()) for v in s["by_ip_protocol"].values())
            assert per_proto == s["forwarded"] + s["dropped"] + s["held"]
            if out.stat().st_size > 24:
                flagged = bad_checksums(out)
                assert [f for f in flagged if "hecksum" in f] == [], (cap.name, name)
                # Payloads some captures already carry malformed (fuzzed L2TP, a cut ISAKMP) stay
                # so; the replay must not add any.
                malformed = [f for f in flagged if "alformed" in f]
                assert len(malformed) <= len(input_malformed), (cap.name, name, malformed)
            # No LAN address may leak onto the WAN side.
            lan = [ipaddress.IPv4Network(p) for p in s["lan_prefixes"]]
            for pkt in iter_capture(out):
                if pkt.ip is None:
                    continue
                for a in (pkt.ip[12:16], pkt.ip[16:20]):
                    assert not any(ipaddress.IPv4Address(bytes(a)) in n for n in lan), (cap.name, pkt.index)


def test_pptp_gre_needs_the_switch(captures: Path, tmp_path: Path) -> None:
    cap = captures / "pptp" / "flowcontainer__pptp_gre_data.pcap"
    off = replay_capture(cap, ALL_OFF, lan=["auto"]).summary
    on = replay_capture(cap, NatConfig(passthrough=Passthrough(pptp=True)), lan=["auto"],
                        out=tmp_path / "wan.pcap").summary
    gre_off, gre_on = off["by_ip_protocol"]["gre"], on["by_ip_protocol"]["gre"]
    assert gre_off["out_forwarded"] == 0 and gre_off["out_dropped"] > 0
    assert off["drops"].get("passthrough-disabled:pptp", 0) >= gre_off["out_dropped"]
    assert gre_on["out_dropped"] == 0 and gre_on["out_forwarded"] == gre_off["out_dropped"]
    assert gre_on["in_forwarded"] > 0 and gre_on["in_dropped"] == 0
    # TCP 1723 passes as ordinary TCP either way.
    assert off["by_ip_protocol"]["tcp"]["out_dropped"] == 0
    # The far end saw GRE from the WAN address.
    layers = decode(tmp_path / "wan.pcap", "-Y", "gre")
    assert layers and all(fr["ip"]["ip.src"] in ("203.0.113.1",) or fr["ip"]["ip.dst"] == "203.0.113.1"
                          for fr in layers)


def test_infer_lan_prefers_private_talkers(captures: Path) -> None:
    nets = infer_lan(captures / "pptp" / "ndpi__pptp.pcap")
    assert nets and all(n.prefixlen == 32 for n in nets)
    assert nets[0].network_address.is_private


def test_unsolicited_inbound_is_dropped(tmp_path: Path) -> None:
    from natpass.datapath.pcap import PcapWriter
    from natpass.packets.udp import build_udp

    remote, lan_host = bytes([198, 51, 100, 7]), bytes([192, 168, 1, 20])
    cap = tmp_path / "in.pcap"
    with PcapWriter(cap) as w:
        w.write(bytes(build_udp(remote, lan_host, 5000, 6000, b"hello")), 1.0)
    s = replay_capture(cap, ALL_OFF).summary
    assert s["dropped"] == 1 and s["forwarded"] == 0
    assert set(s["drops"]) <= {"no-mapping", "filtered"}


def test_cli_replay_json(captures: Path, tmp_path: Path) -> None:
    cap = captures / "pptp" / "flowcontainer__pptp_gre_data.pcap"
    res = subprocess.run([sys.executable, "-m", "natpass.cli", "replay", str(cap), "--json",
                          "--out", str(tmp_path / "w.pcap")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    obj = json.loads(res.stdout)
    for key in ("packets", "forwarded", "dropped", "drops", "by_ip_protocol"):
        assert key in obj
    assert set(obj["by_ip_protocol"]) == {"tcp", "udp", "icmp", "gre", "esp", "ah", "other"}
    for row in obj["by_ip_protocol"].values():
        assert set(row) == {"out_forwarded", "out_dropped", "out_held", "in_forwarded", "in_dropped",
                            "in_held"}
    assert obj["drops"].get("passthrough-disabled:pptp", 0) > 0


def test_cli_replay_refuses_bad_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    res = subprocess.run([sys.executable, "-m", "natpass.cli", "replay", str(junk)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "natpass:" in res.stderr and "Traceback" not in res.stderr
    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text("[passthrough]\npptp = maybe\n")
    res = subprocess.run([sys.executable, "-m", "natpass.cli", "replay", str(junk), "--config",
                          str(bad_cfg)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "bad.toml:2" in res.stderr


@pytest.mark.parametrize("switch", ["on", "off"])
def test_replay_ipsec_esp_follows_the_switch(captures: Path, switch: str) -> None:
    cap = captures / "esp_ah" / "ndpi__esp.pcapng"
    cfg = NatConfig(passthrough=Passthrough(ipsec=switch == "on"))
    s = replay_capture(cap, cfg, lan=["auto"]).summary
    esp = s["by_ip_protocol"]["esp"]
    assert esp["out_forwarded"] + esp["out_dropped"] > 0
    if switch == "off":
        assert esp["out_forwarded"] == 0 and s["drops"].get("passthrough-disabled:ipsec", 0) > 0
    else:
        assert esp["out_dropped"] == 0
