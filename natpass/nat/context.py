"""What the engine offers its helpers: :class:`EngineContext`, the ``HelperContext`` of
natpass.nat.helper."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from natpass.nat.helper import FlowView
from natpass.nat.ipfast import IpFast
from natpass.nat.ports import PORT_BYTES
from natpass.nat.table import DEAD, Flow
from natpass.packets.rewrite import rewrite_bytes, set_address

if TYPE_CHECKING:
    from natpass.nat.state import NatState

PROTO_ICMP = 1


class EngineContext:
    """The :class:`natpass.nat.helper.HelperContext` the engine gives to its helpers."""

    def __init__(self, state: NatState) -> None:
        self._e = state

    def wan_address_for(self, lan_addr: bytes) -> bytes:
        return self._e._pair(bytes(lan_addr))

    def is_lan(self, addr: bytes) -> bool:
        return self._e._is_lan(bytes(addr))

    def set_dst(self, buf: bytearray, addr: bytes) -> None:
        set_address(buf, 16, bytes(addr))

    def rewrite(self, buf: bytearray, offset: int, new: bytes) -> None:
        rewrite_bytes(buf, offset, bytes(new))

    def is_wan_address(self, addr: bytes) -> bool:
        return bytes(addr) in self._e._wan_set

    def find_flow(self, proto: int, lan_addr: bytes, lan_port: int, remote_addr: bytes,
                  remote_port: int) -> FlowView | None:
        key = bytes(lan_addr) + bytes(remote_addr) + PORT_BYTES[lan_port]
        if proto != PROTO_ICMP:
            key += PORT_BYTES[remote_port]
        return cast(FlowView | None, self._e.table.lookup_out(proto, key))

    def fast_path(self, flow: FlowView, on: bool = True) -> None:
        if isinstance(flow, Flow) and not flow.flags & DEAD:
            self._e._release(flow, on)

    def ip_fast_path(self, proto: int, from_lan: bool, src: bytes, dst: bytes, ident: int,
                     new_addr: bytes, new_ident: int | None, now: float) -> IpFast:
        return self._e._ipfast.install(proto, from_lan, src, dst, ident, new_addr, new_ident, now)

    def ip_fast_remove(self, entry: IpFast) -> None:
        self._e._ipfast.remove(entry)

    def count(self, name: str, n: int = 1) -> None:
        c = self._e._counters
        c[name] = c.get(name, 0) + n

    def log(self, event: str, **fields: Any) -> None:
        ev = {"event": event}
        ev.update(fields)
        self._e.events.append(ev)
