"""``natpass status``, ``reload``, ``switch`` and ``config backup|restore|history|rollback``:
clients of the running router's admin API over its Unix socket (see ``natpass.router.admin``)."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from natpass.packets.ipproto import proto_name

DEFAULT_SOCKET = "/run/natpass/natpass.sock"
DEFAULT_STATE_DIR = "/var/lib/natpass"
PID_FILENAME = "natpass.pid"
SOCKET_ENV = "NATPASS_SOCKET"


class RouterUnavailable(Exception):
    """No router answers on the admin socket."""


class AdminClient:
    """HTTP/1.1 over the router's Unix socket; every answer is JSON (or Prometheus text)."""

    def __init__(self, socket_path: str | os.PathLike[str], timeout: float = 10.0) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = _UnixHTTPConnection(self.socket_path, self.timeout)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            try:
                conn.request(method, path, body=data, headers=headers)
            except BrokenPipeError:
                pass  # the router answered (e.g. 403) before reading our body: read its answer
            response = conn.getresponse()
            raw = response.read()
        except FileNotFoundError:
            raise RouterUnavailable(f"no router is running (no admin socket at {self.socket_path})") from None
        except ConnectionRefusedError:
            raise RouterUnavailable(f"no router is running (nothing listens on {self.socket_path})") from None
        except PermissionError:
            raise RouterUnavailable(f"permission denied on {self.socket_path}: run as root") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RouterUnavailable(f"the router on {self.socket_path} did not answer: {exc}") from None
        finally:
            conn.close()
        if (response.getheader("Content-Type") or "").startswith("application/json"):
            try:
                return response.status, json.loads(raw)
            except ValueError:
                pass
        return response.status, raw.decode("utf-8", "replace")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


# --- argument handling ------------------------------------------------------------------------

def add_target(parser: argparse.ArgumentParser) -> None:
    """--socket / --config: which router to ask."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", metavar="PATH",
                       help=f"the router's admin socket (default: ${SOCKET_ENV} or {DEFAULT_SOCKET})")
    where.add_argument("--config", "-c", metavar="FILE", help="take the admin socket and state dir from FILE")


def register(sub: Any) -> None:
    status = sub.add_parser(
        "status", help="show the running router: switches, counters, drops, tunnels, connections",
        description="Ask the running router (admin Unix socket) for its passthrough switches, "
        "counters, drops by reason, live tunnels and connections.")
    add_target(status)
    status.add_argument("--json", action="store_true", help="print the raw status object as JSON")
    status.add_argument("--connections", "-n", type=int, default=20, metavar="N",
                        help="show up to N connections (default 20, 0: none)")
    status.set_defaults(func=_status)

    reload = sub.add_parser(
        "reload", help="make the running router re-read its config file",
        description="Re-read the config file: an invalid file is refused whole (the error names the "
        "line) and the running config is kept. Uses the admin socket; without one, sends SIGHUP to "
        f"the pid in <state_dir>/{PID_FILENAME}.")
    add_target(reload)
    reload.set_defaults(func=_reload)

    switch = sub.add_parser(
        "switch", help="turn a passthrough switch on or off in the running router (and save it)",
        description="Turn PPTP, IPsec or L2TP passthrough on or off now (turning one off tears its "
        "tunnels down) and write it into the config file, keeping its comments and layout, so a "
        "reload or restart keeps it; the previous file is kept in the config history "
        "(`natpass config history`). Turning one on prints what it exposes.")
    switch.add_argument("name", choices=("pptp", "ipsec", "l2tp"), help="which passthrough")
    switch.add_argument("state", choices=("on", "off"))
    switch.add_argument("--runtime-only", action="store_true",
                        help="do not write the config file: a reload or restart applies the file's value")
    add_target(switch)
    switch.set_defaults(func=_switch)


def _target(args: argparse.Namespace) -> tuple[str, str]:
    """(socket path, state dir) from --socket / --config / the environment / the defaults."""
    if args.config:
        from natpass.router.config import load_config

        cfg = load_config(args.config)  # ConfigError is reported by the caller
        return cfg.admin_socket, cfg.state_dir
    if args.socket:
        return args.socket, DEFAULT_STATE_DIR
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET, DEFAULT_STATE_DIR


def _err(message: str) -> None:
    print(f"natpass: {message}", file=sys.stderr)


def api_error(answer: Any, status: int) -> str:
    if isinstance(answer, dict) and answer.get("error"):
        return str(answer["error"])
    return f"HTTP {status}"


def client_for(args: argparse.Namespace) -> AdminClient | str:
    """A client for the router ``args`` names, or why there is none (a bad --config)."""
    try:
        path, _ = _target(args)
    except ValueError as exc:  # ConfigError is a ValueError
        return str(exc)
    return AdminClient(path)


def _client(args: argparse.Namespace) -> tuple[AdminClient, str] | int:
    try:
        path, state_dir = _target(args)
    except ValueError as exc:  # ConfigError is a ValueError
        _err(str(exc))
        return 2
    return AdminClient(path), state_dir


# --- status -----------------------------------------------------------------------------------

def _status(args: argparse.Namespace) -> int:
    got = _client(args)
    if isinstance(got, int):
        return got
    client, _ = got
    try:
        code, status = client.request("GET", "/api/status")
        if code != 200 or not isinstance(status, dict):
            _err(f"status failed: {api_error(status, code)}")
            return 1
        flows: list[Any] = []
        if args.connections > 0 and not args.json:
            fcode, answer = client.request("GET", f"/api/flows?limit={min(args.connections, 10000)}")
            if fcode == 200 and isinstance(answer, dict):
                flows = [f for f in answer.get("flows", []) if isinstance(f, dict)]
    except RouterUnavailable as exc:
        _err(str(exc))
        return 1
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print_status(status, flows)
    return 0


def print_status(status: dict[str, Any], flows: list[dict[str, Any]], console: Any = None) -> None:
    """The human view of ``status`` (rich tables)."""
    from rich.console import Console
    from rich.table import Table

    from natpass.router import metrics
    from natpass.router.switches import SWITCH_INFO

    if console is None:
        # Piped output is for grep and logs: do not fold addresses at 80 columns.
        console = Console() if sys.stdout.isatty() else Console(width=200)
    uptime = status.get("uptime")
    head = [f"uptime {_duration(uptime)}" if isinstance(uptime, int | float) else None,
            f"config {status['config_path']}" if status.get("config_path") else None,
            interfaces_text(status.get("interfaces")) if status.get("interfaces") else None]
    console.print("[bold]natpass router[/bold]  " + "  ".join(h for h in head if h))
    if isinstance(status.get("hybrid"), dict):
        _print_hybrid(console, status["hybrid"])

    states = metrics.switch_states(status, with_strict=True)
    helpers = metrics.helpers(status)
    table = Table(title="VPN passthrough", title_justify="left")
    table.add_column("switch")
    table.add_column("state")
    table.add_column("tunnels", justify="right")
    table.add_column("note", overflow="fold")
    for name, info in SWITCH_INFO.items():
        on = states.get(name)
        state = "[green]on[/green]" if on else "[dim]off[/dim]" if on is not None else "?"
        count = str(len(helpers[name].get("tunnels", []))) if name in helpers else ""
        table.add_row(info.title, state, count, info.note)
    console.print(table)

    for title, key, left, right in (("Counters", "counters", "counter", "value"),
                                    ("Drops by reason", "drops", "reason", "packets")):
        values = status.get(key)
        if isinstance(values, dict) and values:
            t = Table(title=title, title_justify="left")
            t.add_column(left)
            t.add_column(right, justify="right")
            for k, v in sorted(values.items(), key=lambda kv: (-_num(kv[1]), str(kv[0]))):
                t.add_row(str(k), str(v))
            console.print(t)
        else:
            console.print(f"{title}: none")

    tunnels = [{"switch": name, **t} for name, h in sorted(helpers.items()) for t in h["tunnels"]
               if isinstance(t, dict)]
    _rows_table(console, "Live tunnels", tunnels, "no live tunnels")
    total, protos = metrics.flows_by_proto(status)
    summary = ", ".join(f"{p} {n}" for p, n in sorted(protos.items(), key=lambda kv: -kv[1]))
    title = f"Connections: {total if total is not None else len(flows)}" + (f" ({summary})" if summary else "")
    flows = [compact_flow(f) for f in flows]
    if flows:
        shown = f" (first {len(flows)})" if total is not None and total > len(flows) else ""
        _rows_table(console, title + shown, flows, "")
    else:
        console.print(title)


def compact_flow(flow: Mapping[str, Any]) -> dict[str, Any]:
    """A flow row as the API gives it (``lan_addr``, ``lan_port``, ...) with each endpoint as one
    ``address:port`` column and the protocol by name, for tables."""
    out: dict[str, Any] = {}
    proto = flow.get("proto")
    if "proto" in flow:
        out["proto"] = proto_name(proto) if isinstance(proto, int) else proto
    for side in ("lan", "wan", "remote"):
        addr, port = flow.get(f"{side}_addr"), flow.get(f"{side}_port")
        if addr is not None:
            out[side] = f"{addr}:{port}" if port not in (None, 0) else str(addr)
    for key, value in flow.items():
        if key == "proto" or key.endswith(("_addr", "_port")) and key.split("_")[0] in ("lan", "wan", "remote"):
            continue
        out[key] = value
    return out


def interfaces_text(interfaces: Any) -> str:
    """``LAN lan0 192.168.1.1 · WAN wan0 203.0.113.1`` from the status's ``interfaces``."""
    if not isinstance(interfaces, Mapping):
        return "?"
    parts = []
    for side in ("lan", "wan"):
        info = interfaces.get(side)
        if isinstance(info, Mapping):
            addrs = info.get("addresses") or [info.get("address")]
            addrs = [str(a) for a in addrs if a] if isinstance(addrs, list) else [str(addrs)]
            parts.append(" ".join([side.upper(), str(info.get("name") or "?"), *addrs]))
        elif info:
            parts.append(f"{side.upper()} {info}")
    return " · ".join(parts) or "?"


def _print_hybrid(console: Any, hybrid: dict[str, Any]) -> None:
    """datapath = "hybrid": which half handles what, and the kernel's flow count."""
    ct = hybrid.get("kernel_conntrack") or {}
    console.print(f"[bold]hybrid datapath[/bold]: kernel flows {ct.get('count', '?')} "
                  f"(of at most {ct.get('max', '?')})")
    drops = hybrid.get("kernel_drops")
    if isinstance(drops, dict):
        console.print(f"  kernel dropped: {drops.get('natpass_share', 0)} of natpass's share (its copy), "
                      f"{drops.get('forward_refused', 0)} refused forwards, "
                      f"{drops.get('input_refused', 0)} refused to the router, "
                      f"{drops.get('kernel_icmp_errors', 0)} own ICMP errors about natpass's share")
    for who in ("natpass", "kernel"):
        what = hybrid.get(who)
        if isinstance(what, list):
            console.print(f"  {who} handles: " + "; ".join(str(w) for w in what))


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{s:02d}"


def _rows_table(console: Any, title: str, rows: list[dict[str, Any]], empty: str) -> None:
    from rich.table import Table

    if not rows:
        console.print(f"{title}: {empty}")
        return
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    table = Table(title=title, title_justify="left")
    for column in columns[:12]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns[:12]))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


# --- reload / switch --------------------------------------------------------------------------

def _reload(args: argparse.Namespace) -> int:
    got = _client(args)
    if isinstance(got, int):
        return got
    client, state_dir = got
    try:
        code, answer = client.request("POST", "/api/reload", {})
    except RouterUnavailable as exc:
        return _reload_by_signal(Path(state_dir), str(exc))
    if code == 200:
        summary = answer.get("summary") if isinstance(answer, dict) else None
        print(f"natpass: configuration reloaded{': ' + summary if summary else ''}")
        return 0
    if code == 422 and isinstance(answer, dict):
        where = answer.get("path") or "config"
        if answer.get("line"):
            where = f"{where}:{answer['line']}"
        _err(f"{where}: {answer.get('message') or answer.get('error')} (the running config is kept)")
        return 2
    _err(f"reload failed: {api_error(answer, code)}")
    return 1


def _reload_by_signal(state_dir: Path, why: str) -> int:
    pid_file = state_dir / PID_FILENAME
    try:
        pid = int(pid_file.read_text().strip())
    except FileNotFoundError:
        _err(f"{why}; no pid file {pid_file} either")
        return 1
    except (OSError, ValueError) as exc:
        _err(f"{why}; cannot read pid file {pid_file}: {exc}")
        return 1
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        _err(f"{why}; pid file {pid_file} names pid {pid}, which is not running")
        return 1
    if b"natpass" not in cmdline:  # a recycled pid: never signal a stranger
        _err(f"{why}; pid {pid} from {pid_file} is not a natpass process")
        return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        _err(f"cannot signal pid {pid}: {exc}")
        return 1
    print(f"natpass: sent SIGHUP to the router (pid {pid}); its log says whether the new config was accepted")
    return 0


def _switch(args: argparse.Namespace) -> int:
    got = _client(args)
    if isinstance(got, int):
        return got
    client, _ = got
    on = args.state == "on"
    try:
        code, answer = client.request("POST", f"/api/switch/{args.name}",
                                      {"on": on, "runtime_only": args.runtime_only})
    except RouterUnavailable as exc:
        _err(str(exc))
        return 1
    if code != 200 or not isinstance(answer, dict):
        _err(f"switch failed: {api_error(answer, code)}")
        return 1
    torn = int(answer.get("torn_down", 0))
    extra = f" ({torn} tunnel{'s' if torn != 1 else ''} torn down)" if torn else ""
    print(f"natpass: {args.name} passthrough {'on' if on else 'off'}{extra}")
    if answer.get("exposure"):
        print(f"exposes: {answer['exposure']}")
    if on:
        from natpass.router.switches import SWITCH_INFO

        print(f"note: {SWITCH_INFO[args.name].note}")
    return report_saved(answer, args.runtime_only, "value")


def report_saved(answer: dict[str, Any], runtime_only: bool, what: str) -> int:
    """Say whether a change the router made was also saved in its config file; 1 if it should
    have been and was not."""
    if answer.get("saved"):
        print("saved in the config file (previous version kept: natpass config history)")
    elif runtime_only:
        print(f"not saved (--runtime-only): a reload or restart applies the config file's {what}")
    else:
        _err(f"NOT saved in the config file: {answer.get('save_error')}")
        return 1
    return 0
