"""The running router: config, engine, live datapath, signals, admin server and usage recorder.

:class:`RouterDaemon` is what ``natpass run`` drives and what the admin side calls from its own
threads. Every call that touches the engine runs on the packet loop between two batches
(:meth:`LiveDatapath.call`), so the engine itself needs no locks and the packet path takes none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from natpass.datapath.live import LiveDatapath
from natpass.datapath.live_setup import HostSetup
from natpass.datapath.nslock import NamespaceLock
from natpass.datapath.packetsock import ipv4_address, mtu
from natpass.nat.config import SWITCHES, NatConfig
from natpass.nat.engine import Engine
from natpass.nat.helper import FlowView
from natpass.passthrough import build_engine
from natpass.router.admin import AdminServer
from natpass.router.config import ConfigError, RouterConfig, load_config
from natpass.router.restart import StateKeeper, config_changes, config_summary, tunnel_names
from natpass.router.usage import UsageRecorder, default_path

log = logging.getLogger("natpass.router")

USAGE_REPORT_S = 10.0  # per-switch packet/drop totals handed to the usage recorder this often
MAX_USAGE_EVENTS = 10_000  # bound the queue when no recorder drains it

EngineFactory = Callable[[NatConfig], Engine]
_T = TypeVar("_T")


def _ip(addr: bytes | None) -> str | None:
    return str(ipaddress.IPv4Address(addr)) if addr else None


def flow_dict(flow: FlowView, now: float, wall_now: float) -> dict[str, Any]:
    """One row of ``/api/flows`` (docs/ADMIN.md): every field, always.

    ``now`` is the engine's clock and ``wall_now`` the wall clock at the same instant, so the
    flow's last use (engine time) becomes a Unix time."""
    idle = max(0.0, now - flow.last)
    return {
        "proto": flow.proto,
        "lan_addr": _ip(flow.lan_addr),
        "lan_port": flow.lan_port,
        "wan_addr": _ip(flow.wan_addr),
        "wan_port": flow.wan_port,
        "remote_addr": _ip(flow.remote_addr),
        "remote_port": flow.remote_port,
        "outbound": flow.outbound,
        "last_seen": round(wall_now - idle, 3),
        "idle_s": round(idle, 3),
    }


class RouterDaemon:
    """One natpass router instance in the current network namespace.

    Offers the admin server what :class:`natpass.router.admin.RouterControl` names."""

    def __init__(self, config_path: str, engine_factory: EngineFactory = build_engine,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config_path = config_path
        self.config: RouterConfig = load_config(config_path)
        self.clock = clock
        self.engine_factory = engine_factory
        self.started_wall = time.time()
        self.started = clock()
        self._events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self._next_usage = 0.0
        self.engine: Engine | None = None
        self.datapath: LiveDatapath | None = None
        self.setup: HostSetup | None = None
        self.admin: AdminServer | None = None
        self.recorder: UsageRecorder | None = None
        self._stopped = threading.Event()
        self._reload_requested = False
        self.nslock: NamespaceLock | None = None
        self.keeper: StateKeeper | None = None

    @property
    def state_dir(self) -> str:
        return self.config.state_dir

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Set up the namespace and the sockets (undone by :meth:`close`)."""
        cfg = self.config
        # one router per network namespace: checked before anything of the running one is touched
        lock = NamespaceLock()
        lock.acquire()
        self.nslock = lock
        engine = self.engine = self.engine_factory(self._nat_config(cfg))
        setup = self.setup = HostSetup(cfg.state_dir, cfg.wan_interface, cfg.lan_interface, cfg.lan_address)
        setup.apply()
        for what in setup.recover_done:
            log.warning("cleaned up after a previous run: %s", what)
        try:
            self.datapath = LiveDatapath(engine, cfg.lan_interface, cfg.wan_interface,
                                         cfg.lan_address, cfg.wan_gateway, cfg.wan_addresses,
                                         clock=self.clock)
            self.datapath.periodic.append(self._usage_tick)
            wan_mtu = mtu(cfg.wan_interface)
            if cfg.nat.wan_mtu > wan_mtu:
                log.warning("[wan] mtu = %d is larger than %s's MTU %d: larger packets will be lost",
                            cfg.nat.wan_mtu, cfg.wan_interface, wan_mtu)
        except BaseException:
            setup.undo()
            raise
        self.keeper = StateKeeper(cfg.state_dir, cfg.state_save_interval)
        self.keeper.restore(engine, engine.config, self.clock())
        self.datapath.periodic.append(self._save_tick)
        for name in SWITCHES:
            self._push({"event": "switch", "switch": name, "on": cfg.nat.passthrough.get(name)})
        self._start_side_services()
        log.info("natpass running: LAN %s (%s), WAN %s (%s), config %s", cfg.lan_interface,
                 _ip(self.datapath.lan_address), cfg.wan_interface,
                 ", ".join(filter(None, (_ip(a) for a in cfg.wan_addresses))), cfg.path)

    def _nat_config(self, cfg: RouterConfig) -> NatConfig:
        """The engine's config, with the router's LAN address as the source of its ICMP errors."""
        nat = cfg.nat
        if nat.router_lan_address is None:
            lan = cfg.lan_address or ipv4_address(cfg.lan_interface)
            if lan is not None:
                nat = dataclasses.replace(nat, router_lan_address=lan)
        return nat

    def _start_side_services(self) -> None:
        """The admin server and the usage recorder: a failure is logged, the router keeps running."""
        cfg = self.config
        try:
            self.admin = AdminServer(self, cfg.admin_socket, cfg.admin_http).start()
        except Exception:
            log.exception("admin server failed to start (the router keeps running)")
            self.admin = None
        try:
            self.recorder = UsageRecorder(default_path(cfg.state_dir), self.usage_events).start()
        except Exception:
            log.exception("usage recorder failed to start (the router keeps running)")
            self.recorder = None

    def install_signals(self) -> None:
        """SIGHUP reloads, SIGTERM/SIGINT stop (handlers only set flags: work runs on the loop)."""
        signal.signal(signal.SIGHUP, lambda *_: self._request_reload())
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())

    def _request_reload(self) -> None:
        self._reload_requested = True
        if self.datapath is not None:
            self.datapath.wake()

    def run(self) -> None:
        """The packet loop (blocks until :meth:`stop`); SIGHUP reloads from the loop itself."""
        if self._stopped.is_set():
            return
        if self.datapath is None:
            raise RuntimeError("RouterDaemon.run() before start()")
        self.datapath.periodic.append(self._maybe_reload)
        self.datapath.run()

    def _maybe_reload(self, now: float) -> None:
        if not self._reload_requested:
            return
        self._reload_requested = False
        try:
            self.reload()
        except ConfigError as exc:
            log.error("reload refused, running config kept: %s", exc)

    def stop(self) -> None:
        self._stopped.set()
        if self.datapath is not None:
            self.datapath.stop()

    def _save_tick(self, now: float) -> None:
        if self.keeper is not None:
            self.keeper.tick(self._engine(), self._engine().config, now)

    def save_state(self) -> None:
        """Save the connection state now (on stop: the packet loop no longer runs)."""
        if self.keeper is None or self.engine is None:
            return
        took = self.keeper.save_now(self.engine, self.engine.config, self.clock())
        log.info("connection state saved: %d flows in %.3f s", len(self.engine.table), took)

    def close(self, keep_guard: bool = False) -> None:
        """Undo everything :meth:`start` did (idempotent). ``keep_guard``: save the connection
        state and leave the kernel-side guard for the next start (a restart)."""
        if self.admin is not None:
            with contextlib.suppress(Exception):
                self.admin.stop()
            self.admin = None
        if self.recorder is not None:
            with contextlib.suppress(Exception):
                self.recorder.close()
            self.recorder = None
        if self.keeper is not None:
            try:
                self.save_state()
            except Exception:
                log.exception("connection state not saved")
            self.keeper.close()
            self.keeper = None
        if self.datapath is not None:
            log.info("datapath counters: %s", self.datapath.counters())
            self.datapath.close()
        if self.setup is not None:
            for what in self.setup.undo(keep_guard=keep_guard):
                log.info("removed: %s", what)
            if keep_guard:
                log.info("kept for the next start: nft table inet natpass, ip_forward=0 "
                         "(`natpass cleanup` removes them)")
            self.setup = None
        if self.nslock is not None:
            self.nslock.release()
            self.nslock = None

    # ----- the admin interface (any thread) --------------------------------------------------------
    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("the router has not started")
        return self.engine

    def _on_loop(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the packet loop (directly when the loop does not run)."""
        if self.datapath is None:
            return fn()
        result: _T = self.datapath.call(fn)
        return result

    def status(self) -> dict[str, Any]:
        cfg = self.config

        def collect() -> dict[str, Any]:
            st = dict(self._engine().status())
            dp = self.datapath
            st.update({
                "uptime": round(self.clock() - self.started, 3),
                "started": self.started_wall,
                "config_path": cfg.path,
                "datapath": cfg.datapath,
                "interfaces": {
                    "lan": {"name": cfg.lan_interface,
                            "address": _ip(dp.lan_address) if dp else _ip(cfg.lan_address)},
                    "wan": {"name": cfg.wan_interface,
                            "addresses": [_ip(a) for a in cfg.wan_addresses],
                            "gateway": _ip(cfg.wan_gateway)},
                },
                "datapath_counters": dp.counters() if dp else {},
            })
            return st

        return self._on_loop(collect)

    def flows(self, limit: int = 200) -> list[dict[str, Any]]:
        def collect() -> list[dict[str, Any]]:
            now, wall_now = self.clock(), time.time()
            out: list[dict[str, Any]] = []
            for flow in self._engine().flows():
                if len(out) >= limit:
                    break
                out.append(flow_dict(flow, now, wall_now))
            return out

        return self._on_loop(collect)

    def set_switch(self, name: str, on: bool) -> int:
        if name not in SWITCHES:
            raise ValueError(f"unknown passthrough switch {name!r} (known: {', '.join(SWITCHES)})")

        def apply() -> int:
            torn = self._engine().set_switch(name, on, self.clock())
            self._push({"event": "switch", "switch": name, "on": on})
            log.info("passthrough %s switched %s (%d tunnels torn down)", name, "on" if on else "off", torn)
            return torn

        return self._on_loop(apply)

    def reload(self, path: str | None = None) -> None:
        """Load ``path`` (default: the running config's file) and apply it atomically.

        Raises ConfigError and keeps the running config when the file is invalid or changes what
        only a restart can change (interfaces, datapath, LAN address, state dir).
        """
        path = path or self.config_path
        new = load_config(path)  # raises ConfigError: nothing applied
        old = self.config
        for what, before, after in (("LAN interface", old.lan_interface, new.lan_interface),
                                    ("WAN interface", old.wan_interface, new.wan_interface),
                                    ("datapath", old.datapath, new.datapath),
                                    ("LAN address", old.lan_address, new.lan_address),
                                    ("state dir", old.state_dir, new.state_dir)):
            if before != after:
                raise ConfigError(new.path, 0, f"changing {what} needs a restart (running config kept)")

        def apply() -> None:
            before = tunnel_names(self._engine())
            self._engine().reconfigure(self._nat_config(new), self.clock())
            torn = sorted(set(before) - set(tunnel_names(self._engine())))
            changes = config_changes(config_summary(old.nat), config_summary(new.nat))
            log.info("reload changes: %s", "; ".join(changes) if changes else "none")
            if torn:
                log.info("reload tore down %d tunnels: %s", len(torn), "; ".join(torn))
            if self.datapath is not None:
                self.datapath.wan.gateway = new.wan_gateway
                self.datapath.wan.by_dst.clear()
                self.datapath.set_wan_addresses(new.wan_addresses)
            self.config = new
            self.config_path = path
            if self.keeper is not None:
                self.keeper.interval = float(new.state_save_interval)
            for name in SWITCHES:
                self._push({"event": "switch", "switch": name, "on": new.nat.passthrough.get(name)})

        self._on_loop(apply)
        log.info("config reloaded from %s", path)

    def usage_events(self) -> list[dict[str, Any]]:
        with self._events_lock:
            events, self._events = self._events, []
        return events

    # ----- usage events ------------------------------------------------------------------------
    def _push(self, event: dict[str, Any]) -> None:
        event.setdefault("ts", time.time())
        with self._events_lock:
            if len(self._events) < MAX_USAGE_EVENTS:
                self._events.append(event)

    def _helper_event(self, event: str, fields: dict[str, Any]) -> None:
        """A helper's ``ctx.log``: tunnel up/down and other notable events, for the usage record."""
        switch = (fields.pop("switch", None) or fields.pop("proto", None) or fields.pop("helper", None)
                  or event.split(":")[0])
        detail = fields.pop("detail", None)
        if detail is None and fields:
            detail = " ".join(f"{k}={v}" for k, v in fields.items())
        self._push({"event": event, "switch": switch, "detail": detail})

    def _usage_tick(self, now: float) -> None:
        """Every USAGE_REPORT_S: helper events, per-switch packet and drop totals (the recorder
        makes deltas)."""
        if now < self._next_usage:
            return
        self._next_usage = now + USAGE_REPORT_S
        engine = self._engine()
        for ev in engine.drain_events():
            fields = dict(ev)
            self._helper_event(str(fields.pop("event", "event")), fields)
        for reason, total in list(engine.drops.items()):
            if ":" in reason:
                switch = reason.rsplit(":", 1)[1]
                if switch in SWITCHES:
                    self._push({"event": "drop", "switch": switch, "reason": reason, "total": total})
        helpers: dict[str, dict[str, Any]] = engine.status()["helpers"]
        for name, info in helpers.items():
            if name not in SWITCHES:
                continue
            stats: dict[str, int] = info["stats"]
            packets = sum(v for k, v in stats.items() if "packets" in k)
            self._push({"event": "packets", "switch": name, "total": packets})
