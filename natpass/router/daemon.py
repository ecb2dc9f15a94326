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
from typing import TYPE_CHECKING, Any

from natpass.nat.config import SWITCHES, NatConfig
from natpass.router.config import ConfigError, RouterConfig, load_config

if TYPE_CHECKING:
    from natpass.datapath.hybrid import Hybrid

log = logging.getLogger("natpass.router")

USAGE_REPORT_S = 10.0  # per-switch packet/drop totals handed to the usage recorder this often
MAX_USAGE_EVENTS = 10_000  # bound the queue when no recorder drains it


def default_engine_factory(nat: NatConfig, log_event: Callable[..., None]) -> Any:
    """The engine with the passthrough helpers (plain engine while those are not installed)."""
    try:
        from natpass.passthrough import build_engine
    except ImportError as exc:
        if "build_engine" not in str(exc):
            raise  # a broken helper module must stop the start, not silently drop passthrough
        from natpass.nat.engine import Engine

        log.warning("passthrough helpers not installed: the engine runs without them")
        engine = Engine(nat)
    else:
        engine = build_engine(nat)
    _hook_helper_log(engine, log_event)
    return engine


def _hook_helper_log(engine: Any, log_event: Callable[..., None]) -> None:
    """Route the helpers' ``ctx.log`` events to the daemon (the engine offers a listener list or
    an ``on_log`` attribute; anything else leaves the events in ``engine.events`` if it has one)."""
    for name in ("log_listeners", "listeners"):
        listeners = getattr(engine, name, None)
        if isinstance(listeners, list):
            listeners.append(log_event)
            return
    if hasattr(engine, "on_log"):
        with contextlib.suppress(AttributeError):
            engine.on_log = log_event


def _ip(addr: bytes | None) -> str | None:
    return str(ipaddress.IPv4Address(addr)) if addr else None


def _flow_dict(flow: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("proto", "lan_addr", "lan_port", "wan_addr", "wan_port", "remote_addr", "remote_port",
                "outbound"):
        value = getattr(flow, key, None)
        if isinstance(value, bytes | bytearray) and len(value) == 4:
            value = _ip(bytes(value))
        out[key] = value
    for key in ("state", "helper", "last_seen", "packets_out", "packets_in", "bytes_out", "bytes_in"):
        value = getattr(flow, key, None)
        if isinstance(value, int | float | str | bool):
            out[key] = value
    return out


def _hybrid_for(cfg: RouterConfig) -> Hybrid | None:
    """The hybrid datapath's plan for ``cfg`` (None in packet mode)."""
    if cfg.datapath != "hybrid":
        return None
    from natpass.datapath.hybrid import Hybrid, describe

    hybrid = Hybrid(cfg.lan_interface, cfg.wan_interface, cfg.lan_address, cfg.nat, cfg.hybrid_ports,
                    cfg.hybrid_natt)
    for line in describe(hybrid.own):
        log.info("%s", line)
    return hybrid


class RouterDaemon:
    """One natpass router instance in the current network namespace."""

    def __init__(self, config_path: str, engine_factory: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.monotonic, datapath: str | None = None) -> None:
        self.config_path = config_path
        self.datapath_override = datapath  # natpass run --datapath: wins over [router] datapath
        self.config: RouterConfig = self._load(config_path)
        self.clock = clock
        self.engine_factory = engine_factory or default_engine_factory
        self.started_wall = time.time()
        self.started = clock()
        self._events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self._usage_totals: dict[tuple[str, str, str], int] = {}
        self._next_usage = 0.0
        self.engine: Any = None
        self.datapath: Any = None
        self.setup: Any = None
        self.hybrid: Hybrid | None = None  # datapath = "hybrid": the split and the kernel's share
        self.owned: Any = None  # the engine as the hybrid datapath's sockets see it
        self.admin: Any = None
        self.recorder: Any = None
        self._stopped = threading.Event()
        self._reload_requested = False

    def _load(self, path: str) -> RouterConfig:
        cfg = load_config(path)
        if self.datapath_override is not None:
            cfg = dataclasses.replace(cfg, datapath=self.datapath_override)
        return cfg

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Set up the namespace and the sockets (undone by :meth:`close`)."""
        from natpass.datapath.live import LiveDatapath
        from natpass.datapath.live_setup import HostSetup

        cfg = self.config
        if cfg.datapath not in ("packet", "hybrid"):
            raise ConfigError(cfg.path, 0, f'datapath "{cfg.datapath}" is not available in this build; '
                              'use datapath = "packet" or "hybrid"')
        self.hybrid = _hybrid_for(cfg)
        self.engine = self.engine_factory(self._nat_config(cfg), self._helper_event)
        self.setup = HostSetup(cfg.state_dir, cfg.wan_interface, cfg.lan_interface, cfg.lan_address,
                               share=self.hybrid.kernel_share() if self.hybrid else None)
        self.setup.apply()
        for what in getattr(self.setup, "recover_done", []):
            log.warning("cleaned up after a previous run: %s", what)
        from natpass.datapath.packetsock import mtu

        try:
            self.owned = self.hybrid.wrap(self.engine, min(mtu(cfg.lan_interface), mtu(cfg.wan_interface))) \
                if self.hybrid else self.engine
            self.datapath = LiveDatapath(self.owned, cfg.lan_interface, cfg.wan_interface,
                                         cfg.lan_address, cfg.wan_gateway, cfg.wan_addresses,
                                         clock=self.clock,
                                         rx_programs=self.hybrid.rx_programs() if self.hybrid else None)
            self.datapath.periodic.append(self._usage_tick)

            if cfg.nat.wan_mtu > mtu(cfg.wan_interface):
                log.warning("[wan] mtu = %d is larger than %s's MTU %d: larger packets will be lost",
                            cfg.nat.wan_mtu, cfg.wan_interface, mtu(cfg.wan_interface))
        except BaseException:
            self.setup.undo()
            raise
        for name in SWITCHES:
            self._push({"event": "switch", "switch": name, "on": cfg.nat.passthrough.get(name)})
        self._start_side_services()
        log.info("natpass running: LAN %s (%s), WAN %s (%s), config %s", cfg.lan_interface,
                 _ip(self.datapath.lan_address), cfg.wan_interface,
                 ", ".join(filter(None, (_ip(a) for a in cfg.wan_addresses))), cfg.path)

    def _nat_config(self, cfg: RouterConfig) -> NatConfig:
        """The engine's config, with the router's LAN address as the source of its ICMP errors."""
        nat = cfg.nat
        if self.hybrid is not None:
            nat = self.hybrid.engine_config(nat)
        if getattr(nat, "router_lan_address", "absent") is None:
            lan = cfg.lan_address
            if lan is None:
                from natpass.datapath.packetsock import ipv4_address

                lan = ipv4_address(cfg.lan_interface)
            if lan is not None:
                nat = dataclasses.replace(nat, router_lan_address=lan)
        return nat

    def _start_side_services(self) -> None:
        cfg = self.config
        try:
            from natpass.router import admin as admin_module
        except ImportError:
            admin_module = None  # type: ignore[assignment]  # not built: the router runs without it
        if admin_module is not None:
            try:
                self.admin = admin_module.AdminServer(self, cfg.admin_socket, cfg.admin_http)
                start = getattr(self.admin, "start", None)
                if callable(start):
                    start()
            except Exception:
                log.exception("admin server failed to start (the router keeps running)")
                self.admin = None
        try:
            from natpass.router.usage import UsageRecorder, default_path
        except ImportError:
            return
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

    def close(self) -> None:
        """Undo everything :meth:`start` did (idempotent)."""
        if self.admin is not None:
            with contextlib.suppress(Exception):
                self.admin.stop()
            self.admin = None
        if self.recorder is not None:
            with contextlib.suppress(Exception):
                self.recorder.close()
            self.recorder = None
        if self.datapath is not None:
            log.info("datapath counters: %s", self.datapath.counters())
            self.datapath.close()
        if self.setup is not None:
            for what in self.setup.undo():
                log.info("removed: %s", what)
            self.setup = None

    # ----- the admin interface (any thread) --------------------------------------------------------
    def _on_loop(self, fn: Callable[[], Any]) -> Any:
        if self.datapath is None:
            return fn()
        return self.datapath.call(fn)

    def status(self) -> dict[str, Any]:
        cfg = self.config

        def collect() -> dict[str, Any]:
            st = dict(self.engine.status()) if self.engine is not None else {}
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
            if self.hybrid is not None:
                st["hybrid"] = self.hybrid.status(self.owned)
            return st

        return self._on_loop(collect)  # type: ignore[no-any-return]

    def flows(self, limit: int = 200) -> list[dict[str, Any]]:
        def collect() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for flow in self.engine.flows():
                if len(out) >= limit:
                    break
                out.append(_flow_dict(flow))
            return out

        return self._on_loop(collect)  # type: ignore[no-any-return]

    def set_switch(self, name: str, on: bool) -> int:
        if name not in SWITCHES:
            raise ValueError(f"unknown passthrough switch {name!r} (known: {', '.join(SWITCHES)})")

        def apply() -> int:
            torn = int(self.engine.set_switch(name, bool(on), self.clock()))
            self._push({"event": "switch", "switch": name, "on": bool(on)})
            log.info("passthrough %s switched %s (%d tunnels torn down)", name, "on" if on else "off", torn)
            return torn

        return self._on_loop(apply)  # type: ignore[no-any-return]

    def reload(self, path: str | None = None) -> None:
        """Load ``path`` (default: the running config's file) and apply it atomically.

        Raises ConfigError and keeps the running config when the file is invalid or changes what
        only a restart can change (interfaces, datapath, LAN address, state dir).
        """
        path = path or self.config_path
        new = self._load(path)  # raises ConfigError: nothing applied
        old = self.config
        for attr in ("lan_interface", "wan_interface", "datapath", "lan_address", "state_dir",
                     "hybrid_ports", "hybrid_natt"):
            if getattr(new, attr) != getattr(old, attr):
                raise ConfigError(new.path, 0, f"changing {attr.replace('_', ' ')} needs a restart "
                                  "(running config kept)")

        if self.hybrid is not None:
            hybrid = self.hybrid.reconfigured(new.nat)
            if hybrid.kernel_share() != self.hybrid.kernel_share():
                raise ConfigError(new.path, 0, "with datapath = \"hybrid\", changing timeouts or port "
                                  "forwards changes the kernel's rules and needs a restart (running "
                                  "config kept)")
            self.hybrid = hybrid

        def apply() -> None:
            self.engine.reconfigure(self._nat_config(new), self.clock())
            if self.datapath is not None:
                self.datapath.wan.gateway = new.wan_gateway
                self.datapath.wan.by_dst.clear()
                self.datapath.set_wan_addresses(new.wan_addresses)
            self.config = new
            self.config_path = path
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

    def _helper_event(self, event: str, **fields: Any) -> None:
        """A helper's ``ctx.log``: tunnel up/down and other notable events, for the usage record."""
        switch = (fields.pop("switch", None) or fields.pop("proto", None) or fields.pop("helper", None)
              or event.split(":")[0])
        detail = fields.pop("detail", None)
        if detail is None and fields:
            detail = " ".join(f"{k}={v}" for k, v in fields.items())
        self._push({"event": event, "switch": switch, "detail": detail})

    def _usage_tick(self, now: float) -> None:
        """Every USAGE_REPORT_S: per-switch packet and drop totals (the recorder makes deltas)."""
        if now < self._next_usage:
            return
        self._next_usage = now + USAGE_REPORT_S
        engine = self.engine
        drain = getattr(engine, "drain_events", None)
        if callable(drain):
            for ev in drain():
                fields = dict(ev)
                self._helper_event(str(fields.pop("event", "event")), **fields)
        drops = getattr(engine, "drops", {}) or {}
        for reason, total in list(drops.items()):
            if ":" in reason:
                switch = reason.rsplit(":", 1)[1]
                if switch in SWITCHES:
                    self._push({"event": "drop", "switch": switch, "reason": reason, "total": int(total)})
        kernel = self.hybrid.usage_event(now) if self.hybrid is not None else None
        if kernel is not None:
            self._push(kernel)
        helpers = getattr(engine, "helpers", None) or getattr(engine, "_helpers", None) or []
        for helper in helpers:
            name = getattr(helper, "name", "")
            if name not in SWITCHES:
                continue
            try:
                stats = helper.stats()
            except Exception:
                continue
            packets = sum(int(v) for k, v in stats.items() if "packets" in k and isinstance(v, int))
            self._push({"event": "packets", "switch": name, "total": packets})
