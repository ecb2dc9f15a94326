"""The engine's fast path for established GRE calls and ESP SAs (natpass.nat.ipfast).

The fast path must change nothing but speed: the same random scripts of PPTP calls, raw-ESP SAs,
switch flips, reloads, call ends and idle time run through two engines, one whose cached
translations are dropped before every packet (so every packet takes the helpers' path), and must
give the same verdicts, bytes, drop reasons, helper state and counters.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from passthrough_util import GATEWAY, HOSTS, SERVER, WAN, Conv, checksums_ok, config, messages

from natpass.nat import verdict as V
from natpass.nat.config import Timeouts
from natpass.nat.engine import Engine
from natpass.packets import gre as G
from natpass.packets import pptp as P
from natpass.packets.esp import build_esp_packet
from natpass.packets.gre import build_gre, build_pptp_gre
from natpass.packets.ipv4 import PROTO_GRE, build_ipv4
from natpass.passthrough import build_helpers

SERVER_CALLS = (0x7A01, 0x7A02, 0x7A03)
PPP = b"\xff\x03\xc0\x21" + bytes(20)


def make(timeouts: Timeouts | None = None) -> tuple[Engine, dict[str, Any]]:
    cfg = config(pptp=True, ipsec=True, timeouts=timeouts or Timeouts(gre=30.0, esp=30.0))
    helpers = build_helpers(cfg)
    return Engine(cfg, helpers), {h.name: h for h in helpers}


def open_call(eng: Engine, host: str, call_id: int, server_call: int, lport: int,
              now: float) -> tuple[Conv, int | None]:
    c = Conv(eng, host, lport, SERVER, 1723, now=now)
    c.handshake()
    c.from_lan(bytes(P.build_sccrq()))
    c.from_remote(bytes(P.build_sccrp()))
    c.from_lan(bytes(P.build_ocrq(call_id)))
    msgs = messages(bytes(c.lan_out))
    wan_id = msgs[-1].call_id if msgs and msgs[-1].ctrl_type == P.OCRQ else None
    if wan_id is not None:
        c.from_remote(bytes(P.build_ocrp(server_call, wan_id)))
    return c, wan_id


def run_script(seed: int, slow: bool) -> list[Any]:
    """One random script; ``slow``: drop every cached translation before each packet."""
    rng = random.Random(seed)
    eng, helpers = make()
    cfg = eng.config
    now = 1.0
    seen: list[Any] = []
    calls: list[tuple[Conv | None, int, int | None, int]] = []  # conv, host, wan id, server call
    for i in range(3):
        c, w = open_call(eng, HOSTS[i], 0x1234, SERVER_CALLS[i], 40000 + i, now)
        calls.append((c, i, w, SERVER_CALLS[i]))
    # raw ESP of two hosts to one gateway, one after the other (each host's first inbound SPI
    # arrives before the next host starts): outbound SPIs 0x100+i, inbound 0x200+i
    for i in range(2):
        assert eng.process(build_esp_packet(HOSTS[i], GATEWAY, 0x100 + i, 1, bytes(32)), True, now) == V.TO_WAN
        assert eng.process(build_esp_packet(GATEWAY, WAN, 0x200 + i, 1, bytes(32)), False, now) == V.TO_LAN

    def send(pkt: bytearray, from_lan: bool) -> None:
        if slow:
            eng._ipfast.clear()
        code = eng.process(pkt, from_lan, now)
        seen.append((code, bytes(pkt) if code != V.DROP else eng.last_drop))
        if code in (V.TO_WAN, V.TO_LAN):
            assert checksums_ok(pkt)

    for _ in range(400):
        r = rng.random()
        host = rng.randrange(3)
        seq = rng.choice((None, rng.randrange(1 << 32)))
        ack = rng.choice((None, rng.randrange(1 << 32)))
        if r < 0.25:
            conv, h, w, server_call = calls[host]
            send(build_pptp_gre(HOSTS[h], SERVER, server_call, PPP, seq=seq, ack=ack,
                                ttl=rng.choice((64, 64, 2, 1))), True)
        elif r < 0.50:
            conv, h, w, server_call = calls[host]
            send(build_pptp_gre(SERVER, WAN, w if w is not None else 1, PPP, seq=seq, ack=ack,
                                ttl=rng.choice((64, 64, 2, 1))), False)
        elif r < 0.65:
            h = rng.randrange(2)
            send(build_esp_packet(HOSTS[h], GATEWAY, rng.choice((0x100 + h, 0x100 + h, 0x300)),
                                  rng.randrange(1 << 32), bytes(rng.randrange(8, 64))), True)
        elif r < 0.80:
            send(build_esp_packet(GATEWAY, WAN, rng.choice((0x200, 0x201, 0x200, 0x201, 0x999)),
                                  rng.randrange(1 << 32), bytes(rng.randrange(8, 64))), False)
        elif r < 0.84:  # a broken header: bad checksum, GRE v0, a GRE v1 header cut short
            kind = rng.randrange(3)
            if kind == 0:
                pkt = build_esp_packet(GATEWAY, WAN, 0x200, 1, bytes(16))
                pkt[10] ^= 0x40
            elif kind == 1:
                pkt = build_ipv4(SERVER, WAN, PROTO_GRE, build_gre(0x0800, bytes(20), key=1))
            else:
                pkt = build_pptp_gre(SERVER, WAN, calls[host][2] or 1, b"", seq=1, ack=1)
                pkt = build_ipv4(SERVER, WAN, PROTO_GRE, bytes(pkt[20:34]))
            send(pkt, rng.random() < 0.5)
        elif r < 0.90:
            now += rng.choice((0.2, 1.5, 12.0, 45.0))
            eng.expire(now)
        elif r < 0.93:
            name = rng.choice(("pptp", "ipsec"))
            eng.set_switch(name, not helpers[name].enabled, now)
        elif r < 0.95:
            cfg = dataclasses.replace(cfg, timeouts=Timeouts(gre=rng.choice((20.0, 30.0)),
                                                             esp=rng.choice((20.0, 30.0))))
            eng.reconfigure(cfg, now)
        elif r < 0.97:
            conv, h, w, server_call = calls[host]
            if conv is not None:
                conv.now = now
                conv.from_remote(bytes(P.build_cdn(server_call)))
        else:  # a new call (after an end or a switch flip)
            c, w = open_call(eng, HOSTS[host], rng.choice((0x1234, 0x55)), SERVER_CALLS[host],
                             41000 + rng.randrange(1000), now)
            calls[host] = (c, host, w, SERVER_CALLS[host])
        seen.append(("helpers", {n: h.stats() for n, h in helpers.items()}))
    st = eng.status()
    seen.append(("end", st["helpers"], st["drops"], st["counters"]))
    return seen


@pytest.mark.parametrize("seed", range(6))
def test_fast_path_gives_what_the_helpers_give(seed: int) -> None:
    fast = run_script(seed, slow=False)
    slow = run_script(seed, slow=True)
    assert len(fast) == len(slow)
    for i, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert a == b, f"step {i}"
    # the script is not trivial: packets of every kind went through and some were dropped
    codes = [x[0] for x in fast if isinstance(x[0], int)]
    assert V.TO_WAN in codes and V.TO_LAN in codes and V.DROP in codes


def test_established_gre_and_esp_skip_the_helper() -> None:
    eng, helpers = make()
    calls = {"pptp": 0, "ipsec": 0}
    for name, h in helpers.items():
        if name in calls:
            orig = h.on_ip_packet

            def counted(buf: bytearray, ihl: int, from_lan: bool, now: float,
                        _orig: Any = orig, _name: str = name) -> int | str:
                calls[_name] += 1
                return _orig(buf, ihl, from_lan, now)  # type: ignore[no-any-return]

            h.on_ip_packet = counted  # type: ignore[method-assign]
    _, w = open_call(eng, HOSTS[0], 0x1234, SERVER_CALLS[0], 40000, 0.0)
    assert w is not None
    for k in range(50):
        out = build_pptp_gre(HOSTS[0], SERVER, SERVER_CALLS[0], PPP, seq=k)
        assert eng.process(out, True, 1.0) == V.TO_WAN and out[12:16] == bytes((203, 0, 113, 1))
        inb = build_pptp_gre(SERVER, WAN, w, PPP, seq=k, ack=k)
        assert eng.process(inb, False, 1.0) == V.TO_LAN
        assert G.get_call_id(inb, 20) == 0x1234 and checksums_ok(inb) and inb[8] == 63
        assert eng.process(build_esp_packet(HOSTS[1], GATEWAY, 0x100, k + 1, bytes(32)), True, 1.0) == V.TO_WAN
        e_in = build_esp_packet(GATEWAY, WAN, 0x200, k + 1, bytes(32))
        assert eng.process(e_in, False, 1.0) == V.TO_LAN and e_in[16:20] == bytes((192, 168, 1, 11))
    assert calls == {"pptp": 2, "ipsec": 2}  # the first packet of each direction only
    stats = eng.status()["helpers"]
    assert stats["pptp"]["stats"]["gre_packets"] == 100
    assert stats["ipsec"]["stats"]["esp_packets"] == 100


def test_fast_path_follows_the_ends_of_calls_and_sas() -> None:
    eng, helpers = make(Timeouts(gre=30.0, esp=30.0))
    c, w = open_call(eng, HOSTS[0], 0x1234, SERVER_CALLS[0], 40000, 0.0)
    assert w is not None
    for now in (1.0, 2.0):
        assert eng.process(build_pptp_gre(SERVER, WAN, w, PPP), False, now) == V.TO_LAN
        assert eng.process(build_esp_packet(HOSTS[1], GATEWAY, 0x100, 1, bytes(32)), True, now) == V.TO_WAN
        assert eng.process(build_esp_packet(GATEWAY, WAN, 0x200, 1, bytes(32)), False, now) == V.TO_LAN
    assert len(eng._ipfast) == 3
    # GRE every 20 s keeps the call although only the fast path sees it
    for now in (20.0, 40.0, 60.0):
        assert eng.process(build_pptp_gre(SERVER, WAN, w, PPP), False, now) == V.TO_LAN
        eng.expire(now)
    assert eng.status()["helpers"]["pptp"]["stats"]["tunnels"] == 1
    # the ESP session (silent since 2 s) timed out: its SA left the fast path with it
    assert eng.process(build_esp_packet(GATEWAY, WAN, 0x200, 2, bytes(32)), False, 60.0) == V.DROP
    assert eng.last_drop == V.NO_MAPPING
    c.now = 61.0
    c.from_remote(bytes(P.build_cdn(SERVER_CALLS[0])))
    assert eng.process(build_pptp_gre(SERVER, WAN, w, PPP), False, 61.0) == V.DROP
    assert eng.last_drop == "pptp:no-call" and len(eng._ipfast) == 0


def test_switch_off_and_reload_drop_the_cached_translations() -> None:
    eng, helpers = make()
    _, w = open_call(eng, HOSTS[0], 0x1234, SERVER_CALLS[0], 40000, 0.0)
    assert w is not None
    assert eng.process(build_pptp_gre(SERVER, WAN, w, PPP), False, 1.0) == V.TO_LAN
    assert eng.process(build_esp_packet(HOSTS[1], GATEWAY, 0x100, 1, bytes(32)), True, 1.0) == V.TO_WAN
    eng.reconfigure(eng.config, 2.0)
    assert len(eng._ipfast) == 0
    assert eng.process(build_pptp_gre(SERVER, WAN, w, PPP), False, 2.0) == V.TO_LAN
    assert eng.process(build_esp_packet(HOSTS[1], GATEWAY, 0x100, 2, bytes(32)), True, 2.0) == V.TO_WAN
    assert len(eng._ipfast) == 2
    eng.set_switch("ipsec", False, 3.0)
    assert eng.process(build_esp_packet(HOSTS[1], GATEWAY, 0x100, 3, bytes(32)), True, 3.0) == V.DROP
    assert eng.last_drop == V.passthrough_disabled("ipsec")
    eng.set_switch("pptp", False, 3.0)
    assert eng.process(build_pptp_gre(SERVER, WAN, w, PPP), False, 3.0) == V.DROP
    assert eng.last_drop == V.passthrough_disabled("pptp") and len(eng._ipfast) == 0
