"""The contract between the NAT engine and the passthrough helpers (conntrack-helper style).

A helper is a small object that names what it claims (whole IP protocols such as GRE/ESP/AH, and
TCP/UDP server ports such as 1723/500/4500/1701), gets a callback for each packet it claims, and
reaches the rest of the engine only through :class:`HelperContext`. Adding a protocol never edits
the engine's table code. The engine imports nothing from ``natpass.passthrough``: helpers are
injected (``Engine(config, helpers=[...])``).

Order of work for one packet (see docs/ARCHITECTURE.md):
1. the engine checks the IPv4 header (malformed, TTL, MTU) and handles fragments;
2. IP protocol owned by a helper (``ip_protocols``) -> ``helper.on_ip_packet`` decides everything,
   unless the helper cached the translation of an established GRE call or ESP SA with
   ``ctx.ip_fast_path`` (natpass.nat.ipfast), which the engine then applies itself;
3. TCP/UDP: if the flow's server port (the remote port for outbound, the forwarded LAN port for
   inbound) is in a helper's ``tcp_ports``/``udp_ports``, the engine asks ``choose_wan_port`` when
   creating the mapping, ``inbound_lookup`` before its own lookup of an inbound packet, and calls
   ``on_flow_packet`` for every packet of that flow after translating addresses and ports,
   until the helper releases the flow with ``ctx.fast_path(flow)`` (it needs nothing more per
   packet: e.g. NAT-T on 4500, IKE with the switch off), after which the flow is as fast as any;
4. a helper that is not ``enabled`` still gets its calls, so it can drop with
   ``passthrough-disabled:<name>`` or pass control traffic as ordinary TCP/UDP, as its switch says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from natpass.nat.config import NatConfig
    from natpass.nat.ipfast import IpFast


class FlowView(Protocol):
    """What a helper may read (and tag) of one engine flow. Addresses are 4-byte ``bytes``."""

    proto: int  # 6 TCP, 17 UDP, 1 ICMP
    lan_addr: bytes
    lan_port: int
    wan_addr: bytes
    wan_port: int
    remote_addr: bytes
    remote_port: int
    outbound: bool  # True when the LAN side opened it (False: port forward / inbound)
    last: float  # injected-clock time of the flow's last packet
    helper_state: Any  # free for the owning helper (None until set)


class HelperContext(Protocol):
    """Engine services offered to helpers. ``now`` is always the injected clock (seconds)."""

    def wan_address_for(self, lan_addr: bytes) -> bytes:
        """The WAN address paired with this LAN host (paired pooling)."""

    def is_lan(self, addr: bytes) -> bool:
        """True when ``addr`` is inside a configured LAN prefix."""

    def set_dst(self, buf: bytearray, addr: bytes) -> None:
        """Rewrite the IPv4 destination address, fixing the IP checksum (and TCP/UDP's, if any)."""

    def rewrite(self, buf: bytearray, offset: int, new: bytes) -> None:
        """Overwrite ``len(new)`` bytes at ``offset`` (absolute, inside the L4 payload or header)
        and fix the TCP/UDP checksum incrementally. Lengths never change. Odd offsets and lengths
        are handled."""

    def is_wan_address(self, addr: bytes) -> bool:
        """True when ``addr`` is one of the router's WAN addresses (a restored record must name
        one of them)."""

    def find_flow(self, proto: int, lan_addr: bytes, lan_port: int, remote_addr: bytes,
                  remote_port: int) -> FlowView | None:
        """The live flow for this LAN endpoint and remote endpoint, if any (how a helper's
        restored state finds the engine's restored flows)."""

    def fast_path(self, flow: FlowView, on: bool = True) -> None:
        """Release a claimed flow from per-packet calls: its later packets skip
        ``on_flow_packet`` and (matching the flow exactly) ``inbound_lookup`` and are translated
        on the engine's fast path; ``on_flow_closed`` still comes. ``on=False`` takes it back.
        The engine takes every flow back when the helper's switch is flipped."""

    def ip_fast_path(self, proto: int, from_lan: bool, src: bytes, dst: bytes, ident: int,
                     new_addr: bytes, new_ident: int | None, now: float) -> IpFast:
        """Cache the translation of one direction of an established GRE v1 call (``ident``: the
        Call ID of the GRE key) or raw-ESP SA (``ident``: the SPI) between ``src`` and ``dst``:
        later packets of it are translated by the engine (``new_addr`` as source when
        ``from_lan``, else as destination; inbound GRE also gets ``new_ident`` as its Call ID)
        without an ``on_ip_packet`` call. The entry's ``last`` and ``packets`` say what the engine
        saw; the helper folds them into its state and removes the entry
        (:meth:`ip_fast_remove`) when the call or SA ends or changes. The engine drops a
        helper's entries when its switch flips and all entries on a reload (``live`` False)."""

    def ip_fast_remove(self, entry: IpFast) -> None:
        """Forget a cached translation (a no-op when the engine dropped it already)."""

    def count(self, name: str, n: int = 1) -> None:
        """Add to a counter shown in status/metrics (e.g. ``pptp:bad-cookie``)."""

    def log(self, event: str, **fields: Any) -> None:
        """Record a notable event (tunnel up/down) for the router's usage record."""


class Helper:
    """Base class of a passthrough helper. Subclasses set the class attributes and override hooks.

    Every hook gets the injected time ``now``. Hooks returning ``str | None`` return None to let the
    packet go on, or a drop reason (``passthrough-disabled:<name>``, ``strict-blocked:<name>``,
    ``no-mapping``, ``malformed`` or ``<name>:<detail>``) to drop it; the engine counts it.
    """

    name: str = ""  # also the name of its [passthrough] switch: "pptp", "ipsec", "l2tp"
    ip_protocols: frozenset[int] = frozenset()  # IP protocols owned entirely (47; 50, 51)
    tcp_ports: frozenset[int] = frozenset()  # TCP server ports followed (1723)
    udp_ports: frozenset[int] = frozenset()  # UDP server ports followed (500, 4500; 1701)

    def __init__(self) -> None:
        self.enabled = False
        self.strict = False
        self.ctx: HelperContext | None = None

    def bind(self, ctx: HelperContext) -> None:
        """Called once when the engine registers the helper."""
        self.ctx = ctx

    def reconfigure(self, config: NatConfig, now: float) -> None:
        """A reload: take the new config's settings (e.g. timeouts). Switch and strict changes
        arrive through :meth:`set_enabled` and ``strict``, not here."""

    def set_enabled(self, on: bool, now: float) -> int:
        """Flip the passthrough switch at run time; returns how many tunnels were torn down."""
        self.enabled = on
        return 0

    def on_ip_packet(self, buf: bytearray, ihl: int, from_lan: bool, now: float) -> int | str:
        """A packet of an owned IP protocol (IPv4 header already checked, TTL already handled).
        Translate it in place (``natpass.packets.rewrite``, ``ctx.set_dst``) and return the
        verdict code (``TO_WAN``/``TO_LAN``), or a drop reason string."""
        return "no-mapping"

    def choose_wan_port(self, proto: int, lan_addr: bytes, lan_port: int, remote_addr: bytes,
                        remote_port: int, wan_addr: bytes) -> int | None:
        """Preferred WAN port for a new outbound mapping of a claimed port; None: engine decides.
        The engine uses it if free (it never steals a port another mapping holds)."""
        return None

    def inbound_lookup(self, proto: int, buf: bytearray, ihl: int, now: float) -> FlowView | None:
        """Before the engine's own lookup of an inbound packet to a claimed port: return the flow
        it belongs to (e.g. IKE demultiplexed by initiator SPI), or None for the normal lookup."""
        return None

    def on_flow_packet(self, flow: FlowView, buf: bytearray, ihl: int, from_lan: bool,
                       now: float) -> str | None:
        """A TCP/UDP packet of a claimed flow, after address/port translation (``buf`` is what
        goes out). Rewrite payload fields with ``ctx.rewrite``; return None or a drop reason.
        Also called, with ``flow`` None-safe semantics not needed, for the first packet."""
        return None

    def on_flow_closed(self, flow: FlowView, now: float) -> None:
        """A claimed flow ended (TCP close, timeout, table eviction)."""

    def far_end_view(self, buf: bytearray, ihl: int, now: float) -> None:
        """Replay only: an inbound packet taken from a capture is addressed as the far end saw the
        *untranslated* client. Rewrite its helper-specific fields (e.g. PPTP Peer Call ID, GRE
        key) to what the far end sent after seeing the translated traffic. For TCP/UDP the engine
        has already rewritten the destination address and port; for an owned IP protocol the
        destination is still the LAN host (its only demultiplexing key, e.g. two LAN hosts with the
        same PPTP Call ID) and the engine puts the WAN address in after this call."""

    def tick(self, now: float) -> None:
        """Called by the engine at most once per second of injected time: expire helper state."""

    def stats(self) -> dict[str, int]:
        """Counters and live tunnel counts for status, metrics and the audit."""
        return {}

    def tunnels(self) -> list[dict[str, Any]]:
        """Live tunnels (for ``natpass status``): one dict each, JSON-serialisable."""
        return []

    def snapshot(self, now: float) -> dict[str, Any]:
        """The helper's state as plain data (JSON-able), times relative to ``now``, to be saved
        across a restart (natpass.nat.snapshot). Empty when the helper keeps nothing."""
        return {}

    def restore(self, data: dict[str, Any], now: float) -> int:
        """Take back what :meth:`snapshot` gave, ``now`` being the snapshot's instant on the
        current clock; the engine's flows are restored already (find them with
        ``ctx.find_flow``). Records that no longer fit are skipped; returns how many were
        restored. Called only when the helper's switch is on."""
        return 0

