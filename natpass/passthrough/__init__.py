"""Passthrough helpers (PPTP, IPsec, L2TP) plugged into the NAT engine through natpass.nat.helper.

``build_helpers(config)`` makes one helper per switch with its state from ``config.passthrough``;
``build_engine(config)`` is the engine with those helpers (what the router, replay and lab use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from natpass.nat.config import NatConfig
from natpass.nat.helper import Helper
from natpass.passthrough.ipsec import IpsecHelper
from natpass.passthrough.l2tp import L2tpHelper
from natpass.passthrough.pptp import PptpHelper

if TYPE_CHECKING:
    from natpass.nat.engine import Engine

__all__ = ["IpsecHelper", "L2tpHelper", "PptpHelper", "build_engine", "build_helpers"]


def build_helpers(config: NatConfig) -> list[Helper]:
    """One PPTP, IPsec and L2TP helper, switched and strict as ``config.passthrough`` says."""
    helpers: list[Helper] = [PptpHelper(config.timeouts), IpsecHelper(config.timeouts),
                             L2tpHelper(config.timeouts)]
    for h in helpers:
        h.enabled = config.passthrough.get(h.name)
        h.strict = config.passthrough.strict
    return helpers


def build_engine(config: NatConfig) -> Engine:
    """The NAT engine with the passthrough helpers of ``config`` registered."""
    from natpass.nat.engine import Engine

    return Engine(config, helpers=build_helpers(config))
