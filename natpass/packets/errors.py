"""The one exception type for malformed or truncated packets."""


class PacketError(ValueError):
    """A packet is malformed or truncated.

    Every parser in :mod:`natpass.packets` raises this (never IndexError or struct.error),
    so callers can count the packet as a ``malformed`` drop.
    """
