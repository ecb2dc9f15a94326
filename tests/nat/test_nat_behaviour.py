"""RFC 4787 mapping and filtering behaviours: the key and the admission rule on the enum."""

from __future__ import annotations

import json

from natpass.nat.behaviour import BEHAVIOURS, Behaviour
from natpass.nat.config import NatConfig

LAN, R1, R2 = bytes([192, 168, 1, 10]), bytes([198, 51, 100, 7]), bytes([198, 51, 100, 8])


def test_mapping_key_holds_what_the_behaviour_depends_on() -> None:
    keys = {b: {b.mapping_key(LAN, 5000, r, rp) for r in (R1, R2) for rp in (53, 80)}
            for b in BEHAVIOURS}
    assert len(keys[Behaviour.ENDPOINT_INDEPENDENT]) == 1  # REQ-1: one mapping for every remote
    assert len(keys[Behaviour.ADDRESS_DEPENDENT]) == 2  # one per remote address
    assert len(keys[Behaviour.ADDRESS_AND_PORT_DEPENDENT]) == 4  # one per remote endpoint
    assert Behaviour.ENDPOINT_INDEPENDENT.mapping_key(LAN, 5000, R1, 53) != \
        Behaviour.ENDPOINT_INDEPENDENT.mapping_key(LAN, 5001, R1, 53)


def test_filtering_admits() -> None:
    talked_to = {R1: 1}
    assert Behaviour.ENDPOINT_INDEPENDENT.admits(None, R2)
    assert Behaviour.ADDRESS_DEPENDENT.admits(talked_to, R1)
    assert not Behaviour.ADDRESS_DEPENDENT.admits(talked_to, R2)
    assert not Behaviour.ADDRESS_DEPENDENT.admits(None, R1)
    assert not Behaviour.ADDRESS_AND_PORT_DEPENDENT.admits(talked_to, R1)
    assert [b.needs_remotes for b in BEHAVIOURS] == [False, True, False]


def test_behaviours_keep_their_text_form() -> None:
    cfg = NatConfig(mapping=Behaviour("address-dependent"))
    assert cfg.mapping == "address-dependent"
    assert json.dumps({"m": cfg.mapping, "f": cfg.filtering}) == \
        '{"m": "address-dependent", "f": "address-and-port-dependent"}'
