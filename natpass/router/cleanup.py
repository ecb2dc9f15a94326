"""``natpass cleanup``: remove what a stopped router kept for its next start.

``natpass run`` stops leaving its kernel-side guard in place (the nft table that keeps the kernel
from answering for the WAN address, ``ip_forward=0``) and its saved connection state, so that a
restart loses nothing. When natpass is really taken out of service, this removes both and puts
back the values from before natpass. It refuses while a router runs in the namespace.
"""

from __future__ import annotations

from natpass.datapath.live_setup import HostSetup
from natpass.datapath.nslock import NamespaceLock
from natpass.router import statefile
from natpass.router.config import RouterConfig


def cleanup(cfg: RouterConfig, keep_state: bool = False) -> list[str]:
    """Undo a kept set-up of ``cfg``'s namespace and state dir; returns what was removed.
    Raises SetupError (NamespaceBusy) when a router runs here."""
    lock = NamespaceLock()
    lock.acquire()
    try:
        setup = HostSetup(cfg.state_dir, cfg.wan_interface, cfg.lan_interface, cfg.lan_address)
        done = setup.recover(adopt=False)
        if not keep_state:
            try:
                statefile.load(cfg.state_dir)
                done.append("saved connection state")
            except (FileNotFoundError, statefile.StateFileError):
                pass
            statefile.discard(cfg.state_dir)
        return done
    finally:
        lock.release()
