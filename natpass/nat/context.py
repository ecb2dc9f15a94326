"""What the engine offers its helpers: :class:`EngineContext` (the ``HelperContext`` of
natpass.nat.helper) and the expectations helpers register for data channels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from natpass.nat.helper import FlowView
from natpass.nat.ports import PORT_BYTES
from natpass.nat.table import DEAD, Flow
from natpass.packets.rewrite import rewrite_bytes, set_address

if TYPE_CHECKING:
    from natpass.nat.state import NatState

PROTO_ICMP = 1


class Expectation:
    """An inbound TCP/UDP flow a helper expects: the first packet from ``remote`` (any when
    None) to the WAN endpoint it is filed under creates a flow to ``lan_addr:lan_port``."""

    __slots__ = ("remote", "lan_addr", "lan_port", "deadline", "owner")

    def __init__(self, remote: bytes | None, lan_addr: bytes, lan_port: int, deadline: float,
                 owner: str) -> None:
        self.remote = remote
        self.lan_addr = lan_addr
        self.lan_port = lan_port
        self.deadline = deadline
        self.owner = owner


class EngineContext:
    """The :class:`natpass.nat.helper.HelperContext` the engine gives to its helpers."""

    def __init__(self, state: NatState) -> None:
        self._e = state

    def wan_address_for(self, lan_addr: bytes) -> bytes:
        return self._e._pair(bytes(lan_addr))

    def is_lan(self, addr: bytes) -> bool:
        return self._e._is_lan(bytes(addr))

    def is_wan_address(self, addr: bytes) -> bool:
        return bytes(addr) in self._e._wan_set

    def set_src(self, buf: bytearray, addr: bytes) -> None:
        set_address(buf, 12, bytes(addr))

    def set_dst(self, buf: bytearray, addr: bytes) -> None:
        set_address(buf, 16, bytes(addr))

    def rewrite(self, buf: bytearray, offset: int, new: bytes) -> None:
        rewrite_bytes(buf, offset, bytes(new))

    def find_flow(self, proto: int, lan_addr: bytes, lan_port: int, remote_addr: bytes,
                  remote_port: int) -> FlowView | None:
        if proto == PROTO_ICMP:
            key = bytes(lan_addr) + bytes(remote_addr) + PORT_BYTES[lan_port]
        else:
            key = bytes(lan_addr) + bytes(remote_addr) + PORT_BYTES[lan_port] + PORT_BYTES[remote_port]
        return cast(FlowView | None, self._e.table.lookup_out(proto, key))

    def expect(self, proto: int, remote_addr: bytes | None, wan_addr: bytes, wan_port: int,
               lan_addr: bytes, lan_port: int, timeout: float, now: float, owner: str) -> None:
        self._e._expect(proto, None if remote_addr is None else bytes(remote_addr), bytes(wan_addr),
                        wan_port, bytes(lan_addr), lan_port, now + timeout, owner)

    def reserve_port(self, proto: int, wan_addr: bytes, preferred: int | None) -> int | None:
        return self._e._ports.alloc(proto, bytes(wan_addr), preferred, None, reserve=True)

    def release_port(self, proto: int, wan_addr: bytes, port: int) -> None:
        self._e._ports.release(proto, bytes(wan_addr), port)

    def fast_path(self, flow: FlowView, on: bool = True) -> None:
        if isinstance(flow, Flow) and not flow.flags & DEAD:
            self._e._release(flow, on)

    def count(self, name: str, n: int = 1) -> None:
        c = self._e._counters
        c[name] = c.get(name, 0) + n

    def log(self, event: str, **fields: Any) -> None:
        ev = {"event": event}
        ev.update(fields)
        self._e.events.append(ev)
