"""Passthrough helpers (PPTP, IPsec, L2TP) plugged into the NAT engine through natpass.nat.helper.

``build_helpers(config)`` makes one helper per switch with its state from ``config.passthrough``;
``build_engine(config)`` is the engine with those helpers (what the router, replay and lab use).

Switches (``[passthrough]``, all off by default; ``Engine.set_switch`` flips one at run time, other
connections untouched; turning one off tears down its tunnels and returns how many):

=========  ===================================================  ====================================
switch     on                                                   off
=========  ===================================================  ====================================
pptp       TCP 1723 followed, Call IDs translated, GRE v1       GRE (IP 47) dropped
           mapped per call; GRE v0/other by address             ``passthrough-disabled:pptp``; TCP
                                                                1723 ordinary TCP (error 619)
ipsec      IKE keeps port 500, IKE routed by initiator SPI;     ESP (50) and AH (51) dropped
           raw ESP/AH mapped by SPI; AH forwarded, counted      ``passthrough-disabled:ipsec``;
                                                                UDP 500/4500 ordinary UDP
l2tp       UDP 1701 keeps port 1701, L2TPv2 tunnels/sessions    ordinary UDP
           tracked, LNS replies routed by Tunnel ID
=========  ===================================================  ====================================

``strict = true`` additionally closes the control port of a switched-off protocol, with
``strict-blocked:<name>``: TCP 1723 (pptp), UDP 500 (ipsec), UDP 1701 (l2tp). Never UDP 4500:
NAT-T carries ESP in UDP, crosses a NAT without any help and is what IKEv2 clients (and
L2TP/IPsec with NAT-T) use; strict is about closing what the router would otherwise half-help,
not about breaking VPNs that need no passthrough. So with every switch off and strict on, IKEv2
with NAT-T initiated on 4500, OpenVPN and WireGuard keep working; an IKE negotiation that starts
on 500 fails at once instead of ending with a dropped ESP.

L2TP/IPsec: its raw ESP belongs to the ipsec switch alone (the L2TP inside is encrypted); the
l2tp switch only concerns L2TP seen on UDP 1701. Details in :mod:`natpass.passthrough.l2tp`.
Multi-client rules are in each module's docstring: :mod:`~natpass.passthrough.pptp` (Call ID
translation), :mod:`~natpass.passthrough.ipsec` (IKE SPI routing, ESP SPI binding).
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
    helpers: list[Helper] = [PptpHelper(config.timeouts, config.limits),
                             IpsecHelper(config.timeouts, config.limits),
                             L2tpHelper(config.timeouts, config.limits)]
    for h in helpers:
        h.enabled = config.passthrough.get(h.name)
        h.strict = config.passthrough.strict
    return helpers


def build_engine(config: NatConfig) -> Engine:
    """The NAT engine with the passthrough helpers of ``config`` registered."""
    from natpass.nat.engine import Engine

    return Engine(config, helpers=build_helpers(config))
