"""Engine factory for the live tests: the real engine when it exists, else a tiny stand-in NAT.

The stand-in is test-only scaffolding (port-preserving source NAT with address-and-port-dependent
filtering, ICMP echo, TTL expiry) so the datapath can be exercised before ``natpass.nat.engine``
lands. Once the engine is importable the tests use it and this stand-in is never constructed.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from natpass.nat import verdict as V
from natpass.nat.config import NatConfig
from natpass.packets.checksum import internet_checksum, l4_checksum


def real_engine_available() -> bool:
    """True once natpass.nat.engine exists and builds with the default config."""
    if importlib.util.find_spec("natpass.nat.engine") is None:
        return False
    try:
        from natpass.nat.engine import Engine

        Engine(NatConfig())
    except Exception:
        return False
    return True


def engine_factory(nat: NatConfig, log_event: Any) -> Any:
    if real_engine_available():
        from natpass.router.daemon import default_engine_factory

        return default_engine_factory(nat, log_event)
    return StandInEngine(nat)


def _fix(buf: bytearray) -> None:
    ihl = (buf[0] & 0x0F) * 4
    buf[10:12] = b"\x00\x00"
    buf[10:12] = internet_checksum(buf[:ihl]).to_bytes(2, "big")
    proto = buf[9]
    if proto in (6, 17):
        off = ihl + (16 if proto == 6 else 6)
        buf[off:off + 2] = b"\x00\x00"
        c = l4_checksum(buf[12:16], buf[16:20], proto, buf[ihl:])
        if proto == 17 and c == 0:
            c = 0xFFFF
        buf[off:off + 2] = c.to_bytes(2, "big")
    elif proto == 1:
        buf[ihl + 2:ihl + 4] = b"\x00\x00"
        buf[ihl + 2:ihl + 4] = internet_checksum(buf[ihl:]).to_bytes(2, "big")


class StandInEngine:
    def __init__(self, nat: NatConfig) -> None:
        self.nat = nat
        self.wan = nat.wan_addresses[0]
        self.inb: dict[tuple[int, bytes], tuple[bytes, bytes]] = {}
        self.drops: dict[str, int] = {}
        self.counters: dict[str, int] = {}
        self.reply: bytearray | None = None
        self.emitted: list[bytearray] = []
        self.last_drop: str | None = None
        self.helpers: list[Any] = []

    def _drop(self, reason: str) -> int:
        self.last_drop = reason
        self.drops[reason] = self.drops.get(reason, 0) + 1
        return V.DROP

    @staticmethod
    def _port(buf: bytearray, ihl: int, from_lan: bool) -> bytes | None:
        proto = buf[9]
        if proto in (6, 17):
            return bytes(buf[ihl:ihl + 2] if from_lan else buf[ihl + 2:ihl + 4])
        if proto == 1 and buf[ihl] in ((8,) if from_lan else (0,)):
            return bytes(buf[ihl + 4:ihl + 6])
        return None

    def process(self, buf: bytearray, from_lan: bool, now: float) -> int:
        ihl = (buf[0] & 0x0F) * 4
        port = self._port(buf, ihl, from_lan)
        if port is None:
            return self._drop(V.UNSUPPORTED)
        if from_lan:
            if buf[8] <= 1:
                quote = bytes(buf[:ihl + 8])
                icmp = bytearray(b"\x0b\x00\x00\x00\x00\x00\x00\x00" + quote)
                ip = bytearray(b"\x45\x00" + (20 + len(icmp)).to_bytes(2, "big") + b"\x00\x00\x00\x00\x40\x01\x00\x00"
                               + self.wan + bytes(buf[12:16]))
                self.reply = ip + icmp
                _fix(self.reply)
                self._drop(V.TTL_EXCEEDED)
                return V.REPLY | V.TO_LAN
            buf[8] -= 1
            self.inb[(buf[9], port)] = (bytes(buf[12:16]), bytes(buf[16:20]))
            buf[12:16] = self.wan
            _fix(buf)
            return V.TO_WAN
        m = self.inb.get((buf[9], port))
        if m is None or m[1] != bytes(buf[12:16]) or bytes(buf[16:20]) != self.wan:
            return self._drop(V.NO_MAPPING)
        buf[8] -= 1
        buf[16:20] = m[0]
        _fix(buf)
        return V.TO_LAN

    def expire(self, now: float) -> None:
        pass

    def flows(self) -> list[Any]:
        return []

    def status(self) -> dict[str, Any]:
        return {"flows": {"total": len(self.inb)}, "drops": dict(self.drops), "counters": {}}

    def set_switch(self, name: str, on: bool, now: float) -> int:
        return 0

    def reconfigure(self, config: NatConfig, now: float) -> None:
        self.nat = config


# ----- shared by the live tests (tests/datapath and tests/router) -------------------------------
RUNNER = """
import logging, sys
sys.path.insert(0, {tests_dir!r})
from test_datapath_live_standin import engine_factory
from natpass.router.cli_run import run_daemon
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")
sys.exit(run_daemon({config!r}, engine_factory=engine_factory))
"""


def natpass_argv(config: str) -> list[str]:
    """``natpass run`` itself once the engine exists; the stand-in runner before that."""
    import sys
    from pathlib import Path

    if real_engine_available():
        return [sys.executable, "-m", "natpass.router.cli_run", "--config", config, "--log-level", "debug"]
    tests_dir = str(Path(__file__).resolve().parent)
    return [sys.executable, "-c", RUNNER.format(tests_dir=tests_dir, config=config)]
