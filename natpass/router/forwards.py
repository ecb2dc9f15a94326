"""Port forwards as a person writes them, and the checks a forward added at run time must pass.

A forward is refused (``ForwardError``, nothing changed) when it is invalid, when its WAN port is
taken (another forward, a passthrough helper's port, natpass's hybrid ports, a connection holding it
now) or when, with the hybrid datapath, the kernel refuses the new rules. The config file edits are in :mod:`natpass.router.settings`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natpass.nat.config import PortForward
from natpass.nat.helper import FlowView
from natpass.passthrough.ipsec import IpsecHelper
from natpass.passthrough.l2tp import L2tpHelper
from natpass.passthrough.pptp import PptpHelper
from natpass.router.config import RouterConfig

FORWARD_PROTOS = ("tcp", "udp")
# The HTTP status of each refusal (Unix socket and web API alike).
REFUSAL_STATUS = {"invalid": 422, "conflict": 409, "missing": 404, "kernel": 500}


class ForwardError(ValueError):
    """A port forward change that is refused; ``kind`` says why: ``invalid`` (the request), ``conflict``
    (the port is taken), ``missing`` (no such forward) or ``kernel`` (the hybrid datapath's kernel
    rules could not be replaced)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ForwardSpec:
    """One port forward as a person writes it: ``tcp`` WAN ``port`` -> ``to_addr:to_port``."""

    proto: str
    port: int
    to_addr: str
    to_port: int
    wan_address: str | None = None
    comment: str | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> ForwardSpec:
        """From an API body (``{"proto", "port", "to": "ADDR[:PORT]", "wan_address", "comment"}``);
        raises ``ForwardError("invalid", ...)`` naming the field."""
        unknown = set(data) - {"proto", "port", "to", "wan_address", "comment", "runtime_only"}
        if unknown:
            raise ForwardError("invalid", f"unknown field(s): {', '.join(sorted(unknown))}")
        proto = data.get("proto")
        if proto not in FORWARD_PROTOS:
            raise ForwardError("invalid", f"proto must be \"tcp\" or \"udp\", not {proto!r}")
        port = _port(data.get("port"), "port")
        to = data.get("to")
        m = re.fullmatch(r"(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?", to.strip()) if isinstance(to, str) else None
        if m is None:
            raise ForwardError("invalid", f"to must be \"ADDRESS[:PORT]\" (e.g. \"192.168.1.10:80\"), not {to!r}")
        addr = _ipv4(m.group(1), "to")
        to_port = _port(int(m.group(2)), "the port in to") if m.group(2) else port
        wan = data.get("wan_address")
        if wan is not None and not isinstance(wan, str):
            raise ForwardError("invalid", "wan_address must be an IPv4 address")
        comment = data.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 200 or "\n" in comment):
            raise ForwardError("invalid", "comment must be one line of at most 200 characters")
        return cls(str(proto), port, addr, to_port, _ipv4(wan, "wan_address") if wan else None, comment or None)

    @property
    def proto_number(self) -> int:
        return 6 if self.proto == "tcp" else 17

    def describe(self) -> str:
        wan = self.wan_address or "*"
        return f"{self.proto} {wan}:{self.port} -> {self.to_addr}:{self.to_port}"

    def as_dict(self) -> dict[str, Any]:
        return {"proto": self.proto, "port": self.port, "to": f"{self.to_addr}:{self.to_port}",
                "wan_address": self.wan_address, "comment": self.comment}


def _port(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ForwardError("invalid", f"{what} must be a whole number from 1 to 65535, not {value!r}")
    return value


def _ipv4(text: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise ForwardError("invalid", f"{what}: {text!r} is not an IPv4 address") from None


def forward_specs(cfg: RouterConfig) -> list[ForwardSpec]:
    """The forwards of ``cfg`` (the running config) as specs."""
    out = []
    for f in cfg.nat.forwards:
        out.append(ForwardSpec("tcp" if f.proto == 6 else "udp", f.wan_port, str(ipaddress.IPv4Address(f.lan_addr)), f.lan_port,
                               str(ipaddress.IPv4Address(f.wan_addr)) if f.wan_addr else None))
    return out


@dataclass(frozen=True, slots=True)
class ForwardResult:
    """A port forward added or removed: whether the config file now says so (and why not)."""

    action: str  # "added" | "removed"
    forward: dict[str, Any]
    saved: bool
    save_error: str | None
    version: int | None  # the config history version now running (None: not saved)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_HELPER_PORTS = ((PptpHelper, "PPTP's control port (PPTP passthrough)"),
                 (IpsecHelper, "an IKE port (IPsec passthrough)"),
                 (L2tpHelper, "L2TP's port (L2TP passthrough)"))


def port_owner(proto: int, port: int) -> str | None:
    """Which passthrough helper owns WAN ``port`` (a forward there would take its traffic)."""
    for helper, what in _HELPER_PORTS:
        if port in (helper.tcp_ports if proto == 6 else helper.udp_ports):
            return what
    return None


def checked(spec: ForwardSpec, cfg: RouterConfig, hybrid: bool) -> PortForward:
    """``spec`` as the engine's forward, checked against the running ``cfg`` (``hybrid``: the
    hybrid datapath runs); raises ForwardError."""
    lan_addr = ipaddress.IPv4Address(spec.to_addr)
    if not any(lan_addr in net for net in cfg.nat.lan_prefixes):
        nets = ", ".join(str(n) for n in cfg.nat.lan_prefixes)
        raise ForwardError("invalid", f"{spec.to_addr} is not in the LAN ({nets})")
    wan = ipaddress.IPv4Address(spec.wan_address).packed if spec.wan_address else None
    if wan is not None and wan not in cfg.wan_addresses:
        raise ForwardError("invalid", f"wan_address {spec.wan_address} is not one of the router's WAN addresses")
    for other in forward_specs(cfg):
        if other.proto == spec.proto and other.port == spec.port and (
                other.wan_address is None or spec.wan_address is None or other.wan_address == spec.wan_address):
            raise ForwardError("conflict", f"{spec.proto} port {spec.port} is already forwarded ({other.describe()})")
    owner = port_owner(spec.proto_number, spec.port)
    if owner is not None:
        raise ForwardError("conflict", f"{spec.proto} port {spec.port} is {owner}")
    lo, hi = cfg.hybrid_ports
    if hybrid and lo <= spec.port <= hi:
        raise ForwardError("conflict", f"port {spec.port} is in natpass's own WAN ports of the hybrid "
                                       f"datapath ({lo}-{hi})")
    return PortForward(spec.proto_number, spec.port, lan_addr.packed, spec.to_port, wan)


def holder(flows: Iterable[FlowView], fwd: PortForward) -> str | None:
    """The LAN host's connection that holds ``fwd``'s WAN port now (``lan -> remote``), if any."""
    for flow in flows:
        if (flow.proto == fwd.proto and flow.wan_port == fwd.wan_port and flow.outbound
                and (fwd.wan_addr is None or flow.wan_addr == fwd.wan_addr)):
            return (f"{ipaddress.IPv4Address(flow.lan_addr)}:{flow.lan_port} -> "
                    f"{ipaddress.IPv4Address(flow.remote_addr)}:{flow.remote_port}")
    return None


def with_comments(specs: Iterable[ForwardSpec], config_path: str) -> list[ForwardSpec]:
    """``specs`` with the comment the config file gives each (the engine keeps none)."""
    notes: dict[tuple[Any, Any, Any], str] = {}
    with contextlib.suppress(OSError, ValueError):
        for item in tomllib.loads(Path(config_path).read_text(encoding="utf-8")).get("forward", []):
            if isinstance(item, dict) and isinstance(item.get("comment"), str):
                notes[(item.get("proto"), item.get("port"), item.get("wan_address"))] = item["comment"]
    return [dataclasses.replace(s, comment=notes.get((s.proto, s.port, s.wan_address))) for s in specs]
