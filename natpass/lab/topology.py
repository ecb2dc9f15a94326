"""Lab topologies: LAN clients, one or two NAT routers, a transit "internet", and a server.

``basic``::

    c1..cN ── lan (bridge) ── r1 ── inet ── srv (198.51.100.10 and .11: two addresses for RFC 5780)
    192.168.1.0/24            203.0.113.0/24   198.51.100.0/24

``double-nat``: c1..cN ── lan ── r1 ── 192.168.2.0/24 ── r2 ── inet ── srv
``cgnat``:      c1..cN ── lan ── r1 ── 100.64.0.0/10 ── cgn ── inet ── srv

``r1`` (the home router) is ``natpass`` or ``kernel``; the outer NAT (``r2``/``cgn``) likewise
(kernel by default). A ``kernel`` router is nftables masquerade with the kernel's PPTP helper
attached at ``priority filter`` (REAL-PEERS.md: at ``priority raw`` it silently does nothing) and
ip_forward=1. A ``natpass`` router runs ``natpass run --config <generated>`` inside its namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from natpass.lab.netns import LabError, Netns

TOPOLOGIES = ("basic", "double-nat", "cgnat")
ROUTER_KINDS = ("natpass", "kernel")

LAN_PREFIX = "192.168.1.0/24"
LAN_GATEWAY = "192.168.1.1"
CLIENT_BASE = 10  # c1 is 192.168.1.11, c2 .12, ...
WAN_PREFIX = "203.0.113.0/24"
WAN_ADDR = "203.0.113.1"
INET_WAN = "203.0.113.254"
SRV_PREFIX = "198.51.100.0/24"
INET_SRV = "198.51.100.1"
SRV_ADDRS = ("198.51.100.10", "198.51.100.11")  # RFC 5780 needs two server addresses
DOUBLE_NAT_LINK = ("192.168.2.1", "192.168.2.2", "192.168.2.0/24")  # (outer NAT, home router, prefix)
CGNAT_LINK = ("100.64.0.1", "100.64.0.2", "100.64.0.0/10")  # RFC 6598 shared address space

KERNEL_NAT_RULESET = """\
table ip natpass_lab
delete table ip natpass_lab
table ip natpass_lab {{
    ct helper pptp-h {{
        type "pptp" protocol tcp
        l3proto ip
    }}
    chain helpers {{
        type filter hook prerouting priority filter; policy accept;
        tcp dport 1723 ct helper set "pptp-h"
    }}
    chain port_forwards {{
        type nat hook prerouting priority dstnat; policy accept;
{dnat}
    }}
    chain masq {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{wan}" masquerade
    }}
}}
"""


@dataclass
class Forward:
    """A port forward on the home router: ``proto``/``port`` on its WAN address -> ``to``."""

    proto: str
    port: int
    to: str  # "192.168.1.11:1723"


@dataclass
class Router:
    """One NAT router of the topology and what the lab needs to drive it."""

    node: str
    kind: str
    lan_if: str
    lan_addr: str
    lan_prefix: str
    wan_if: str
    wan_addr: str
    wan_prefix: str
    gateway: str
    pptp: bool = False
    ipsec: bool = False
    l2tp: bool = False
    strict: bool = False
    mapping: str = "endpoint-independent"
    filtering: str = "address-and-port-dependent"
    forwards: list[Forward] = field(default_factory=list)
    datapath: str = "packet"  # natpass routers: "packet" or "hybrid" ([router] datapath)
    config: str | None = None
    admin_socket: str | None = None
    pid: int | None = None
    error: str | None = None


@dataclass
class Topology:
    """What ``lab up`` built (saved as ``topology.json`` in the prefix's state dir)."""

    prefix: str
    name: str
    clients: list[str]
    client_addrs: dict[str, str]
    routers: list[Router]
    server: str = "srv"
    server_addrs: tuple[str, ...] = SRV_ADDRS
    nodes: list[str] = field(default_factory=list)

    @property
    def home(self) -> Router:
        return self.routers[0]

    def router(self, node: str) -> Router:
        for r in self.routers:
            if r.node == node:
                return r
        raise LabError(f"no router {node}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Topology:
        routers = []
        for r in data["routers"]:
            r = dict(r)
            r["forwards"] = [Forward(**f) for f in r.get("forwards", [])]
            routers.append(Router(**r))
        data = dict(data)
        data["routers"] = routers
        data["server_addrs"] = tuple(data.get("server_addrs", SRV_ADDRS))
        return cls(**data)

    def save(self, lab: Netns) -> None:
        lab.write("topology.json", json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, lab: Netns) -> Topology | None:
        p = lab.state_dir / "topology.json"
        if not p.is_file():
            return None
        return cls.from_json(json.loads(p.read_text()))


def natpass_run_available() -> bool:
    """Whether this checkout's ``natpass`` has the live datapath (``natpass run``) yet."""
    try:
        from natpass.cli import build_parser

        parser = build_parser()
    except Exception:
        return False
    for action in parser._actions:  # argparse keeps subcommands here
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict) and "run" in choices:
            return True
    return False


def natpass_argv(*args: str) -> list[str]:
    """How to invoke this checkout's natpass (works without the console script installed)."""
    return [sys.executable, "-m", "natpass.cli", *args]


def router_config_toml(r: Router, state_dir: Path) -> str:
    """The natpass.toml for a natpass router of the lab."""
    lines = [
        "# generated by natpass lab",
        "[wan]",
        f'addresses = ["{r.wan_addr}"]',
        f'interface = "{r.wan_if}"',
        f'gateway = "{r.gateway}"',
        "mtu = 1500",
        "[lan]",
        f'prefixes = ["{r.lan_prefix}"]',
        f'interface = "{r.lan_if}"',
        f'address = "{r.lan_addr}"',
        "[nat]",
        f'mapping = "{r.mapping}"',
        f'filtering = "{r.filtering}"',
        "[passthrough]",
        f"pptp = {str(r.pptp).lower()}",
        f"ipsec = {str(r.ipsec).lower()}",
        f"l2tp = {str(r.l2tp).lower()}",
        f"strict = {str(r.strict).lower()}",
        "[router]",
        f'state_dir = "{state_dir}"',
        f'admin_socket = "{r.admin_socket}"',
        f'datapath = "{r.datapath}"',
    ]
    for f in r.forwards:
        lines += ["[[forward]]", f'proto = "{f.proto}"', f"port = {f.port}", f'to = "{f.to}"']
    return "\n".join(lines) + "\n"


def kernel_ruleset(r: Router) -> str:
    dnat = "\n".join(
        f'        iifname "{r.wan_if}" {f.proto} dport {f.port} dnat to {f.to}' for f in r.forwards
    )
    return KERNEL_NAT_RULESET.format(wan=r.wan_if, dnat=dnat)


def build(
    lab: Netns,
    name: str = "basic",
    router: str = "kernel",
    clients: int = 1,
    outer: str = "kernel",
    pptp: bool = False,
    ipsec: bool = False,
    l2tp: bool = False,
    mapping: str = "endpoint-independent",
    filtering: str = "address-and-port-dependent",
    forwards: list[Forward] | None = None,
    strict: bool = False,
    start_routers: bool = True,
    datapath: str = "packet",
) -> Topology:
    """Build topology ``name`` under ``lab``'s prefix (the caller cleans up on failure)."""
    if name not in TOPOLOGIES:
        raise LabError(f"unknown topology {name!r} (one of {', '.join(TOPOLOGIES)})")
    for kind in (router, outer):
        if kind not in ROUTER_KINDS:
            raise LabError(f"unknown router kind {kind!r} (natpass or kernel)")
    if not 1 <= clients <= 8:
        raise LabError("--clients must be 1..8")
    cnames = [f"c{i}" for i in range(1, clients + 1)]
    caddrs = {c: f"192.168.1.{CLIENT_BASE + i}" for i, c in enumerate(cnames, 1)}

    # The home router r1; its WAN side depends on the topology.
    if name == "basic":
        r1_wan, r1_wan_prefix, r1_gw = WAN_ADDR, WAN_PREFIX, INET_WAN
    elif name == "double-nat":
        r1_wan, r1_wan_prefix, r1_gw = DOUBLE_NAT_LINK[1], DOUBLE_NAT_LINK[2], DOUBLE_NAT_LINK[0]
    else:
        r1_wan, r1_wan_prefix, r1_gw = CGNAT_LINK[1], CGNAT_LINK[2], CGNAT_LINK[0]
    home = Router(
        node="r1", kind=router, lan_if="lan0", lan_addr=LAN_GATEWAY, lan_prefix=LAN_PREFIX,
        wan_if="wan0", wan_addr=r1_wan, wan_prefix=r1_wan_prefix, gateway=r1_gw,
        pptp=pptp, ipsec=ipsec, l2tp=l2tp, strict=strict, mapping=mapping, filtering=filtering,
        forwards=list(forwards or []), datapath=datapath,
    )
    routers = [home]
    if name != "basic":
        inner_addr, _, link_prefix = DOUBLE_NAT_LINK if name == "double-nat" else CGNAT_LINK
        routers.append(
            Router(
                node="r2" if name == "double-nat" else "cgn", kind=outer, lan_if="lan0", lan_addr=inner_addr,
                lan_prefix=link_prefix, wan_if="wan0", wan_addr=WAN_ADDR, wan_prefix=WAN_PREFIX,
                gateway=INET_WAN, pptp=pptp, ipsec=ipsec, l2tp=l2tp,
            )
        )
    topo = Topology(prefix=lab.prefix, name=name, clients=cnames, client_addrs=caddrs, routers=routers)
    topo.nodes = ["lan", *cnames, *(r.node for r in routers), "inet", "srv"]
    topo.save(lab)  # early, so `lab down` finds it even if the build fails halfway

    for node in topo.nodes:
        lab.add(node)
    # LAN: a bridge in the "lan" namespace joins the clients and r1's lan0.
    lab.ip("lan", "link", "add", "br0", "type", "bridge")
    lab.ip("lan", "link", "set", "br0", "up")
    lab.veth("lan", "p-r1", "r1", "lan0")
    lab.ip("lan", "link", "set", "p-r1", "master", "br0")
    lab.addr("r1", "lan0", f"{LAN_GATEWAY}/24")
    for c in cnames:
        lab.veth("lan", f"p-{c}", c, "eth0")
        lab.ip("lan", "link", "set", f"p-{c}", "master", "br0")
        lab.addr(c, "eth0", f"{caddrs[c]}/24")
        lab.route(c, "default", via=LAN_GATEWAY)
        lab.offloads_off(c, "eth0")
    # Home router WAN and the outer NAT, if any.
    plen = r1_wan_prefix.split("/")[1]
    if name == "basic":
        lab.veth("r1", "wan0", "inet", "wan0")
    else:
        outer_r = routers[1]
        lab.veth("r1", "wan0", outer_r.node, "lan0")
        lab.addr(outer_r.node, "lan0", f"{outer_r.lan_addr}/{plen}")
        lab.veth(outer_r.node, "wan0", "inet", "wan0")
        lab.addr(outer_r.node, "wan0", f"{WAN_ADDR}/24")
        lab.route(outer_r.node, "default", via=INET_WAN)
    lab.addr("r1", "wan0", f"{r1_wan}/{plen}")
    lab.route("r1", "default", via=r1_gw)
    # The transit "internet" and the server with two addresses.
    lab.addr("inet", "wan0", f"{INET_WAN}/24")
    lab.veth("inet", "srv0", "srv", "eth0")
    lab.addr("inet", "srv0", f"{INET_SRV}/24")
    lab.sysctl("inet", "net.ipv4.ip_forward", 1)
    for a in SRV_ADDRS:
        lab.addr("srv", "eth0", f"{a}/24")
    lab.offloads_off("srv", "eth0")
    lab.route("srv", "default", via=INET_SRV)
    for r in routers:
        configure_router(lab, r, start=start_routers)
    topo.save(lab)
    return topo


def configure_router(lab: Netns, r: Router, start: bool = True) -> None:
    """Make ``r`` a NAT: the kernel's (nftables) or natpass's (``natpass run``)."""
    if r.kind == "kernel":
        lab.sysctl(r.node, "net.ipv4.ip_forward", 1)
        lab.nft(r.node, kernel_ruleset(r))
        return
    # natpass moves the packets itself: the kernel must not forward them a second time.
    lab.sysctl(r.node, "net.ipv4.ip_forward", 0)
    state = lab.path(r.node, "state", ".keep").parent
    r.admin_socket = str(lab.path(r.node, "natpass.sock"))
    r.config = str(lab.write(f"{r.node}/natpass.toml", router_config_toml(r, state), 0o644))
    if start:
        start_natpass(lab, r)


def start_natpass(lab: Netns, r: Router, timeout: float = 10.0) -> bool:
    """Start ``natpass run`` in the router's namespace; False (with ``r.error``) when unavailable."""
    if not natpass_run_available():
        r.error = "natpass run is not available in this checkout yet"
        return False
    assert r.config is not None
    label = f"natpass-{r.node}"
    r.pid = lab.spawn(r.node, natpass_argv("run", "--config", r.config), label=label)
    ok = lab.wait_for(lambda: not lab.alive(r.pid or 0) or Path(r.admin_socket or "").exists(), timeout)
    if not lab.alive(r.pid):
        r.error = f"natpass run exited: {lab.log(label)[-500:]}"
        return False
    if not ok:
        r.error = "natpass run did not open its admin socket"
    return True


def restart_router(lab: Netns, topo: Topology, r: Router) -> None:
    """Apply a changed router (switches, behaviours, forwards): rewrite and restart."""
    if r.kind == "natpass":
        if r.pid:
            lab.kill(r.pid)
            r.pid = None
        configure_router(lab, r, start=True)
    else:
        configure_router(lab, r)
    topo.save(lab)


def natpass_status(lab: Netns, r: Router, timeout: float = 5.0) -> dict[str, Any] | None:
    """``natpass status --json`` of a natpass router (None when it cannot be read)."""
    if r.kind != "natpass" or not r.config:
        return None
    try:
        proc = lab.run(r.node, natpass_argv("status", "--json", "--config", r.config), check=False, timeout=timeout)
        return json.loads(proc.stdout) if proc.returncode == 0 else None
    except (LabError, ValueError):
        return None


def drops_of(status: dict[str, Any] | None) -> dict[str, int]:
    """The drop counters (reason -> count) of a ``natpass status --json`` answer."""
    drops = (status or {}).get("drops")
    return {str(k): int(v) for k, v in drops.items()} if isinstance(drops, dict) else {}


def conntrack(lab: Netns, node: str, expect: bool = False) -> str:
    """``conntrack -L`` (or ``-L expect``) inside a kernel router: what the kernel tracked."""
    argv = ["conntrack", "-L", "expect"] if expect else ["conntrack", "-L"]
    return lab.run(node, argv, check=False).stdout


def status(lab: Netns) -> dict[str, Any]:
    """What exists under the prefix: topology, namespaces, recorded processes (alive or not)."""
    topo = Topology.load(lab)
    procs = [
        {"pid": p.pid, "label": p.label, "ns": p.ns, "alive": lab.alive(p.pid), "argv": p.argv}
        for p in lab.recorded()
    ]
    out: dict[str, Any] = {
        "prefix": lab.prefix,
        "namespaces": lab.namespaces(),
        "processes": procs,
        "topology": topo.to_json() if topo else None,
        "natpass_run_available": natpass_run_available(),
    }
    if topo:
        out["routers"] = {}
        for r in topo.routers:
            info: dict[str, Any] = {"kind": r.kind, "wan": r.wan_addr, "lan": r.lan_addr}
            if r.kind == "natpass":
                info["running"] = bool(r.pid and lab.alive(r.pid))
                st = natpass_status(lab, r) if info["running"] else None
                info["drops"] = drops_of(st)
                if r.error:
                    info["error"] = r.error
            elif lab.exists(r.node):
                ct = conntrack(lab, r.node)
                info["conntrack_entries"] = len([x for x in ct.splitlines() if x.strip()])
            out["routers"][r.node] = info
    return out


def wait_reachable(lab: Netns, node: str, addr: str, timeout: float = 5.0) -> bool:
    """Ping ``addr`` from ``node`` until one answer comes back (ARP and routes settle)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = subprocess.run(lab.argv(node, ["ping", "-c1", "-W1", addr]), capture_output=True, check=False)
        if proc.returncode == 0:
            return True
    return False
