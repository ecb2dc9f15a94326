"""``natpass.toml``: load, validate whole, and say the file and line of anything wrong.

An invalid file is refused whole (``ConfigError``); nothing of it is applied, so a running router
keeps its config. Unknown sections and keys are errors too: a typo in a switch name must not
silently leave a protocol blocked.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from natpass.datapath.owned import DEFAULT_NATPASS_PORTS, DEFAULT_NATT, check_settings
from natpass.nat.config import (
    BEHAVIOURS,
    Limits,
    NatConfig,
    Passthrough,
    PortForward,
    Timeouts,
)

DEFAULT_STATE_DIR = "/var/lib/natpass"
DEFAULT_ADMIN_SOCKET = "/run/natpass/natpass.sock"

# RFC minimums a timeout may not go below unless [timeouts] allow_below_rfc = true.
RFC_MINIMUMS = {
    "udp": (120.0, "RFC 4787 REQ-5"),
    "udp_natt": (120.0, "RFC 4787 REQ-5"),
    "tcp_established": (7440.0, "RFC 5382 REQ-5"),
    "tcp_transitory": (240.0, "RFC 5382 REQ-5"),
    "icmp": (60.0, "RFC 5508 REQ-1"),
}

EXAMPLE = """\
# natpass.toml: a home/office router with every passthrough switch off (the safe default).
[wan]
addresses = ["203.0.113.1"]     # the router's public address(es); paired pooling per LAN host
interface = "wan0"              # live router only
# gateway = "203.0.113.254"     # next hop on the WAN side, when the far side is not on-link
mtu = 1500

[lan]
prefixes = ["192.168.1.0/24"]
interface = "lan0"
address = "192.168.1.1"         # the router's LAN address (the clients' default gateway)

[nat]
mapping = "endpoint-independent"          # RFC 4787 REQ-1
filtering = "address-and-port-dependent"  # or address-dependent / endpoint-independent
port_range = [1024, 65535]
port_preservation = true
hairpinning = true

[timeouts]                      # seconds; values below the RFC minimums are refused
udp = 300
tcp_established = 7440
tcp_transitory = 240
icmp = 60

[limits]
max_flows = 65536
max_flows_per_host = 4096

[passthrough]                   # off until needed: see `natpass advise`
pptp = false
ipsec = false
l2tp = false
strict = false                  # true: also close the control ports of switched-off protocols

[router]
state_dir = "/var/lib/natpass"
admin_socket = "/run/natpass/natpass.sock"
# admin_http = "127.0.0.1:8080"
# datapath = "packet"            # or "hybrid": the kernel forwards ordinary traffic (docs/DATAPATH.md)
# hybrid_ports = [61440, 65535]  # hybrid: natpass's WAN ports (the kernel's masquerade stays below)
# hybrid_natt = "kernel"         # hybrid: who handles UDP 4500 (NAT-T), "kernel" or "natpass"

# [[forward]]                   # a static port forward (DNAT) to a server on the LAN
# proto = "tcp"
# port = 443
# to = "192.168.1.10:443"
"""


class ConfigError(ValueError):
    """A config file is invalid; ``line`` is 1-based (0 when unknown)."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """The whole file: the engine's part (``nat``) and the live router's part."""

    nat: NatConfig
    path: str = "<string>"
    wan_interface: str = "wan0"
    lan_interface: str = "lan0"
    wan_gateway: bytes | None = None
    lan_address: bytes | None = None
    state_dir: str = DEFAULT_STATE_DIR
    admin_socket: str = DEFAULT_ADMIN_SOCKET
    admin_http: str | None = None
    datapath: str = "packet"
    log_level: str = "info"
    hybrid_ports: tuple[int, int] = DEFAULT_NATPASS_PORTS  # datapath = "hybrid": natpass's WAN ports
    hybrid_natt: str = DEFAULT_NATT  # datapath = "hybrid": who handles UDP 4500
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def wan_addresses(self) -> tuple[bytes, ...]:
        return self.nat.wan_addresses


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


class _Lines:
    """Where each table and key stands in the file, so errors can name the line."""

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int, str], int] = {}
        counts: dict[str, int] = {}
        table, index = "", 0
        for number, line in enumerate(text.splitlines(), 1):
            m = _HEADER.match(line)
            if m:
                table = m.group(2).replace('"', "").replace(" ", "")
                if m.group(1) == "[[":
                    index = counts.get(table, 0)
                    counts[table] = index + 1
                else:
                    index = 0
                self.tables.setdefault((table, index), number)
                continue
            k = _KEY.match(line)
            if k:
                self.keys.setdefault((table, index, k.group(1)), number)

    def of(self, table: str, key: str | None = None, index: int = 0) -> int:
        if key is not None and (table, index, key) in self.keys:
            return self.keys[(table, index, key)]
        return self.tables.get((table, index), 0)


class _Checker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)

    def fail(self, message: str, table: str, key: str | None = None, index: int = 0) -> ConfigError:
        return ConfigError(self.path, self.lines.of(table, key, index), message)

    def section(self, data: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(f"[{name}] must be a table", name)
        for key in value:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                raise self.fail(f"unknown key '{key}' in [{name}] (known: {hint})", name, key)
        return value

    def boolean(self, sec: dict[str, Any], table: str, key: str, default: bool, index: int = 0) -> bool:
        value = sec.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{key} must be true or false, not {value!r}", table, key, index)
        return value

    def integer(self, sec: dict[str, Any], table: str, key: str, default: int, lo: int, hi: int,
                index: int = 0) -> int:
        value = sec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(f"{key} must be a whole number from {lo} to {hi}, not {value!r}",
                            table, key, index)
        return value

    def string(self, sec: dict[str, Any], table: str, key: str, default: str, index: int = 0) -> str:
        value = sec.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key} must be a non-empty string, not {value!r}", table, key, index)
        return value

    def address(self, value: Any, table: str, key: str, index: int = 0) -> bytes:
        try:
            if not isinstance(value, str):
                raise ValueError
            return ipaddress.IPv4Address(value).packed
        except ValueError:
            raise self.fail(f"{key}: {value!r} is not an IPv4 address", table, key, index) from None


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate ``path``; raise ``ConfigError`` naming the line of the first problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), 0, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(p), 0, "not UTF-8 text") from None
    return parse_config(text, str(p))


def parse_config(text: str, path: str = "<string>") -> RouterConfig:
    """Validate TOML ``text`` whole; raise ``ConfigError`` naming the line of the first problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(path, int(m.group(1)) if m else 0, f"TOML syntax: {exc}") from None
    c = _Checker(path, text)

    known = {"wan", "lan", "nat", "timeouts", "limits", "passthrough", "router", "forward"}
    for name in data:
        if name not in known:
            raise c.fail(f"unknown section [{name}] (known: {', '.join(sorted(known))})", name)

    wan = c.section(data, "wan", {"addresses", "interface", "gateway", "mtu"})
    addrs = wan.get("addresses", ["203.0.113.1"])
    if not isinstance(addrs, list) or not addrs:
        raise c.fail("addresses must be a non-empty list of IPv4 addresses", "wan", "addresses")
    wan_addresses = tuple(c.address(a, "wan", "addresses") for a in addrs)
    if len(set(wan_addresses)) != len(wan_addresses):
        raise c.fail("addresses lists the same address twice", "wan", "addresses")
    mtu = c.integer(wan, "wan", "mtu", 1500, 576, 65535)
    gateway = c.address(wan["gateway"], "wan", "gateway") if "gateway" in wan else None
    wan_if = c.string(wan, "wan", "interface", "wan0")

    lan = c.section(data, "lan", {"prefixes", "interface", "address"})
    raw_prefixes = lan.get("prefixes", ["192.168.1.0/24"])
    if not isinstance(raw_prefixes, list) or not raw_prefixes:
        raise c.fail("prefixes must be a non-empty list of IPv4 prefixes like \"192.168.1.0/24\"",
                     "lan", "prefixes")
    prefixes = []
    for item in raw_prefixes:
        try:
            if not isinstance(item, str):
                raise ValueError(f"{item!r} is not a string")
            prefixes.append(ipaddress.IPv4Network(item))
        except ValueError as exc:
            raise c.fail(f"prefixes: {exc}", "lan", "prefixes") from None
    for a in wan_addresses:
        ip = ipaddress.IPv4Address(a)
        if any(ip in net for net in prefixes):
            raise c.fail(f"WAN address {ip} lies inside a LAN prefix", "wan", "addresses")
    lan_if = c.string(lan, "lan", "interface", "lan0")
    if lan_if == wan_if:
        raise c.fail("the LAN and WAN interfaces must differ", "lan", "interface")
    lan_address = None
    if "address" in lan:
        lan_address = c.address(lan["address"], "lan", "address")
        if not any(ipaddress.IPv4Address(lan_address) in net for net in prefixes):
            raise c.fail(f"address {lan['address']} is outside the LAN prefixes", "lan", "address")

    nat = c.section(data, "nat", {"mapping", "filtering", "port_range", "port_preservation",
                                  "hairpinning", "inbound_refresh", "seed"})
    behaviours = {}
    for key, default in (("mapping", "endpoint-independent"),
                         ("filtering", "address-and-port-dependent")):
        value = nat.get(key, default)
        if value not in BEHAVIOURS:
            raise c.fail(f"{key} must be one of {', '.join(BEHAVIOURS)}, not {value!r}", "nat", key)
        behaviours[key] = value
    port_range = nat.get("port_range", [1024, 65535])
    if (not isinstance(port_range, list) or len(port_range) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in port_range)
            or not 1 <= port_range[0] <= port_range[1] <= 65535):
        raise c.fail("port_range must be [low, high] with 1 <= low <= high <= 65535", "nat", "port_range")
    seed = nat.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise c.fail("seed must be a whole number", "nat", "seed")

    tsec = c.section(data, "timeouts", set(Timeouts.__slots__) | {"allow_below_rfc"})
    below_ok = c.boolean(tsec, "timeouts", "allow_below_rfc", False)
    tvalues: dict[str, float] = {}
    for key in Timeouts.__slots__:
        if key not in tsec:
            continue
        value = tsec[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400 * 7:
            raise c.fail(f"{key} must be a number of seconds above 0 (at most a week)", "timeouts", key)
        minimum = RFC_MINIMUMS.get(key)
        if minimum and value < minimum[0] and not below_ok:
            raise c.fail(f"{key} = {value} is below the {minimum[1]} minimum of {minimum[0]:g} s "
                         "(set allow_below_rfc = true to force it in a lab)", "timeouts", key)
        tvalues[key] = float(value)

    lsec = c.section(data, "limits", set(Limits.__slots__))
    lvalues = {key: c.integer(lsec, "limits", key, getattr(Limits(), key), 0, 10_000_000)
               for key in Limits.__slots__}

    psec = c.section(data, "passthrough", {"pptp", "ipsec", "l2tp", "strict"})
    passthrough = Passthrough(**{k: c.boolean(psec, "passthrough", k, False)
                                 for k in ("pptp", "ipsec", "l2tp", "strict")})

    forwards = _forwards(c, data.get("forward", []), prefixes, wan_addresses)

    rsec = c.section(data, "router", {"state_dir", "admin_socket", "admin_http", "datapath",
                                      "log_level", "hybrid_ports", "hybrid_natt"})
    admin_http = rsec.get("admin_http")
    if admin_http is not None and admin_http is not False:
        if not isinstance(admin_http, str) or not re.fullmatch(r"[0-9.]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}",
                                                                admin_http):
            raise c.fail("admin_http must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:8080\") or false",
                         "router", "admin_http")
    else:
        admin_http = None
    datapath = rsec.get("datapath", "packet")
    if datapath not in ("packet", "hybrid", "tun"):
        raise c.fail(f"datapath must be \"packet\", \"hybrid\" or \"tun\", not {datapath!r}", "router",
                     "datapath")
    hybrid_ports = rsec.get("hybrid_ports", list(DEFAULT_NATPASS_PORTS))
    hybrid_natt = rsec.get("hybrid_natt", DEFAULT_NATT)
    problem = check_settings(hybrid_ports, hybrid_natt)
    if problem:
        raise c.fail(problem, "router", "hybrid_natt" if problem.startswith("hybrid_natt") else "hybrid_ports")
    log_level = rsec.get("log_level", "info")
    if log_level not in ("debug", "info", "warning", "error"):
        raise c.fail("log_level must be debug, info, warning or error", "router", "log_level")

    natcfg = NatConfig(
        wan_addresses=wan_addresses,
        lan_prefixes=tuple(prefixes),
        wan_mtu=mtu,
        mapping=behaviours["mapping"],
        filtering=behaviours["filtering"],
        port_range=(port_range[0], port_range[1]),
        port_preservation=c.boolean(nat, "nat", "port_preservation", True),
        hairpinning=c.boolean(nat, "nat", "hairpinning", True),
        inbound_refresh=c.boolean(nat, "nat", "inbound_refresh", False),
        timeouts=Timeouts(**tvalues),
        limits=Limits(**lvalues),
        forwards=forwards,
        passthrough=passthrough,
        seed=seed,
    )
    return RouterConfig(
        nat=natcfg,
        path=path,
        wan_interface=wan_if,
        lan_interface=lan_if,
        wan_gateway=gateway,
        lan_address=lan_address,
        state_dir=c.string(rsec, "router", "state_dir", DEFAULT_STATE_DIR),
        admin_socket=c.string(rsec, "router", "admin_socket", DEFAULT_ADMIN_SOCKET),
        admin_http=admin_http,
        datapath=datapath,
        log_level=log_level,
        hybrid_ports=(hybrid_ports[0], hybrid_ports[1]),
        hybrid_natt=hybrid_natt,
        raw=data,
    )


def _forwards(c: _Checker, items: Any, prefixes: list[ipaddress.IPv4Network],
              wan_addresses: tuple[bytes, ...]) -> tuple[PortForward, ...]:
    if not isinstance(items, list):
        raise c.fail("forward must be written as [[forward]] tables", "forward")
    result: list[PortForward] = []
    seen: dict[tuple[int, int, bytes | None], int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise c.fail("each [[forward]] must be a table", "forward", index=i)
        for key in item:
            if key not in {"proto", "port", "to", "wan_address", "comment"}:
                raise c.fail(f"unknown key '{key}' in [[forward]] (known: comment, port, proto, to, "
                             "wan_address)", "forward", key, i)
        proto_name = item.get("proto")
        if proto_name not in ("tcp", "udp"):
            raise c.fail(f"proto must be \"tcp\" or \"udp\", not {proto_name!r}", "forward", "proto", i)
        proto = 6 if proto_name == "tcp" else 17
        port = c.integer(item, "forward", "port", 0, 1, 65535, i) if "port" in item else None
        if port is None:
            raise c.fail("a forward needs port = N (the WAN port)", "forward", index=i)
        to = item.get("to")
        m = re.fullmatch(r"([0-9.]+)(?::(\d{1,5}))?", to) if isinstance(to, str) else None
        if not m:
            raise c.fail(f"to must be \"ADDRESS[:PORT]\", not {to!r}", "forward", "to", i)
        lan_addr = c.address(m.group(1), "forward", "to", i)
        lan_port = int(m.group(2)) if m.group(2) else port
        if not 1 <= lan_port <= 65535:
            raise c.fail(f"port {lan_port} in 'to' is out of range", "forward", "to", i)
        if not any(ipaddress.IPv4Address(lan_addr) in net for net in prefixes):
            raise c.fail(f"forward target {m.group(1)} is outside the LAN prefixes", "forward", "to", i)
        wan_addr = None
        if "wan_address" in item:
            wan_addr = c.address(item["wan_address"], "forward", "wan_address", i)
            if wan_addr not in wan_addresses:
                raise c.fail(f"wan_address {item['wan_address']} is not one of [wan] addresses",
                             "forward", "wan_address", i)
        key = (proto, port, wan_addr)
        clash = [k for k in seen if k[0] == proto and k[1] == port
                 and (k[2] is None or wan_addr is None or k[2] == wan_addr)]
        if clash:
            raise c.fail(f"{proto_name} port {port} is already forwarded by the [[forward]] at line "
                         f"{c.lines.of('forward', None, seen[clash[0]])}", "forward", "port", i)
        seen[key] = i
        result.append(PortForward(proto=proto, wan_port=port, lan_addr=lan_addr, lan_port=lan_port,
                                  wan_addr=wan_addr))
    return tuple(result)
