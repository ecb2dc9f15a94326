"""Flow and mapping records and the storage seam the translation logic is written against.

A *mapping* (RFC 4787 section 4.1) binds a LAN endpoint (plus the remote address, or address and
port, for the dependent mapping behaviours) to a WAN address and port. A *flow* (a session) is one
LAN endpoint talking to one remote endpoint through a mapping; it carries the precomputed rewrite
values (shared objects) and RFC 1624 checksum deltas of both directions so that the established
path only slices bytes in and adds integers.

Keys are ``bytes`` sliced straight out of the IPv4 packet, per IP protocol:

* TCP/UDP ``out_key`` = LAN addr + remote addr + LAN port + remote port (bytes 12..24 of a LAN-side
  packet with a 20-byte header), ``in_key`` = remote addr + WAN addr + remote port + WAN port
  (bytes 12..24 of the WAN-side packet);
* ICMP queries: addr + addr + identifier (10 bytes); other IP protocols: addr + addr (8 bytes).

:class:`FlowTable` is the storage seam (add, lookup, remove, iterate), like mirage-nat's table
module: a compact store (arrays, a C extension) can replace the dicts. The engine's hot path reads
``table.out[proto]`` / ``table.inb[proto]`` with ``.get(key)``, so a replacement must offer that.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

_V = TypeVar("_V")

# Flow.flags bits.
OUTBOUND = 1  # opened from the LAN side (False: port forward, expectation, inbound)
REPLIED = 2  # a packet went the other way since creation
SLOW_OUT = 4  # LAN->WAN packets of this flow take the slow path (hairpin, helper, unreplied inbound)
SLOW_IN = 8  # WAN->LAN packets take the slow path (until the first reply, hairpin, helper)
DEAD = 16  # removed from the table (timer wheel entries are deleted lazily)
CLOSE_NOTIFIED = 32  # helper.on_flow_closed already called
HAIRPIN = 64  # the remote end is one of our WAN addresses
# The flow is its own mapping (endpoint-independent mapping, one session): it stands in the
# engine's mapping indexes instead of a Mapping object, which is made ("promoted") only when a
# second session joins. Most mappings have one session, so this saves a Mapping per flow.
MAP_HOLDER = 128
# The owning helper called ctx.fast_path(flow): it needs no per-packet calls (on_flow_packet,
# inbound_lookup), so the flow's packets take the fast path like any other flow's.
RELEASED = 256

# Flow.flags holds the TCP state bits above these (Flow.state reads them): one slot less.
STATE_SHIFT = 16
# TCP state bits (RFC 5382 section 5: established vs. transitory connections).
SYN_LAN = 1
SYN_WAN = 2
FIN_LAN = 4
FIN_WAN = 8
RST_SEEN = 16
WS_LAN = 32  # the LAN side's SYN carried the RFC 7323 window-scale option
WS_WAN = 64  # the remote side's SYN carried it


class Mapping:
    """One NAT binding: LAN endpoint -> WAN address:port. ``static`` for a port forward.

    ``lan_key`` starts with the LAN address and port (then the remote address, or address and
    port, under the dependent mapping behaviours); ``wan_key`` is WAN address + port."""

    __slots__ = ("proto", "lan_key", "wan_key", "sessions", "remotes", "static")

    def __init__(self, proto: int, lan_key: bytes, wan_key: bytes, static: bool = False) -> None:
        self.proto = proto
        self.lan_key = lan_key
        self.wan_key = wan_key
        self.sessions = 0
        # remote address -> session count; kept only under address-dependent filtering
        self.remotes: dict[bytes, int] | None = None
        self.static = static

    @property
    def lan_addr(self) -> bytes:
        return self.lan_key[0:4]

    @property
    def lan_port(self) -> int:
        k = self.lan_key
        return k[4] << 8 | k[5]

    @property
    def wan_addr(self) -> bytes:
        return self.wan_key[0:4]

    @property
    def wan_port(self) -> int:
        k = self.wan_key
        return k[4] << 8 | k[5]


class FlowExt:
    """What few flows have: a Mapping shared with other sessions, an owning helper and its
    state. One object on those flows instead of three slots on every flow."""

    __slots__ = ("mapping", "helper", "helper_state")

    def __init__(self) -> None:
        self.mapping: Mapping | None = None
        self.helper: Any = None
        self.helper_state: Any = None


class Flow:
    """One session. Implements :class:`natpass.nat.helper.FlowView` (addresses are 4-byte bytes).

    16 slots (160 bytes with the GC header): ``state`` lives in the high bits of ``flags`` and
    ``mapping``/``helper``/``helper_state`` in ``ext`` (None on most flows)."""

    __slots__ = ("proto", "out_key", "in_key", "o_ipd", "o_l4d", "i_ipd", "i_l4d", "o_addr",
                 "o_port", "i_addr", "i_port", "last", "timeout", "flags", "ext", "bucket")

    def __init__(self, proto: int, out_key: bytes, in_key: bytes) -> None:
        self.proto = proto
        self.out_key = out_key
        self.in_key = in_key
        # RFC 1624 adjustments of the IP (TTL decrement included) and L4 checksums, per direction
        self.o_ipd = 0
        self.o_l4d = 0
        self.i_ipd = 0
        self.i_l4d = 0
        # What a translated packet gets, per direction: the new source (outbound: the WAN
        # address and port / ICMP identifier) or destination (inbound: the LAN host's). These
        # are shared objects (the engine's WAN addresses, one interned bytes per LAN host, the
        # PORT_BYTES table), not per-flow copies: a flow's only own bytes are its two keys.
        self.o_addr = b""
        self.o_port = b""
        self.i_addr = b""
        self.i_port = b""
        self.last = 0.0
        self.timeout = 0.0
        self.flags = 0
        self.ext: FlowExt | None = None
        self.bucket: list[Flow] | None = None

    @property
    def state(self) -> int:
        """TCP state bits (SYN_LAN ... RST_SEEN)."""
        return self.flags >> STATE_SHIFT

    @state.setter
    def state(self, st: int) -> None:
        self.flags = (self.flags & ((1 << STATE_SHIFT) - 1)) | st << STATE_SHIFT

    def _ext(self) -> FlowExt:
        e = self.ext
        if e is None:
            e = self.ext = FlowExt()
        return e

    @property
    def mapping(self) -> Mapping | None:
        e = self.ext
        return None if e is None else e.mapping

    @mapping.setter
    def mapping(self, m: Mapping | None) -> None:
        if m is not None or self.ext is not None:
            self._ext().mapping = m

    @property
    def helper(self) -> Any:
        e = self.ext
        return None if e is None else e.helper

    @helper.setter
    def helper(self, h: Any) -> None:
        if h is not None or self.ext is not None:
            self._ext().helper = h

    @property
    def helper_state(self) -> Any:
        e = self.ext
        return None if e is None else e.helper_state

    @helper_state.setter
    def helper_state(self, v: Any) -> None:
        if v is not None or self.ext is not None:
            self._ext().helper_state = v

    # A MAP_HOLDER flow reads like a dynamic Mapping in the mapping indexes (class attributes,
    # no per-flow storage): never static, no remote tracking (holders exist only without it).
    static = False
    remotes: dict[bytes, int] | None = None

    # FlowView --------------------------------------------------------------------------------
    @property
    def lan_addr(self) -> bytes:
        return self.i_addr

    @property
    def remote_addr(self) -> bytes:
        return self.out_key[4:8]

    @property
    def wan_addr(self) -> bytes:
        return self.o_addr

    @property
    def lan_port(self) -> int:
        k = self.out_key
        return (k[8] << 8 | k[9]) if len(k) >= 10 else 0

    @property
    def remote_port(self) -> int:
        k = self.out_key
        return (k[10] << 8 | k[11]) if len(k) >= 12 else 0

    @property
    def wan_port(self) -> int:
        k = self.in_key
        if len(k) >= 12:
            return k[10] << 8 | k[11]
        if len(k) >= 10:
            return k[8] << 8 | k[9]
        return 0

    @property
    def outbound(self) -> bool:
        return bool(self.flags & OUTBOUND)

    def __repr__(self) -> str:
        def a(b: bytes) -> str:
            return ".".join(str(x) for x in b)
        return (f"Flow(proto={self.proto} {a(self.lan_addr)}:{self.lan_port} -> "
                f"{a(self.wan_addr)}:{self.wan_port} <-> {a(self.remote_addr)}:{self.remote_port})")


class TcpFlow(Flow):
    """A TCP flow: a Flow plus what the receive-window check needs (natpass.nat.tcp_track)."""

    __slots__ = ("o_seq", "i_seq", "o_wmax", "i_wmax")

    def __init__(self, proto: int, out_key: bytes, in_key: bytes) -> None:
        super().__init__(proto, out_key, in_key)
        self.o_seq = -1  # sequence number of the latest segment from the LAN side (-1: none yet)
        self.i_seq = -1  # from the remote side
        self.o_wmax = 65535 << 14  # largest window the LAN side may advertise (scale unknown)
        self.i_wmax = 65535 << 14


class FlowTable:
    """Flows by outbound and inbound key, one dict per IP protocol (the storage seam)."""

    __slots__ = ("out", "inb", "count")

    def __init__(self) -> None:
        self.out: list[dict[bytes, Flow] | None] = [None] * 256
        self.inb: list[dict[bytes, Flow] | None] = [None] * 256
        for proto in (1, 6, 17):
            self.out[proto] = {}
            self.inb[proto] = {}
        self.count = 0

    def add(self, flow: Flow) -> None:
        p = flow.proto
        out = self.out[p]
        if out is None:
            out = self.out[p] = {}
            self.inb[p] = {}
        inb = self.inb[p]
        assert inb is not None
        out[flow.out_key] = flow
        inb[flow.in_key] = flow
        self.count += 1

    def lookup_out(self, proto: int, key: bytes) -> Flow | None:
        d = self.out[proto]
        return d.get(key) if d is not None else None

    def lookup_in(self, proto: int, key: bytes) -> Flow | None:
        d = self.inb[proto]
        return d.get(key) if d is not None else None

    def remove(self, flow: Flow) -> None:
        out = self.out[flow.proto]
        inb = self.inb[flow.proto]
        if out is not None and out.get(flow.out_key) is flow:
            del out[flow.out_key]
            self.count -= 1
        if inb is not None and inb.get(flow.in_key) is flow:
            del inb[flow.in_key]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Flow]:
        for d in self.out:
            if d:
                yield from list(d.values())

    def by_proto(self) -> dict[int, int]:
        return {p: len(d) for p, d in enumerate(self.out) if d}


PORTS = 65536


class PortIndex(Generic[_V]):
    """WAN endpoint (4-byte address + 2-byte port, the ``wan_key``) -> value, as one 65536-slot
    list per WAN address instead of a dict: no key object and no hash entry per mapping (about
    90 bytes each), for a fixed 512 KiB per WAN address and protocol in use. Reads like the
    dict it replaces (``get``, ``in``, item assignment and deletion, ``values``, ``len``)."""

    __slots__ = ("_by_addr", "_n")

    def __init__(self) -> None:
        self._by_addr: dict[bytes, list[_V | None]] = {}
        self._n = 0

    def get(self, wkey: bytes) -> _V | None:
        slots = self._by_addr.get(wkey[0:4])
        return None if slots is None else slots[wkey[4] << 8 | wkey[5]]

    def __contains__(self, wkey: bytes) -> bool:
        return self.get(wkey) is not None

    def get_at(self, addr: bytes, port: int) -> _V | None:
        """``get(addr + port bytes)`` without building the key (new flows)."""
        slots = self._by_addr.get(addr)
        return None if slots is None else slots[port]

    def set_at(self, addr: bytes, port: int, value: _V) -> None:
        slots = self._by_addr.get(addr)
        if slots is None:
            slots = self._by_addr[addr] = [None] * PORTS
        if slots[port] is None:
            self._n += 1
        slots[port] = value

    def __setitem__(self, wkey: bytes, value: _V) -> None:
        addr = wkey[0:4]
        slots = self._by_addr.get(addr)
        if slots is None:
            slots = self._by_addr[addr] = [None] * PORTS
        port = wkey[4] << 8 | wkey[5]
        if slots[port] is None:
            self._n += 1
        slots[port] = value

    def __delitem__(self, wkey: bytes) -> None:
        slots = self._by_addr.get(wkey[0:4])
        port = wkey[4] << 8 | wkey[5]
        if slots is None or slots[port] is None:
            raise KeyError(wkey)
        slots[port] = None
        self._n -= 1

    def __len__(self) -> int:
        return self._n

    def values(self) -> Iterator[_V]:
        """Every value (a full scan: reconfiguration and status only)."""
        for slots in list(self._by_addr.values()):
            for v in slots:
                if v is not None:
                    yield v


# Port numbers as shared int objects: a LanIndex stores them as dict keys, and an int above 256
# made by arithmetic would be one more 32-byte object per mapping.
PORT_INTS: tuple[int, ...] = tuple(range(PORTS))


class LanIndex(Generic[_V]):
    """Mapping index by LAN key. The endpoint-independent key (LAN address + port, 6 bytes: the
    default and most mappings) is stored as LAN host -> {port: value}, so a mapping costs one
    small-dict entry and no key object (the host bytes exist once per host, the ports are
    PORT_INTS). Longer keys (the dependent mapping behaviours) go to a plain dict. Reads like
    the dict it replaces (``get``, item assignment and deletion, ``values``, ``len``)."""

    __slots__ = ("_hosts", "_long", "_n")

    def __init__(self) -> None:
        self._hosts: dict[bytes, dict[int, _V]] = {}
        self._long: dict[bytes, _V] = {}
        self._n = 0

    def get(self, key: bytes) -> _V | None:
        if len(key) == 6:
            ports = self._hosts.get(key[0:4])
            return None if ports is None else ports.get(key[4] << 8 | key[5])
        return self._long.get(key)

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    def get_ep(self, lan: bytes, port: int) -> _V | None:
        """``get`` of the endpoint-independent key without building it (new flows)."""
        ports = self._hosts.get(lan)
        return None if ports is None else ports.get(port)

    def set_ep(self, lan: bytes, port: int, value: _V) -> None:
        ports = self._hosts.get(lan)
        if ports is None:
            ports = self._hosts[lan] = {}
        p = PORT_INTS[port]
        if p not in ports:
            self._n += 1
        ports[p] = value

    def __setitem__(self, key: bytes, value: _V) -> None:
        if len(key) == 6:
            host = key[0:4]
            ports = self._hosts.get(host)
            if ports is None:
                ports = self._hosts[host] = {}
            port = PORT_INTS[key[4] << 8 | key[5]]
            if port not in ports:
                self._n += 1
            ports[port] = value
            return
        if key not in self._long:
            self._n += 1
        self._long[key] = value

    def __delitem__(self, key: bytes) -> None:
        if len(key) == 6:
            host = key[0:4]
            ports = self._hosts.get(host)
            if ports is None:
                raise KeyError(key)
            del ports[key[4] << 8 | key[5]]
            if not ports:
                del self._hosts[host]
        else:
            del self._long[key]
        self._n -= 1

    def __len__(self) -> int:
        return self._n

    def values(self) -> Iterator[_V]:
        """Every value (reconfiguration only)."""
        for ports in list(self._hosts.values()):
            yield from list(ports.values())
        yield from list(self._long.values())
