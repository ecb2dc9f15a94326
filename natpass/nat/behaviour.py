"""NAT mapping and filtering behaviours (RFC 4787 sections 4.1 and 5), with what each means.

One enum serves both settings, as the RFC names them alike: the mapping behaviour says what a
mapping is keyed by besides the LAN endpoint (:meth:`Behaviour.mapping_key`), the filtering
behaviour which inbound packets may use a mapping that no flow of theirs holds yet
(:meth:`Behaviour.admits`). The members are strings (``StrEnum``), so configs and JSON keep
their text form.
"""

from __future__ import annotations

from enum import StrEnum

from natpass.nat.ports import PORT_BYTES


class Behaviour(StrEnum):
    """Endpoint-independent, address-dependent, or address-and-port-dependent."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"

    def mapping_key(self, lan: bytes, lport: int, remote: bytes, rport: int) -> bytes:
        """As a mapping behaviour: the key of the mapping a LAN endpoint uses towards a remote
        endpoint (RFC 4787 REQ-1: the LAN endpoint alone when endpoint-independent)."""
        key = lan + PORT_BYTES[lport]
        if self is _EI:
            return key
        if self is _AD:
            return key + remote
        return key + remote + PORT_BYTES[rport]

    def admits(self, remotes: dict[bytes, int] | None, remote: bytes) -> bool:
        """As a filtering behaviour: may a packet from ``remote`` with no flow of its own open
        one through a dynamic mapping whose flows talk to ``remotes`` (RFC 4787 REQ-8)?"""
        if self is _EI:
            return True
        if self is _AD:
            return remotes is not None and remote in remotes
        return False  # address and port dependent: an admitted endpoint has a flow already

    @property
    def needs_remotes(self) -> bool:
        """As a filtering behaviour: mappings must track their flows' remote addresses."""
        return self is _AD


_EI = Behaviour.ENDPOINT_INDEPENDENT
_AD = Behaviour.ADDRESS_DEPENDENT
BEHAVIOURS: tuple[Behaviour, ...] = tuple(Behaviour)
