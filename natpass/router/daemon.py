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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from natpass.datapath.hybrid import Hybrid, OwnedEngine, describe
from natpass.datapath.live import LiveDatapath
from natpass.datapath.live_setup import HostSetup, SetupError
from natpass.datapath.nslock import NamespaceLock
from natpass.datapath.packetsock import ipv4_address, mtu
from natpass.nat.config import SWITCHES, NatConfig, PortForward
from natpass.nat.engine import Engine
from natpass.nat.helper import FlowView
from natpass.passthrough import build_engine
from natpass.router.admin import AdminServer
from natpass.router.config import ConfigError, RouterConfig, load_config
from natpass.router.forwards import (
    ForwardError,
    ForwardResult,
    ForwardSpec,
    checked,
    forward_specs,
    holder,
    with_comments,
)
from natpass.router.restart import StateKeeper, tunnel_names
from natpass.router.settings import (
    Checked,
    ConfigChange,
    ConfigHistory,
    SwitchResult,
    add_forward_text,
    exposure_of,
    read_checked,
    remove_forward_text,
    set_switches_text,
    summarize,
    with_header,
    write_atomic,
)
from natpass.router.usage import UsageRecorder, default_path

log = logging.getLogger("natpass.router")

USAGE_REPORT_S = 10.0  # per-switch packet/drop totals handed to the usage recorder this often
MAX_USAGE_EVENTS = 10_000  # bound the queue when no recorder drains it

EngineFactory = Callable[[NatConfig], Engine]


class Service(Protocol):
    """Something started beside the router and stopped with it (the web admin)."""

    def stop(self) -> None: ...


# Starts a service for the running router, or returns None (a failure is logged, never raised).
ServiceFactory = Callable[["RouterDaemon"], Service | None]
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


def _hybrid_for(cfg: RouterConfig) -> Hybrid | None:
    """The hybrid datapath's plan for ``cfg`` (None in packet mode)."""
    if cfg.datapath != "hybrid":
        return None
    hybrid = Hybrid(cfg.lan_interface, cfg.wan_interface, cfg.lan_address, cfg.nat, cfg.hybrid_ports,
                    cfg.hybrid_natt)
    for line in describe(hybrid.own):
        log.info("%s", line)
    return hybrid


class RouterDaemon:
    """One natpass router instance in the current network namespace.

    Offers the admin server what :class:`natpass.router.admin.RouterControl` names."""

    def __init__(self, config_path: str, engine_factory: EngineFactory = build_engine,
                 clock: Callable[[], float] = time.monotonic,
                 services: Sequence[ServiceFactory] = (), datapath: str | None = None) -> None:
        self.config_path = config_path
        self.datapath_override = datapath  # natpass run --datapath: wins over [router] datapath
        self.config: RouterConfig = self._load(config_path)
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
        self.hybrid: Hybrid | None = None  # datapath = "hybrid": what the kernel does, what natpass owns
        self.owned: OwnedEngine | None = None  # the engine as the hybrid datapath's sockets see it
        self.admin: AdminServer | None = None
        self.service_factories = tuple(services)
        self.services: list[Service] = []
        self.recorder: UsageRecorder | None = None
        self._stopped = threading.Event()
        self._reload_requested = False
        # One writer of the config file and its history at a time (admin threads, the loop's SIGHUP).
        self._config_lock = threading.RLock()
        self.nslock: NamespaceLock | None = None
        self.keeper: StateKeeper | None = None
        self.history = ConfigHistory(self.config.state_dir)

    @property
    def state_dir(self) -> str:
        return self.config.state_dir

    def _load(self, path: str) -> RouterConfig:
        cfg = load_config(path)
        if self.datapath_override is not None:
            cfg = dataclasses.replace(cfg, datapath=self.datapath_override)
        return cfg

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Set up the namespace and the sockets (undone by :meth:`close`)."""
        cfg = self.config
        # one router per network namespace: checked before anything of the running one is touched
        lock = NamespaceLock()
        lock.acquire()
        self.nslock = lock
        hybrid = self.hybrid = _hybrid_for(cfg)
        engine = self.engine = self.engine_factory(self._nat_config(cfg))
        setup = self.setup = HostSetup(cfg.state_dir, cfg.wan_interface, cfg.lan_interface, cfg.lan_address,
                                       share=hybrid.kernel_share() if hybrid else None)
        setup.apply()
        for what in setup.recover_done:
            log.warning("cleaned up after a previous run: %s", what)
        try:
            if hybrid is not None:
                self.owned = hybrid.wrap(engine, min(mtu(cfg.lan_interface), mtu(cfg.wan_interface)))
            self.datapath = LiveDatapath(self.owned or engine, cfg.lan_interface, cfg.wan_interface,
                                         cfg.lan_address, cfg.wan_gateway, cfg.wan_addresses,
                                         clock=self.clock,
                                         rx_programs=hybrid.rx_programs() if hybrid else None)
            self.datapath.periodic.append(self._usage_tick)
            wan_mtu = mtu(cfg.wan_interface)
            if cfg.nat.wan_mtu > wan_mtu:
                log.warning("[wan] mtu = %d is larger than %s's MTU %d: larger packets will be lost",
                            cfg.nat.wan_mtu, cfg.wan_interface, wan_mtu)
        except BaseException:
            setup.undo(keep_guard=setup.restarting)  # a failed restart keeps the adopted guard
            raise
        self.keeper = StateKeeper(cfg.state_dir, cfg.state_save_interval)
        self.keeper.restore(engine, engine.config, self.clock())
        self.datapath.periodic.append(self._save_tick)
        for name in SWITCHES:
            self._push({"event": "switch", "switch": name, "on": cfg.nat.passthrough.get(name)})
        self._record_version("start")
        self._start_side_services()
        log.info("natpass running: LAN %s (%s), WAN %s (%s), config %s", cfg.lan_interface,
                 _ip(self.datapath.lan_address), cfg.wan_interface,
                 ", ".join(filter(None, (_ip(a) for a in cfg.wan_addresses))), cfg.path)

    def _nat_config(self, cfg: RouterConfig) -> NatConfig:
        """The engine's config, with the router's LAN address as the source of its ICMP errors."""
        nat = cfg.nat
        if self.hybrid is not None:
            nat = self.hybrid.engine_config(nat)
        if nat.router_lan_address is None:
            lan = cfg.lan_address or ipv4_address(cfg.lan_interface)
            if lan is not None:
                nat = dataclasses.replace(nat, router_lan_address=lan)
        return nat

    def _start_side_services(self) -> None:
        """The admin server and the usage recorder: a failure is logged, the router keeps running."""
        cfg = self.config
        try:
            # The Unix socket only: HTTP is the web admin's (natpass.web: login, sessions, TLS),
            # started as a service by `natpass run`.
            self.admin = AdminServer(self, cfg.admin_socket).start()
        except Exception:
            log.exception("admin server failed to start (the router keeps running)")
            self.admin = None
        for factory in self.service_factories:
            service = factory(self)  # never raises: a failure is logged, the Unix socket stays
            if service is not None:
                self.services.append(service)
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
        state and leave the kernel-side set-up for the next start (a restart)."""
        while self.services:
            with contextlib.suppress(Exception):
                self.services.pop().stop()
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
                log.info("kept for the next start: nft table inet natpass and its sysctls "
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
            if self.hybrid is not None:
                st["hybrid"] = self.hybrid.status(self.owned)
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
        """Flip a switch and save it in the config file; returns the tunnels torn down."""
        return self.change_switch(name, on).torn_down

    def change_switch(self, name: str, on: bool, *, runtime_only: bool = False,
                      who: str = "api") -> SwitchResult:
        """Flip a passthrough switch now and, unless ``runtime_only``, write it into the config
        file (comments kept) and the history, so a reload or restart keeps it.

        A file that cannot be written or no longer validates leaves the switch flipped but not
        saved, and says why (``save_error``)."""
        if name not in SWITCHES:
            raise ValueError(f"unknown passthrough switch {name!r} (known: {', '.join(SWITCHES)})")

        def apply() -> int:
            torn = self._engine().set_switch(name, on, self.clock())
            self._push({"event": "switch", "switch": name, "on": on})
            return torn

        with self._config_lock:
            torn = self._on_loop(apply)
            pt = dataclasses.replace(self.config.nat.passthrough, **{name: on})
            self.config = dataclasses.replace(self.config, nat=dataclasses.replace(self.config.nat, passthrough=pt))
            saved, error = False, None
            if not runtime_only:
                try:
                    self._save_switch(name, on, who)
                    saved = True
                except (ConfigError, OSError) as exc:
                    error = str(exc)
        state = "on" if on else "off"
        if saved:
            log.info("passthrough %s switched %s by %s (%d tunnels torn down); saved in %s", name, state,
                     who, torn, self.config_path)
        elif runtime_only:
            log.info("passthrough %s switched %s by %s (%d tunnels torn down); runtime only: a reload "
                     "or restart applies the config file's value again", name, state, who, torn)
        else:
            log.error("passthrough %s switched %s by %s (%d tunnels torn down) but NOT saved: %s", name,
                      state, who, torn, error)
        return SwitchResult(name, on, torn, saved, error, exposure_of(name, on))

    def _save_switch(self, name: str, on: bool, who: str) -> None:
        path = Path(self.config_path)
        text = path.read_text(encoding="utf-8")
        new = set_switches_text(text, {name: on}, str(path))  # validated whole
        write_atomic(path, new)
        self._record(new, who, f"{name} {'on' if on else 'off'}")

    def _record(self, text: str, who: str, summary: str) -> int | None:
        """Keep ``text`` in the config history; a history that cannot be written is logged."""
        try:
            kept = self.history.record(text, who=who, summary=summary, source=self.config_path)
        except OSError as exc:
            log.error("config history in %s not written: %s", self.history.dir, exc)
            return None
        if kept is not None:
            return kept.number
        newest = self.history.newest()  # the text was the newest version already
        return None if newest is None else newest[0]

    def _record_version(self, who: str) -> None:
        """Keep the running file in the history (a hand edit made while natpass was stopped is
        summarised against the newest kept version)."""
        with self._config_lock:
            try:
                text = Path(self.config_path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                log.error("config history: cannot read %s: %s", self.config_path, exc)
                return
            newest = self.history.newest()  # read and validated once
            if newest is not None and newest[1].body == text:
                return
            self._record(text, who, summarize(None if newest is None else newest[1].config, self.config))

    def reload(self, path: str | None = None, who: str = "reload") -> ConfigChange:
        """Load ``path`` (default: the running config's file) and apply it atomically.

        Raises ConfigError and keeps the running config when the file is invalid or changes what
        only a restart can change (interfaces, datapath, LAN address, state dir).
        """
        path = path or self.config_path
        with self._config_lock:
            new = self._load(path)  # raises ConfigError: nothing applied
            change = self._apply(new, Path(path).read_text(encoding="utf-8"), who)
            self.config_path = path
        return change

    def _apply(self, new: RouterConfig, text: str, who: str) -> ConfigChange:
        """Apply a validated config on the loop, keep it in the history and log what changed."""
        old = self.config
        self._check_restart_fields(new)
        hybrid = self.hybrid.reconfigured(new.nat) if self.hybrid is not None else None
        summary = summarize(old, new)

        def apply() -> dict[str, int]:
            if hybrid is not None and self.hybrid is not None:
                self._replace_kernel_share(new, hybrid)  # first: it may refuse, nothing changed yet
            engine, now = self._engine(), self.clock()
            before = tunnel_names(engine)
            torn: dict[str, int] = {}
            for name in SWITCHES:  # switches first, so their tunnels torn down are counted
                on = new.nat.passthrough.get(name)
                if on != old.nat.passthrough.get(name):
                    torn[name] = engine.set_switch(name, on, now)
            if hybrid is not None:
                self.hybrid = hybrid
            engine.reconfigure(self._nat_config(new), now)
            if self.datapath is not None:
                self.datapath.wan.gateway = new.wan_gateway
                self.datapath.wan.by_dst.clear()
                self.datapath.set_wan_addresses(new.wan_addresses)
            self.config = new
            if self.keeper is not None:
                self.keeper.interval = float(new.state_save_interval)
            gone = sorted(set(before) - set(tunnel_names(engine)))
            if gone:
                log.info("config change tore down %d tunnels: %s", len(gone), "; ".join(gone))
            for name in SWITCHES:
                self._push({"event": "switch", "switch": name, "on": new.nat.passthrough.get(name)})
            return torn

        torn = self._on_loop(apply)
        version = self._record(text, who, summary)
        gone = ", ".join(f"{n} {k}" for n, k in torn.items() if k) or "none"
        log.info("config reloaded from %s by %s: %s (tunnels torn down: %s)", new.path, who, summary, gone)
        return ConfigChange(summary, torn, version)

    # ----- backups and history -----------------------------------------------------------------
    def backup(self, who: str = "api") -> str:
        """The config file as a checked backup (comment header with its SHA-256)."""
        with self._config_lock:
            body = Path(self.config_path).read_text(encoding="utf-8")
        return with_header(body, who=who, summary="backup", source=self.config_path)

    def config_history(self) -> list[dict[str, Any]]:
        return [v.as_dict() for v in self.history.versions()]

    def restore(self, data: bytes, source: str, who: str = "restore") -> ConfigChange:
        """Validate a backup whole, then make it the config file and apply it.

        Raises BackupError or ConfigError (naming the line in ``source``) and changes nothing when
        the backup is damaged, invalid or changes what only a restart can change."""
        with self._config_lock:
            checked = read_checked(data, source)
            return self._install(checked, who)

    def rollback(self, number: int | None = None, who: str = "rollback") -> ConfigChange:
        """Return to history version ``number`` (default: the one before the newest)."""
        with self._config_lock:
            versions = self.history.versions()
            if number is None:
                if len(versions) < 2:
                    raise KeyError("no earlier version to roll back to")
                number = versions[1].number
            checked = self.history.get(number)
            return self._install(checked, f"{who} to #{number}")

    def _install(self, checked: Checked, who: str) -> ConfigChange:
        # Checked before the file is replaced: a refused restore leaves file and router untouched.
        new = dataclasses.replace(checked.config, path=self.config_path)
        self._check_restart_fields(new)
        old_text = Path(self.config_path).read_text(encoding="utf-8")
        write_atomic(self.config_path, checked.body)
        try:
            return self._apply(new, checked.body, who)
        except BaseException:
            write_atomic(self.config_path, old_text)
            raise

    # ----- port forwards ----------------------------------------------------------------------
    def forwards(self) -> list[dict[str, Any]]:
        """The port forwards running now (those added for this run only included)."""
        return [s.as_dict() for s in with_comments(forward_specs(self.config), self.config_path)]

    def add_forward(self, spec: ForwardSpec, *, runtime_only: bool = False, who: str = "api") -> ForwardResult:
        """Add a port forward to the running engine and, unless ``runtime_only``, to the config
        file (comments kept) and its history.

        Raises ForwardError and changes nothing when the target is outside the LAN, the WAN port
        is taken (another forward, a passthrough helper's port, natpass's hybrid ports, a
        connection holding it now) or, with the hybrid datapath, the kernel refuses the new rules."""
        with self._config_lock:
            cfg = self.config
            fwd = checked(spec, cfg, self.hybrid is not None)
            new = self._with_forwards(cfg.nat.forwards + (fwd,))

            def apply() -> None:
                held = holder(self._engine().flows(), fwd)
                if held is not None:
                    raise ForwardError("conflict", f"{spec.proto} WAN port {spec.port} is in use by a connection "
                                                   f"({held}): choose another port or try when it has ended")
                self._apply_forwards(new)

            self._on_loop(apply)
            saved, error, version = self._save_forward(
                lambda text: add_forward_text(text, spec, self.config_path), cfg, new, who, runtime_only)
        self._log_forward("added", spec, who, saved, error, runtime_only)
        return ForwardResult("added", spec.as_dict(), saved, error, version)

    def remove_forward(self, proto: str, port: int, wan_address: str | None = None, *,
                       runtime_only: bool = False, who: str = "api") -> ForwardResult:
        """Remove the port forward of ``proto`` WAN ``port`` now and, unless ``runtime_only``,
        from the config file. Connections already forwarded run on until they end.

        Raises ForwardError("missing") when no such forward runs."""
        with self._config_lock:
            cfg = self.config
            specs = forward_specs(cfg)
            found = [i for i, s in enumerate(specs) if s.proto == proto and s.port == port
                     and s.wan_address == wan_address]
            if not found:
                raise ForwardError("missing", f"no port forward of {proto} port {port}"
                                   + (f" on {wan_address}" if wan_address else ""))
            spec = specs[found[0]]
            new = self._with_forwards(tuple(f for i, f in enumerate(cfg.nat.forwards) if i != found[0]))
            self._on_loop(lambda: self._apply_forwards(new))

            def edit(text: str) -> str | None:
                try:
                    return remove_forward_text(text, proto, port, wan_address, self.config_path)
                except ForwardError:
                    return None  # the file never had it (added for this run only): nothing to write

            saved, error, version = self._save_forward(edit, cfg, new, who, runtime_only)
        self._log_forward("removed", spec, who, saved, error, runtime_only)
        return ForwardResult("removed", spec.as_dict(), saved, error, version)

    def _with_forwards(self, forwards: tuple[PortForward, ...]) -> RouterConfig:
        return dataclasses.replace(self.config, nat=dataclasses.replace(self.config.nat, forwards=forwards))

    def _apply_forwards(self, new: RouterConfig) -> None:
        """On the loop: the engine takes the new forwards (its flows are kept); in hybrid mode the
        kernel's rules first, as a reload does (a refusal there changes nothing)."""
        if self.hybrid is not None:
            hybrid = self.hybrid.reconfigured(new.nat)
            try:
                self._replace_kernel_share(new, hybrid)
            except ConfigError as exc:
                raise ForwardError("kernel", exc.message) from None
            self.hybrid = hybrid
        self._engine().reconfigure(self._nat_config(new), self.clock())
        self.config = new

    def _save_forward(self, edit: Callable[[str], str | None], old: RouterConfig, new: RouterConfig,
                      who: str, runtime_only: bool) -> tuple[bool, str | None, int | None]:
        if runtime_only:
            return False, None, None
        try:
            text = edit(Path(self.config_path).read_text(encoding="utf-8"))
            if text is None:
                return True, None, None
            write_atomic(self.config_path, text)
        except (ConfigError, OSError, UnicodeDecodeError) as exc:
            return False, str(exc), None
        return True, None, self._record(text, who, summarize(old, new))

    def _log_forward(self, action: str, spec: ForwardSpec, who: str, saved: bool, error: str | None,
                     runtime_only: bool) -> None:
        if saved:
            log.info("port forward %s %s by %s; saved in %s", spec.describe(), action, who, self.config_path)
        elif runtime_only:
            log.info("port forward %s %s by %s; runtime only: a reload or restart applies the config "
                     "file's forwards again", spec.describe(), action, who)
        else:
            log.error("port forward %s %s by %s but NOT saved: %s", spec.describe(), action, who, error)

    def _replace_kernel_share(self, new: RouterConfig, hybrid: Hybrid) -> None:
        """Hybrid mode: new timeouts or forwards change the kernel's table and conntrack timeouts
        (replaced in one nft transaction) and what natpass's sockets take."""
        assert self.hybrid is not None
        if hybrid.kernel_share() != self.hybrid.kernel_share() and self.setup is not None:
            try:
                self.setup.update_share(hybrid.kernel_share())
            except SetupError as exc:
                raise ConfigError(new.path, 0, f"the kernel's rules could not be replaced: {exc} "
                                  "(running config kept)") from exc
        if hybrid.own != self.hybrid.own and self.datapath is not None:
            self.datapath.set_rx_programs(hybrid.rx_programs())

    def _check_restart_fields(self, new: RouterConfig) -> None:
        old = self.config
        for what, before, after in (("LAN interface", old.lan_interface, new.lan_interface),
                                    ("WAN interface", old.wan_interface, new.wan_interface),
                                    ("datapath", old.datapath, new.datapath),
                                    ("LAN address", old.lan_address, new.lan_address),
                                    ("state dir", old.state_dir, new.state_dir),
                                    ("hybrid ports", old.hybrid_ports, new.hybrid_ports),
                                    ("hybrid NAT-T", old.hybrid_natt, new.hybrid_natt)):
            if before != after:
                raise ConfigError(new.path, 0, f"changing {what} needs a restart (running config kept)")

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
        kernel = self.hybrid.usage_event(now) if self.hybrid is not None else None
        if kernel is not None:
            self._push(kernel)
        helpers: dict[str, dict[str, Any]] = engine.status()["helpers"]
        for name, info in helpers.items():
            if name not in SWITCHES:
                continue
            stats: dict[str, int] = info["stats"]
            packets = sum(v for k, v in stats.items() if "packets" in k)
            self._push({"event": "packets", "switch": name, "total": packets})
