"""``natpass.toml``: load, validate whole, and say the file and line of anything wrong.

An invalid file is refused whole (``ConfigError``); nothing of it is applied, so a running router
keeps its config. Unknown sections and keys are errors too: a typo in a switch name must not
silently leave a protocol blocked. So are files that parse but cannot work: a WAN address no host
can use as a source, a gateway on the LAN side, timeouts shorter than the engine's timer tick.

A file must name ``[wan] addresses`` and ``[lan] prefixes``: natpass cannot guess the router's
public address or which side is inside. Everything else has a default (``natpass config example``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import tomllib
from dataclasses import dataclass
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

DATAPATHS = ("packet", "hybrid")
SECTIONS = ("wan", "lan", "nat", "timeouts", "limits", "passthrough", "router", "forward")
# The engine's timers run on a one-second wheel: a shorter timeout would end a flow before its
# answer could arrive, even in a lab.
TIMEOUT_FLOOR_S = 1.0
TIMEOUT_MAX_S = 7 * 86400.0

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
# admin_http = "127.0.0.1:8080"     # the admin web page and API (login: `natpass passwd`)
# admin_tls_cert = "/etc/natpass/admin.crt"   # serve it over HTTPS with this certificate and key
# admin_tls_key = "/etc/natpass/admin.key"
# metrics_access = "token"        # /metrics: "token" (an API token or a login) or "loopback" (open to 127.0.0.1 only)
# datapath = "packet"            # or "hybrid": the kernel forwards ordinary traffic (docs/DATAPATH.md)
# hybrid_ports = [61440, 65535]  # hybrid: natpass's WAN ports (the kernel's masquerade stays below)
# hybrid_natt = "kernel"         # hybrid: who handles UDP 4500 (NAT-T), "kernel" or "natpass"
state_save_interval = 30        # seconds between saves of the connection state (0: only on stop)

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
    admin_tls_cert: str | None = None
    admin_tls_key: str | None = None
    metrics_access: str = "token"
    datapath: str = "packet"
    log_level: str = "info"
    hybrid_ports: tuple[int, int] = DEFAULT_NATPASS_PORTS  # datapath = "hybrid": natpass's WAN ports
    hybrid_natt: str = DEFAULT_NATT  # datapath = "hybrid": who handles UDP 4500
    state_save_interval: int = 30  # seconds; 0: the connection state is saved on stop only

    @property
    def wan_addresses(self) -> tuple[bytes, ...]:
        return self.nat.wan_addresses


# TOML keys as written: bare, "basic" or 'literal', joined by dots (TOML 1.0 section 2.2).
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_DOTTED = rf"{_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*"
_HEADER = re.compile(rf"[ \t]*(\[\[?)[ \t]*({_DOTTED})[ \t]*\]")
_KEY_LINE = re.compile(rf"[ \t]*({_DOTTED})[ \t]*=")
_PART = re.compile(_KEY_PART)

Where = tuple[tuple[str, ...], int]  # (dotted path from the root, index of its [[array]] element)


def _key_parts(dotted: str) -> tuple[str, ...]:
    parts = []
    for m in _PART.finditer(dotted):
        part = m.group(0)
        if part[0] == '"':
            try:
                part = json.loads(part)  # TOML's basic-string escapes are JSON's for keys in practice
            except ValueError:
                part = part[1:-1]
        elif part[0] == "'":
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


class _Lines:
    """The line where each table and key is first written (headers, keys, dotted keys), so that
    errors can name it. The file has already parsed as TOML, so a line scanner suffices."""

    def __init__(self, text: str) -> None:
        self.where: dict[Where, int] = {}
        counts: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        index = 0
        in_string: str | None = None  # the delimiter of a multi-line string we are inside
        for number, line in enumerate(text.splitlines(), 1):
            if in_string is not None:
                if line.count(in_string) % 2:
                    in_string = None
                continue
            header = _HEADER.match(line)
            if header:
                table = _key_parts(header.group(2))
                if header.group(1) == "[[":
                    index = counts.get(table, 0)
                    counts[table] = index + 1
                else:
                    index = 0
                self._note(table, index, number)
                continue
            key = _KEY_LINE.match(line)
            if key:
                self._note(table + _key_parts(key.group(1)), index, number)
            for delim in ('"""', "'''"):
                if line.count(delim) % 2:
                    in_string = delim
                    break

    def _note(self, path: tuple[str, ...], index: int, number: int) -> None:
        for n in range(1, len(path) + 1):  # a dotted name also defines the tables above it
            self.where.setdefault((path[:n], index), number)

    def of(self, *path: str, index: int = 0) -> int:
        """The line of ``path`` (a section, then keys), else of its nearest table; 0 if none."""
        parts = tuple(path)
        while parts:
            line = self.where.get((parts, index))
            if line is not None:
                return line
            parts = parts[:-1]
        return 0


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    return repr(value)


class _Checker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)

    def fail(self, message: str, table: str, key: str | None = None, index: int = 0) -> ConfigError:
        path = (table,) if key is None else (table, key)
        return ConfigError(self.path, self.lines.of(*path, index=index), message)

    def names(self, sec: dict[str, Any], table: str, allowed: set[str], index: int = 0) -> None:
        """Unknown keys, and tables where a value belongs (``[wan.addresses]``, ``pptp.on = true``,
        ``pptp = {on = true}``): every natpass setting is one value under its section."""
        title = f"[[{table}]]" if table == "forward" else f"[{table}]"
        for key, value in sec.items():
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                raise self.fail(f"unknown key '{key}' in {title} (known: {hint})", table, key, index)
            if isinstance(value, dict):
                raise self.fail(f"'{key}' in {title} is a table (a [{table}.{key}] header, a dotted "
                                f"key or an inline table); it takes a value: {key} = ...", table, key, index)

    def boolean(self, sec: dict[str, Any], table: str, key: str, default: bool, index: int = 0) -> bool:
        value = sec.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{key} must be true or false, not {_describe(value)}", table, key, index)
        return value

    def integer(self, sec: dict[str, Any], table: str, key: str, default: int, lo: int, hi: int,
                index: int = 0) -> int:
        value = sec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(f"{key} must be a whole number from {lo} to {hi}, not {_describe(value)}",
                            table, key, index)
        return value

    def string(self, sec: dict[str, Any], table: str, key: str, default: str, index: int = 0) -> str:
        value = sec.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key} must be a non-empty string, not {_describe(value)}", table, key, index)
        return value

    def address(self, value: Any, table: str, key: str, index: int = 0) -> bytes:
        try:
            if not isinstance(value, str):
                raise ValueError
            return ipaddress.IPv4Address(value).packed
        except ValueError:
            raise self.fail(f"{key}: {_describe(value)} is not an IPv4 address", table, key, index) from None

    def unicast(self, value: Any, table: str, key: str, role: str) -> bytes:
        """An address a host can send from and be reached at (``role`` names it in the error)."""
        packed = self.address(value, table, key)
        why = unusable_reason(ipaddress.IPv4Address(packed))
        if why:
            raise self.fail(f"{key}: {value} cannot be {role}: {why}", table, key)
        return packed


def unusable_reason(ip: ipaddress.IPv4Address) -> str | None:
    """Why ``ip`` cannot be a router's address or next hop on a link, or None when it can."""
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return "it is the limited broadcast address (RFC 919), never a host"
    if ip in ipaddress.IPv4Network("0.0.0.0/8"):
        return "0.0.0.0/8 means 'this host on this network' (RFC 1122 3.2.1.3), never a destination"
    if ip.is_multicast:
        return "it is a multicast group (RFC 1112): never the source of a packet"
    if ip.is_loopback:
        return "127.0.0.0/8 is loopback (RFC 1122 3.2.1.3): packets to it never leave the host"
    if ip.is_link_local:
        return ("169.254.0.0/16 is link-local (RFC 3927): routers do not forward it, so nothing "
                "beyond the link could answer")
    if ip in ipaddress.IPv4Network("240.0.0.0/4"):
        return "240.0.0.0/4 is reserved (RFC 1112 4): hosts and routers drop it"
    return None


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate ``path``; raise ``ConfigError`` naming the line of the first problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), 0, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(str(p), line, f"not UTF-8 text: byte 0x{raw[exc.start]:02X} at column "
                          f"{column} (TOML files are UTF-8; save it as UTF-8)") from None
    return parse_config(text, str(p))


def parse_config(text: str, path: str = "<string>") -> RouterConfig:
    """Validate TOML ``text`` whole; raise ``ConfigError`` naming the line of the first problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(path, int(m.group(1)) if m else 0, f"TOML syntax: {exc}") from None
    if not data:
        raise ConfigError(path, 0, "the file sets nothing: natpass needs at least [wan] addresses "
                          "(the router's public addresses) and [lan] prefixes (the inside networks); "
                          "'natpass config example' prints a complete file")
    c = _Checker(path, text)

    # Names first: a typo is reported as a typo, wherever it is.
    for name, value in data.items():
        if name not in SECTIONS:
            if not isinstance(value, dict | list):
                raise c.fail(f"'{name}' is outside any section: every setting belongs in one of "
                             f"[{'], ['.join(SECTIONS[:-1])}]", name)
            raise c.fail(f"unknown section [{name}] (known: {', '.join(sorted(SECTIONS))})", name)
        if name == "forward":
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                raise c.fail("forward must be written as [[forward]] tables", "forward")
        elif not isinstance(value, dict):
            raise c.fail(f"[{name}] must be a table, not {_describe(value)}", name)
    allowed = {
        "wan": {"addresses", "interface", "gateway", "mtu"},
        "lan": {"prefixes", "interface", "address"},
        "nat": {"mapping", "filtering", "port_range", "port_preservation", "hairpinning",
                "inbound_refresh", "seed"},
        "timeouts": {f.name for f in dataclasses.fields(Timeouts)} | {"allow_below_rfc"},
        "limits": {f.name for f in dataclasses.fields(Limits)},
        "passthrough": {"pptp", "ipsec", "l2tp", "strict"},
        "router": {"state_dir", "admin_socket", "admin_http", "datapath", "log_level", "admin_tls_cert",
                   "admin_tls_key", "metrics_access", "hybrid_ports", "hybrid_natt",
                   "state_save_interval"},
    }
    sections: dict[str, dict[str, Any]] = {}
    for name, keys in allowed.items():
        sections[name] = data.get(name, {})
        c.names(sections[name], name, keys)
    forward_items: list[dict[str, Any]] = data.get("forward", [])
    for i, item in enumerate(forward_items):
        c.names(item, "forward", {"proto", "port", "to", "wan_address", "comment"}, i)

    wan = sections["wan"]
    addrs = wan.get("addresses", [])
    if not isinstance(addrs, list) or ("addresses" in wan and not addrs):
        raise c.fail("addresses must be a non-empty list of IPv4 addresses", "wan", "addresses")
    wan_addresses = tuple(c.unicast(a, "wan", "addresses", "a WAN address") for a in addrs)
    if len(set(wan_addresses)) != len(wan_addresses):
        raise c.fail("addresses lists the same address twice", "wan", "addresses")
    mtu = c.integer(wan, "wan", "mtu", 1500, 576, 65535)
    gateway = c.unicast(wan["gateway"], "wan", "gateway", "the WAN gateway") if "gateway" in wan else None
    if gateway is not None and gateway in wan_addresses:
        raise c.fail(f"gateway {wan['gateway']} is one of the router's own WAN addresses", "wan", "gateway")
    wan_if = c.string(wan, "wan", "interface", "wan0")

    lan = sections["lan"]
    raw_prefixes = lan.get("prefixes", [])
    if not isinstance(raw_prefixes, list) or ("prefixes" in lan and not raw_prefixes):
        raise c.fail("prefixes must be a non-empty list of IPv4 prefixes like \"192.168.1.0/24\"",
                     "lan", "prefixes")
    prefixes = []
    for item in raw_prefixes:
        try:
            if not isinstance(item, str):
                raise ValueError(f"{_describe(item)} is not a string")
            prefixes.append(ipaddress.IPv4Network(item))
        except ValueError as exc:
            raise c.fail(f"prefixes: {exc}", "lan", "prefixes") from None
    for a in wan_addresses:
        ip = ipaddress.IPv4Address(a)
        if any(ip in net for net in prefixes):
            raise c.fail(f"WAN address {ip} lies inside a LAN prefix", "wan", "addresses")
    if gateway is not None:
        gw = ipaddress.IPv4Address(gateway)
        inside = next((net for net in prefixes if gw in net), None)
        if inside is not None:
            raise c.fail(f"gateway {gw} lies inside the LAN prefix {inside}: the WAN next hop must be "
                         "on the WAN side", "wan", "gateway")
    lan_if = c.string(lan, "lan", "interface", "lan0")
    if lan_if == wan_if:
        raise c.fail("the LAN and WAN interfaces must differ", "lan", "interface")
    lan_address = None
    if "address" in lan:
        lan_address = c.unicast(lan["address"], "lan", "address", "the router's LAN address")
        ip = ipaddress.IPv4Address(lan_address)
        net = next((n for n in prefixes if ip in n), None)
        if net is None:
            raise c.fail(f"address {ip} is outside the LAN prefixes", "lan", "address")
        if net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
            raise c.fail(f"address {ip} is the {'network' if ip == net.network_address else 'broadcast'} "
                         f"address of {net}, not a host address", "lan", "address")

    nat = sections["nat"]
    behaviours = {}
    for key, default in (("mapping", "endpoint-independent"),
                         ("filtering", "address-and-port-dependent")):
        value = nat.get(key, default)
        if value not in BEHAVIOURS:
            raise c.fail(f"{key} must be one of {', '.join(BEHAVIOURS)}, not {_describe(value)}", "nat", key)
        behaviours[key] = value
    port_range = nat.get("port_range", [1024, 65535])
    if (not isinstance(port_range, list) or len(port_range) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in port_range)
            or not 1 <= port_range[0] <= port_range[1] <= 65535):
        raise c.fail("port_range must be [low, high] with 1 <= low <= high <= 65535", "nat", "port_range")
    seed = nat.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise c.fail("seed must be a whole number", "nat", "seed")

    tsec = sections["timeouts"]
    below_ok = c.boolean(tsec, "timeouts", "allow_below_rfc", False)
    tvalues: dict[str, float] = {}
    for f in dataclasses.fields(Timeouts):
        key = f.name
        if key not in tsec:
            continue
        value = tsec[key]
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not TIMEOUT_FLOOR_S <= value <= TIMEOUT_MAX_S:
            raise c.fail(f"{key} must be a number of seconds from {TIMEOUT_FLOOR_S:g} to {TIMEOUT_MAX_S:g} "
                         f"(a week), not {_describe(value)}: the engine's timers tick once a second",
                         "timeouts", key)
        minimum = RFC_MINIMUMS.get(key)
        if minimum and value < minimum[0] and not below_ok:
            raise c.fail(f"{key} = {value} is below the {minimum[1]} minimum of {minimum[0]:g} s "
                         "(set allow_below_rfc = true to force it in a lab)", "timeouts", key)
        tvalues[key] = float(value)

    lsec = sections["limits"]
    default_limits = Limits()
    lvalues = {f.name: c.integer(lsec, "limits", f.name, getattr(default_limits, f.name), 0, 10_000_000)
               for f in dataclasses.fields(Limits)}

    psec = sections["passthrough"]
    passthrough = Passthrough(**{k: c.boolean(psec, "passthrough", k, False)
                                 for k in ("pptp", "ipsec", "l2tp", "strict")})

    forwards = _forwards(c, forward_items, prefixes, wan_addresses)

    rsec = sections["router"]
    admin_http = rsec.get("admin_http")
    if admin_http is not None and admin_http is not False:
        if not isinstance(admin_http, str) or not re.fullmatch(r"[0-9.]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}",
                                                                admin_http):
            raise c.fail("admin_http must be \"ADDRESS:PORT\" (e.g. \"127.0.0.1:8080\") or false",
                         "router", "admin_http")
    else:
        admin_http = None
    tls = {k: c.string(rsec, "router", k, "") if k in rsec else None for k in ("admin_tls_cert", "admin_tls_key")}
    if (tls["admin_tls_cert"] is None) != (tls["admin_tls_key"] is None):
        raise c.fail("admin_tls_cert and admin_tls_key go together (a certificate and its key)", "router",
                     "admin_tls_cert" if "admin_tls_cert" in rsec else "admin_tls_key")
    metrics_access = rsec.get("metrics_access", "token")
    if metrics_access not in ("token", "loopback"):
        raise c.fail(f'metrics_access must be "token" or "loopback", not {metrics_access!r}', "router",
                     "metrics_access")
    datapath = rsec.get("datapath", "packet")
    if datapath not in DATAPATHS:
        raise c.fail(f"datapath must be {' or '.join(map(json.dumps, DATAPATHS))}, not {_describe(datapath)}",
                     "router", "datapath")
    hybrid_ports = rsec.get("hybrid_ports", list(DEFAULT_NATPASS_PORTS))
    hybrid_natt = rsec.get("hybrid_natt", DEFAULT_NATT)
    problem = check_settings(hybrid_ports, hybrid_natt)
    if problem:
        raise c.fail(problem, "router", "hybrid_natt" if problem.startswith("hybrid_natt") else "hybrid_ports")
    log_level = rsec.get("log_level", "info")
    if log_level not in ("debug", "info", "warning", "error"):
        raise c.fail("log_level must be debug, info, warning or error", "router", "log_level")

    missing = [what for what, sec, key in (("[wan] addresses", wan, "addresses"),
                                           ("[lan] prefixes", lan, "prefixes")) if key not in sec]
    if missing:
        raise ConfigError(path, 0, f"{' and '.join(missing)} missing: natpass cannot guess the router's "
                          "public addresses or which networks are inside; 'natpass config example' "
                          "prints a complete file")

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
        admin_tls_cert=tls["admin_tls_cert"],
        admin_tls_key=tls["admin_tls_key"],
        metrics_access=metrics_access,
        datapath=datapath,
        log_level=log_level,
        hybrid_ports=(hybrid_ports[0], hybrid_ports[1]),
        hybrid_natt=hybrid_natt,
        state_save_interval=c.integer(rsec, "router", "state_save_interval", 30, 0, 86400),
    )


def _forwards(c: _Checker, items: list[dict[str, Any]], prefixes: list[ipaddress.IPv4Network],
              wan_addresses: tuple[bytes, ...]) -> tuple[PortForward, ...]:
    result: list[PortForward] = []
    seen: dict[tuple[int, int, bytes | None], int] = {}
    for i, item in enumerate(items):
        proto_name = item.get("proto")
        if proto_name not in ("tcp", "udp"):
            raise c.fail(f"proto must be \"tcp\" or \"udp\", not {_describe(proto_name)}", "forward", "proto", i)
        proto = 6 if proto_name == "tcp" else 17
        port = c.integer(item, "forward", "port", 0, 1, 65535, i) if "port" in item else None
        if port is None:
            raise c.fail("a forward needs port = N (the WAN port)", "forward", index=i)
        to = item.get("to")
        m = re.fullmatch(r"([0-9.]+)(?::(\d{1,5}))?", to) if isinstance(to, str) else None
        if not m:
            raise c.fail(f"to must be \"ADDRESS[:PORT]\", not {_describe(to)}", "forward", "to", i)
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
                         f"{c.lines.of('forward', index=seen[clash[0]])}", "forward", "port", i)
        seen[key] = i
        result.append(PortForward(proto=proto, wan_port=port, lan_addr=lan_addr, lan_port=lan_port,
                                  wan_addr=wan_addr))
    return tuple(result)
