"""The router's admin API over HTTP/1.1 on a Unix socket (what ``natpass status/reload/switch/config``
use).

The socket is mode 0600 and the peer must be root or the router's own user (checked with
SO_PEERCRED): full access, no token. The admin web page and its token-protected API for other
hosts are :mod:`natpass.web` (``[router] admin_http``).

Endpoints::

    GET  /api/status              the daemon's status() (engine status, uptime, interfaces, ...)
    GET  /api/flows?limit=N       {"flows": [...], "limit": N}   (1 <= N <= 10000, default 200)
    POST /api/switch/<name>       body {"on": true|false[, "runtime_only": true]}
                                  -> {"switch", "on", "torn_down", "saved", "save_error", "exposure"}
    POST /api/reload              -> {"reloaded": true, "summary", ...} | 422 {"error", "path", "line", "message"}
    GET  /api/config/history      {"versions": [...]}
    GET  /api/config/backup       the config file as a checked backup
    POST /api/config/restore      body {"backup": text, "name": file name} -> as reload
    POST /api/config/rollback     body {} or {"number": N} -> as reload
    GET  /api/forwards            {"forwards": [{"proto", "port", "to", "wan_address", "comment"}]}
    POST /api/forwards            body {"proto", "port", "to"[, "wan_address", "comment", "runtime_only"]}
                                  -> 201 {"action", "forward", "saved", "save_error", "version"}
    DELETE /api/forwards/<tcp|udp>/<port>[?wan_address=A&runtime_only=1]  -> as POST (200)
    GET  /metrics                 Prometheus text

``POST`` bodies must be ``Content-Type: application/json``. Errors are JSON
``{"error": "...", "status": N}`` with the HTTP status code.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import secrets
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

from natpass.nat.config import SWITCHES
from natpass.router import metrics
from natpass.router.config import ConfigError
from natpass.router.forwards import REFUSAL_STATUS, ForwardError, ForwardResult, ForwardSpec
from natpass.router.settings import BackupError, ConfigChange, SwitchResult

log = logging.getLogger("natpass.admin")

MAX_BODY = 64 * 1024
DEFAULT_FLOW_LIMIT = 200
MAX_FLOW_LIMIT = 10000
REQUEST_TIMEOUT = 10.0  # a stalled client frees its thread after this
MAX_CONNECTIONS = 32  # per listener
WHO = "admin-unix"  # how changes made here are named in the config history
DAEMON_TIMEOUT = 15.0  # wait this long for another admin request's daemon call, then 503



class AdminError(Exception):
    """A request that gets an error status (never a crash)."""

    def __init__(self, status: int, error: str, /, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.extra = extra  # more JSON fields (``headers``: extra response headers)


class RouterControl(Protocol):
    """What the admin server needs of the router (:class:`natpass.router.daemon.RouterDaemon`)."""

    def status(self) -> dict[str, Any]:
        """The status object of ``GET /api/status``."""

    def flows(self, limit: int) -> list[dict[str, Any]]:
        """At most ``limit`` rows of ``GET /api/flows`` (fields in docs/ADMIN.md)."""

    def change_switch(self, name: str, on: bool, *, runtime_only: bool = False,
                      who: str = "api") -> SwitchResult:
        """Flip a switch; saved in the config file unless ``runtime_only``."""

    def reload(self, path: str | None = None, who: str = "reload") -> ConfigChange:
        """Reload the config file; ConfigError (running config kept) when it is refused."""

    def backup(self, who: str = "api") -> str:
        """The config file as a checked backup."""

    def config_history(self) -> list[dict[str, Any]]:
        """Kept config versions, newest first."""

    def restore(self, data: bytes, source: str, who: str = "restore") -> ConfigChange:
        """Validate a backup whole and apply it; BackupError/ConfigError change nothing."""

    def rollback(self, number: int | None = None, who: str = "rollback") -> ConfigChange:
        """Return to a kept version; KeyError when there is none."""

    def forwards(self) -> list[dict[str, Any]]:
        """The port forwards running now."""

    def add_forward(self, spec: ForwardSpec, *, runtime_only: bool = False, who: str = "api") -> ForwardResult:
        """Add a port forward now and save it; ForwardError changes nothing."""

    def remove_forward(self, proto: str, port: int, wan_address: str | None = None, *,
                       runtime_only: bool = False, who: str = "api") -> ForwardResult:
        """Remove a port forward now and from the file; ForwardError("missing") when none runs."""


_T = TypeVar("_T")


def json_default(value: Any) -> Any:
    """Make what the engine may put in status JSON-safe (addresses as dotted quads)."""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) == 4:
            return str(ipaddress.IPv4Address(raw))
        return raw.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def to_json(value: Any) -> bytes:
    return json.dumps(value, default=json_default, allow_nan=False, separators=(",", ":")).encode()


# --- servers ----------------------------------------------------------------------------------

class _Bounded:
    """At most MAX_CONNECTIONS handler threads: a flood of local clients gets closed sockets, not
    a router that runs out of threads."""

    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            log.warning("admin: more than %d connections, refusing one", MAX_CONNECTIONS)
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        try:
            super().process_request(request, client_address)  # type: ignore[misc]
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self.slots.release()


class _UnixServer(_Bounded, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64
    allowed_uids: frozenset[int] = frozenset()
    admin: AdminServer

    def peer_allowed(self, request: Any) -> bool:
        """Root or the router's own user (SO_PEERCRED); checked in the handler thread so the
        refused client still gets an answer."""
        try:
            creds = request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
        except (OSError, AttributeError):
            return False
        if uid not in self.allowed_uids:
            log.warning("admin socket: refused a client with uid %d", uid)
            return False
        return True


def _bind_unix(server: _UnixServer, path: Path) -> None:
    """Bind under a private name, chmod 0600, then rename into place: the socket is never
    reachable with looser permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not path.is_socket():
            raise OSError(f"{path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            path.unlink()  # stale: left by a router that did not stop cleanly
        else:
            raise OSError(f"another router is already listening on {path}")
        finally:
            probe.close()
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    server.socket.bind(os.fspath(temp))
    try:
        os.chmod(temp, 0o600)
        os.rename(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    server.server_address = os.fspath(path)


class AdminServer:
    """The admin API/page for one daemon (see the module docstring for endpoints and auth).

    Calls into ``daemon`` are serialised by a lock, so it sees one admin request at a time.
    """

    def __init__(self, daemon: RouterControl, socket_path: str | os.PathLike[str]) -> None:
        self.daemon = daemon
        self.socket_path = Path(socket_path)
        self.daemon_lock = threading.Lock()
        self.started = time.time()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self._socket_inode: int | None = None  # the socket file we created (only that one is removed)

    def start(self) -> AdminServer:
        unix = _UnixServer(os.fspath(self.socket_path), _AdminHandler, bind_and_activate=False)
        unix.admin = self
        unix.allowed_uids = frozenset({0, os.geteuid()})
        unix.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        try:
            _bind_unix(unix, self.socket_path)
            self._socket_inode = self.socket_path.stat().st_ino
            unix.server_activate()
        except BaseException:
            unix.server_close()
            raise
        self._serve(unix, "natpass-admin-unix")
        return self

    def _serve(self, server: socketserver.BaseServer, name: str) -> None:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=name,
                                  daemon=True)
        self._servers.append(server)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()
        if self._socket_inode is not None:
            with contextlib.suppress(OSError):
                if self.socket_path.stat().st_ino == self._socket_inode:
                    self.socket_path.unlink()
            self._socket_inode = None

    def __enter__(self) -> AdminServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # calls into the daemon -------------------------------------------------------------------
    def call(self, fn: Callable[[RouterControl], _T]) -> _T:
        """``fn(daemon)`` under the admin lock; 503 when another request holds it too long."""
        if not self.daemon_lock.acquire(timeout=DAEMON_TIMEOUT):
            raise AdminError(503, f"the router is busy (another admin request has run for {DAEMON_TIMEOUT:.0f} s)")
        try:
            return fn(self.daemon)
        finally:
            self.daemon_lock.release()


class _AdminHandler(BaseHTTPRequestHandler):
    server_version = "natpass-admin"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    error_content_type = "application/json"

    @property
    def admin(self) -> AdminServer:
        return self.server.admin  # type: ignore[attr-defined, no-any-return]

    # plumbing --------------------------------------------------------------------------------
    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("admin socket: %s", format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own errors (bad request line, unsupported method, ...) as JSON too."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self.close_connection = True
        self._send_json(code, {"error": message or phrase, "status": code})

    def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, value: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, to_json(value) + b"\n", "application/json", headers)

    def _dispatch(self) -> None:
        self._body_read = False
        try:
            if not self.server.peer_allowed(self.connection):  # type: ignore[attr-defined]
                self._discard_body()
                raise AdminError(403, "the admin socket is for root only")
            self._route()
        except AdminError as exc:
            if not self._body_read and not self.close_connection:
                self._discard_body()  # a refused request's short body: read, so the connection stays in step
            if not self._body_read and (self.headers.get("Content-Length") or "0").strip() != "0":
                self.close_connection = True  # unread body bytes must not be taken for the next request
            headers = exc.extra.pop("headers", None)
            self._send_json(exc.status, {"error": exc.error, "status": exc.status, **exc.extra}, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # the daemon failed: report it, keep serving
            log.exception("admin %s %s failed", self.command, self.path)
            self.close_connection = True
            self._send_json(500, {"error": f"internal error: {type(exc).__name__}: {exc}", "status": 500})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def _query(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        return parts.path, parse_qs(parts.query, keep_blank_values=True)

    def _require(self, *methods: str) -> None:
        allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())
        if self.command not in allowed:
            allow = ", ".join(sorted(allowed))
            raise AdminError(405, f"{self.command} not allowed here (use {allow})", headers={"Allow": allow})

    def _discard_body(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            length = int(self.headers.get("Content-Length") or 0)
            if 0 < length <= MAX_BODY:
                self.rfile.read(length)
                self._body_read = True

    def _read_json(self) -> Any:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise AdminError(415, "POST bodies must be JSON (Content-Type: application/json)")
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise AdminError(411, "send a Content-Length, not chunked")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise AdminError(400, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            raise AdminError(413, f"body larger than {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b""
        self._body_read = True
        if len(raw) != length:
            self.close_connection = True
            raise AdminError(400, "body shorter than Content-Length")
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AdminError(400, f"bad JSON: {exc}") from None

    # routes ----------------------------------------------------------------------------------
    def _route(self) -> None:
        path, query = self._query()
        if path == "/api/status":
            self._require("GET")
            self._send_json(200, self.admin.call(lambda d: d.status()))
        elif path == "/api/flows":
            self._require("GET")
            limit = _flow_limit(query)
            flows = self.admin.call(lambda d: d.flows(limit))[:limit]
            self._send_json(200, {"flows": flows, "limit": limit})
        elif path.startswith("/api/switch/"):
            self._require("POST")
            name = path[len("/api/switch/"):]
            if name not in SWITCHES:
                raise AdminError(404, f"unknown switch {name!r} (one of {', '.join(SWITCHES)})")
            body = self._read_json()
            on = body.get("on") if isinstance(body, dict) else None
            runtime_only = body.get("runtime_only", False) if isinstance(body, dict) else False
            if not isinstance(on, bool) or not isinstance(runtime_only, bool):
                raise AdminError(400, 'body must be {"on": true|false} with an optional "runtime_only": '
                                 'true|false')
            try:
                result: SwitchResult = self.admin.call(
                    lambda d: d.change_switch(name, on, runtime_only=runtime_only, who=WHO))
            except ValueError as exc:
                raise AdminError(400, str(exc)) from None
            log.info("admin socket: passthrough %s %s", name, "on" if on else "off")
            self._send_json(200, result.as_dict())
        elif path == "/api/reload":
            self._require("POST")
            self._read_json()
            self._config_change(lambda d: d.reload(who=WHO), "reloaded")
        elif path == "/api/config/history":
            self._require("GET")
            self._send_json(200, {"versions": self.admin.call(lambda d: d.config_history())})
        elif path == "/api/config/backup":
            self._require("GET")
            text = self.admin.call(lambda d: d.backup(who=WHO))
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            self._send(200, text.encode(), "application/toml; charset=utf-8",
                       {"Content-Disposition": f'attachment; filename="natpass-backup-{stamp}.toml"'})
        elif path == "/api/config/restore":
            self._require("POST")
            body = self._read_json()
            backup = body.get("backup") if isinstance(body, dict) else None
            source = body.get("name", "backup") if isinstance(body, dict) else "backup"
            if not isinstance(backup, str) or not isinstance(source, str):
                raise AdminError(400, 'body must be {"backup": "<the backup file\'s text>", "name": "<file name>"}')
            data = backup.encode("utf-8")
            self._config_change(lambda d: d.restore(data, source, who=WHO), "restored")
        elif path == "/api/config/rollback":
            self._require("POST")
            body = self._read_json()
            number = body.get("number") if isinstance(body, dict) else None
            if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
                raise AdminError(400, 'body must be {} or {"number": N} (N from /api/config/history)')
            self._config_change(lambda d: d.rollback(number, who=WHO), "rolled_back")
        elif path == "/api/forwards":
            self._require("GET", "POST")
            if self.command != "POST":
                self._send_json(200, {"forwards": self.admin.call(lambda d: d.forwards())})
                return
            body = self._read_json()
            if not isinstance(body, dict):
                raise AdminError(400, 'body must be {"proto": "tcp|udp", "port": N, "to": "ADDRESS[:PORT]"}')
            runtime_only = body.get("runtime_only", False)
            if not isinstance(runtime_only, bool):
                raise AdminError(400, "runtime_only must be true or false")
            self._forward_change(lambda d: d.add_forward(ForwardSpec.parse(body), runtime_only=runtime_only,
                                                         who=WHO), 201)
        elif path.startswith("/api/forwards/"):
            self._require("DELETE")
            proto, _, port = path[len("/api/forwards/"):].partition("/")
            if proto not in ("tcp", "udp") or not port.isdigit():
                raise AdminError(404, f"no such forward: {path} (use /api/forwards/tcp|udp/PORT)")
            wan = (query.get("wan_address") or [""])[0] or None
            runtime = (query.get("runtime_only") or [""])[0] in ("1", "true")
            self._forward_change(lambda d: d.remove_forward(proto, int(port), wan, runtime_only=runtime,
                                                            who=WHO), 200)
        elif path == "/metrics":
            self._require("GET")
            status = self.admin.call(lambda d: d.status())
            self._send(200, metrics.render(status).encode(), metrics.CONTENT_TYPE)
        else:
            raise AdminError(404, f"no such endpoint: {path}")

    def _forward_change(self, change: Callable[[RouterControl], ForwardResult], status: int) -> None:
        """Add or remove a forward; a refusal (status by ``REFUSAL_STATUS``) changes nothing."""
        try:
            result = self.admin.call(change)
        except ForwardError as exc:
            code = REFUSAL_STATUS[exc.kind]
            raise AdminError(code, f"port forward refused: {exc.message}") from None
        log.info("admin socket: port forward %s %s", result.action, result.forward)
        self._send_json(status, result.as_dict())

    def _config_change(self, change: Callable[[RouterControl], ConfigChange], done: str) -> None:
        """Run a reload/restore/rollback; a refusal is 422 with the file and line, nothing changed."""
        try:
            result = self.admin.call(change)
        except (ConfigError, BackupError) as exc:
            raise AdminError(422, f"config not changed, the running one is kept: {exc}",
                             path=exc.path, line=exc.line, message=exc.message) from None
        except KeyError as exc:
            raise AdminError(404, f"no such config version: {exc.args[0] if exc.args else ''}") from None
        log.info("admin socket: configuration %s: %s", done.replace("_", " "), result.summary)
        self._send_json(200, {done: True, **result.as_dict()})


def _flow_limit(query: dict[str, list[str]]) -> int:
    values = query.get("limit")
    if not values:
        return DEFAULT_FLOW_LIMIT
    text = values[-1]
    if not text.isdigit() or not 1 <= int(text) <= MAX_FLOW_LIMIT:
        raise AdminError(400, f"limit must be an integer from 1 to {MAX_FLOW_LIMIT}")
    return int(text)

