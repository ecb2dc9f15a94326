"""Connection state across restarts: save (periodically and on stop), restore on start, and what a
reload or restart changed.

Periodic saves fork: the child serialises a copy-on-write image of the engine and writes the
state file while the parent keeps forwarding (as Redis BGSAVE does), so the packet loop pauses
only for the ``fork()`` itself. The save on stop runs in the process (the loop has stopped).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

from natpass.nat import snapshot as S
from natpass.nat.config import NatConfig
from natpass.nat.engine import Engine
from natpass.router import statefile
from natpass.router.settings import config_facts, describe_changes

log = logging.getLogger("natpass.router")


def tunnel_names(engine: Engine) -> dict[str, str]:
    """Live tunnels by a stable key, for logging which ones a change tore down."""
    out: dict[str, str] = {}
    helpers: dict[str, dict[str, Any]] = engine.status()["helpers"]
    for info in helpers.values():
        for t in info["tunnels"]:
            desc = f"{t.get('proto')} {t.get('lan')}"
            if t.get("lan_port") is not None:
                desc += f":{t['lan_port']}"
            desc += f" <-> {t.get('remote')}"
            extra = t.get("lan_call_id", t.get("lan_tunnel_id", t.get("mode")))
            key = f"{desc} {extra}" if extra is not None else desc
            out[key] = key
    return out


class StateKeeper:
    """Saves and restores one router's connection state in ``state_dir``."""

    def __init__(self, state_dir: str, interval: float) -> None:
        self.state_dir = state_dir
        self.interval = float(interval)
        self._next = 0.0
        self._child: int | None = None
        self._key: bytes | None = None
        self.last_fork_pause = 0.0  # seconds the packet loop stood still for the last fork
        self.saves = 0

    def key(self) -> bytes:
        if self._key is None:
            self._key = statefile.state_key(self.state_dir)
        return self._key

    def content(self, engine: Engine, nat: NatConfig, now: float) -> dict[str, Any]:
        return {"saved_wall": time.time(), "engine": S.snapshot(engine, now),
                "config": config_facts(nat)}

    # ----- start ------------------------------------------------------------------------------
    def restore(self, engine: Engine, nat: NatConfig, now: float) -> S.RestoreReport | None:
        """Load the state file and put what is still valid into ``engine``; logs what happened.
        The file is removed afterwards: it describes the past run only."""
        try:
            loaded = statefile.load(self.state_dir)
        except FileNotFoundError:
            log.info("no saved connection state in %s: starting with empty tables", self.state_dir)
            return None
        except statefile.StateFileError as exc:
            log.warning("saved connection state ignored: %s", exc)
            statefile.discard(self.state_dir)
            return None
        elapsed = max(0.0, time.time() - loaded.saved_wall)
        saved_facts = loaded.config if all(isinstance(v, str) for v in loaded.config.values()) else {}
        changes = describe_changes(saved_facts, config_facts(nat)) if saved_facts else []
        if changes:
            log.info("config changed since the state was saved: %s", "; ".join(changes))
        try:
            rep = S.restore(engine, loaded.engine, now, elapsed)
        except ValueError as exc:
            log.warning("saved connection state ignored: %s", exc)
            statefile.discard(self.state_dir)
            return None
        log.info("connection state saved %.1f s ago: %s", elapsed, rep.summary())
        statefile.discard(self.state_dir)
        return rep

    # ----- saves ------------------------------------------------------------------------------
    def save_now(self, engine: Engine, nat: NatConfig, now: float) -> float:
        """Save in this process (on stop); returns the seconds it took."""
        t0 = time.perf_counter()
        self.reap(block=True)
        statefile.write(self.state_dir, self.content(engine, nat, now), self.key())
        self.saves += 1
        return time.perf_counter() - t0

    def tick(self, engine: Engine, nat: NatConfig, now: float) -> None:
        """Periodic save from the packet loop: a forked child writes the file."""
        self.reap(block=False)
        if self.interval <= 0 or now < self._next:
            return
        self._next = now + self.interval
        if self._child is not None:
            return  # the previous save still runs
        key = self.key()
        t0 = time.perf_counter()
        try:
            pid = os.fork()
        except OSError as exc:
            log.warning("connection state not saved: fork failed (%s)", exc)
            return
        if pid == 0:  # the child: no logging (another thread may hold its lock), no cleanup
            code = 0
            try:
                statefile.write(self.state_dir, self.content(engine, nat, now), key)
            except BaseException:
                code = 1
            os._exit(code)
        self.last_fork_pause = time.perf_counter() - t0
        self._child = pid

    def reap(self, block: bool) -> None:
        if self._child is None:
            return
        try:
            pid, status = os.waitpid(self._child, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self._child = None
            return
        if pid == 0:
            return
        self._child = None
        if os.waitstatus_to_exitcode(status) != 0:
            log.warning("saving the connection state failed in the background (exit status %d)",
                        os.waitstatus_to_exitcode(status))
        else:
            self.saves += 1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.reap(block=True)
