"""The router's admin API, Prometheus metrics and admin page over HTTP/1.1.

Two listeners, same endpoints:

* a Unix socket (mode 0600, and the peer must be root or the daemon's own user, checked with
  SO_PEERCRED): full access, no token. This is what ``natpass status/reload/switch`` use.
* optionally TCP (``admin_http``, loopback by default): reading is open (``GET``); changes
  (``POST``) need ``Authorization: Bearer <token>`` with the token from ``<state_dir>/admin.token``
  (created 0600 at start when missing). Without a readable token file the TCP listener is read-only.

CSRF: every ``POST`` must carry ``Content-Type: application/json`` and, on TCP, the bearer token;
neither can be sent cross-origin by a plain form, and no CORS headers are ever sent. The TCP
listener also refuses ``Host`` names other than IP literals, ``localhost`` and this machine's
name (DNS rebinding) and a cross-site ``Origin``.

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
    GET  /                        the admin page (readable without JavaScript)
    GET  /static/admin.css|js     its assets

Errors are JSON ``{"error": "...", "status": N}`` with the HTTP status code.
"""

from __future__ import annotations

import contextlib
import hmac
import html
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

from natpass.nat.config import SWITCHES
from natpass.packets.ipproto import proto_name
from natpass.router import metrics
from natpass.router.config import ConfigError
from natpass.router.forwards import ForwardError, ForwardResult, ForwardSpec
from natpass.router.settings import BackupError, ConfigChange, SwitchResult

log = logging.getLogger("natpass.admin")

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"admin.css": "text/css; charset=utf-8", "admin.js": "text/javascript; charset=utf-8"}
TOKEN_FILENAME = "admin.token"
MAX_BODY = 64 * 1024
DEFAULT_FLOW_LIMIT = 200
MAX_FLOW_LIMIT = 10000
PAGE_FLOW_LIMIT = 50
REQUEST_TIMEOUT = 10.0  # a stalled client frees its thread after this
MAX_CONNECTIONS = 32  # per listener
DAEMON_TIMEOUT = 15.0  # wait this long for another admin request's daemon call, then 503

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}

# One line on what each switch does and one on its security meaning (page and CLI).
SWITCH_INFO: dict[str, tuple[str, str, str]] = {
    "pptp": (
        "PPTP",
        "Follows the PPTP control connection (TCP 1723) and translates its GRE call IDs so several "
        "LAN clients can reach PPTP servers at once.",
        "PPTP is insecure: its MS-CHAPv2 login can be cracked from a capture. Turn it on only for a "
        "legacy server that cannot be replaced.",
    ),
    "ipsec": (
        "IPsec",
        "Passes IKE (UDP 500) and raw ESP (IP protocol 50) for clients that do not use NAT traversal.",
        "Needed for L2TP/IPsec and legacy IKEv1 without NAT-T. IKEv2 and NAT-T (UDP 4500) work "
        "without it; leave it off if nothing needs it.",
    ),
    "l2tp": (
        "L2TP",
        "Follows L2TP sessions (UDP 1701) between LAN clients and an L2TP server.",
        "L2TP has no encryption of its own: use it inside IPsec (L2TP/IPsec), which also needs the "
        "IPsec switch.",
    ),
}


class AdminError(Exception):
    """A request that gets an error status (never a crash)."""

    def __init__(self, status: int, error: str, /, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.extra = extra  # more JSON fields (``headers``: extra response headers)


class RouterControl(Protocol):
    """What the admin server needs of the router (:class:`natpass.router.daemon.RouterDaemon`)."""

    @property
    def state_dir(self) -> str:
        """Where the admin token lives."""

    def status(self) -> dict[str, Any]:
        """The status object of ``GET /api/status``."""

    def flows(self, limit: int) -> list[dict[str, Any]]:
        """At most ``limit`` rows of ``GET /api/flows`` (fields in docs/ADMIN.md)."""

    def set_switch(self, name: str, on: bool) -> int:
        """Flip a passthrough switch and save it; returns the tunnels torn down. ValueError:
        unknown switch."""

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


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so the page renders exactly what the API serves."""
    return json.loads(to_json(value))


def load_or_create_token(path: Path) -> str | None:
    """The admin token from ``path``, created (0600) when missing; None when unusable."""
    try:
        token = path.read_text(encoding="ascii").strip()
        if len(token) >= 16:
            if path.stat().st_mode & 0o077:
                log.warning("admin token %s is readable by others; chmod 600 it", path)
            return token
        log.warning("admin token %s is shorter than 16 characters: HTTP admin is read-only", path)
        return None
    except FileNotFoundError:
        pass
    except (OSError, UnicodeError) as exc:
        log.warning("cannot read admin token %s (%s): HTTP admin is read-only", path, exc)
        return None
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(token + "\n")
    except FileExistsError:
        return load_or_create_token(path)
    except OSError as exc:
        log.warning("cannot create admin token %s (%s): HTTP admin is read-only", path, exc)
        return None
    log.info("created admin token %s", path)
    return token


def parse_http_address(text: str) -> tuple[socket.AddressFamily, str, int]:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"``, ``":8080"`` or ``"8080"`` (loopback) -> (family, host, port)."""
    text = text.strip()
    if text.isdigit():
        host, port_text = "", text
    elif text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"admin_http {text!r}: expected [ADDRESS]:PORT")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"admin_http {text!r}: expected ADDRESS:PORT")
    host = host or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"admin_http {text!r}: bad port")
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        raise ValueError(f"admin_http {text!r}: the address must be an IP address") from None
    return family, host, int(port_text)


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


class _TCPServer(_Bounded, ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn); nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _UnixServer(_Bounded, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64
    allowed_uids: frozenset[int] = frozenset()

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

    def __init__(self, daemon: RouterControl, socket_path: str | os.PathLike[str] | None, http: str | None = None,
                 *, token_path: str | os.PathLike[str] | None = None) -> None:
        self.daemon = daemon
        self.socket_path = Path(socket_path) if socket_path else None
        self.http = http
        self.token_path = Path(token_path) if token_path else Path(daemon.state_dir) / TOKEN_FILENAME
        self.token: str | None = None
        self.daemon_lock = threading.Lock()
        self.started = time.time()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self.http_address: tuple[str, int] | None = None
        self._socket_inode: int | None = None  # the socket file we created (only that one is removed)

    def start(self) -> AdminServer:
        try:
            if self.socket_path is not None:
                unix = _UnixServer(os.fspath(self.socket_path), _handler(self, "unix"), bind_and_activate=False)
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
            if self.http:
                family, host, port = parse_http_address(self.http)
                if not ipaddress.ip_address(host).is_loopback:
                    log.warning("admin HTTP on %s is reachable from the network; reading needs no token", host)
                self.token = load_or_create_token(self.token_path)
                tcp_cls = type("_TCP", (_TCPServer,), {"address_family": family})
                tcp = tcp_cls((host, port), _handler(self, "http"))
                tcp.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
                self.http_address = (host, tcp.server_address[1])
                self._serve(tcp, "natpass-admin-http")
        except BaseException:
            self.stop()
            raise
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
        if self.socket_path is not None and self._socket_inode is not None:
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


def _handler(admin: AdminServer, via: str) -> type[BaseHTTPRequestHandler]:
    return type("AdminHandler", (_AdminHandler,), {"admin": admin, "via": via})


class _AdminHandler(BaseHTTPRequestHandler):
    server_version = "natpass-admin"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    error_content_type = "application/json"
    admin: AdminServer
    via: str

    # plumbing --------------------------------------------------------------------------------
    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s %s", self.via, format % args)

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
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
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
            if self.via == "unix" and not self.server.peer_allowed(self.connection):  # type: ignore[attr-defined]
                self._discard_body()
                raise AdminError(403, "the admin socket is for root only")
            self._check_host()
            self._route()
        except AdminError as exc:
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

    def _check_host(self) -> None:
        if self.via != "http":
            return
        host = (self.headers.get("Host") or "").strip()
        name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
        if name.lower() not in ("localhost", socket.gethostname().lower()):
            try:
                ipaddress.ip_address(name)
            except ValueError:
                raise AdminError(421, f"unexpected Host {host!r}: use the router's IP address") from None
        origin = self.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != host:
            raise AdminError(403, "cross-origin request refused")

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

    def _authorize_change(self) -> None:
        if self.via == "unix":
            return  # SO_PEERCRED already checked: root or the daemon's user
        token = self.admin.token
        if token is None:
            raise AdminError(403, "the HTTP admin is read-only (no admin token); use the Unix socket")
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise AdminError(401, f"changes need 'Authorization: Bearer <token>' (token in {self.admin.token_path})",
                             headers={"WWW-Authenticate": 'Bearer realm="natpass"'})

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
            self._authorize_change()
            on = body.get("on") if isinstance(body, dict) else None
            runtime_only = body.get("runtime_only", False) if isinstance(body, dict) else False
            if not isinstance(on, bool) or not isinstance(runtime_only, bool):
                raise AdminError(400, 'body must be {"on": true|false} with an optional "runtime_only": '
                                 'true|false')
            who = f"admin-{self.via}"
            try:
                result: SwitchResult = self.admin.call(
                    lambda d: d.change_switch(name, on, runtime_only=runtime_only, who=who))
            except ValueError as exc:
                raise AdminError(400, str(exc)) from None
            log.info("admin (%s): passthrough %s %s", self.via, name, "on" if on else "off")
            self._send_json(200, result.as_dict())
        elif path == "/api/reload":
            self._require("POST")
            self._read_json()
            self._authorize_change()
            self._config_change(lambda d: d.reload(who=f"admin-{self.via}"), "reloaded")
        elif path == "/api/config/history":
            self._require("GET")
            self._authorize_change()  # summaries name LAN hosts and forwards
            self._send_json(200, {"versions": self.admin.call(lambda d: d.config_history())})
        elif path == "/api/config/backup":
            self._require("GET")
            self._authorize_change()  # a backup names LAN hosts and forwards: same rights as a change
            text = self.admin.call(lambda d: d.backup(who=f"admin-{self.via}"))
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            self._send(200, text.encode(), "application/toml; charset=utf-8",
                       {"Content-Disposition": f'attachment; filename="natpass-backup-{stamp}.toml"'})
        elif path == "/api/config/restore":
            self._require("POST")
            body = self._read_json()
            self._authorize_change()
            backup = body.get("backup") if isinstance(body, dict) else None
            source = body.get("name", "backup") if isinstance(body, dict) else "backup"
            if not isinstance(backup, str) or not isinstance(source, str):
                raise AdminError(400, 'body must be {"backup": "<the backup file\'s text>", "name": "<file name>"}')
            data = backup.encode("utf-8")
            self._config_change(lambda d: d.restore(data, source, who=f"admin-{self.via}"), "restored")
        elif path == "/api/config/rollback":
            self._require("POST")
            body = self._read_json()
            self._authorize_change()
            number = body.get("number") if isinstance(body, dict) else None
            if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
                raise AdminError(400, 'body must be {} or {"number": N} (N from /api/config/history)')
            self._config_change(lambda d: d.rollback(number, who=f"admin-{self.via}"), "rolled_back")
        elif path == "/api/forwards":
            self._require("GET", "POST")
            if self.command == "POST":
                body = self._read_json()
            self._authorize_change()  # forwards name LAN hosts
            if self.command != "POST":
                self._send_json(200, {"forwards": self.admin.call(lambda d: d.forwards())})
                return
            if not isinstance(body, dict):
                raise AdminError(400, 'body must be {"proto": "tcp|udp", "port": N, "to": "ADDRESS[:PORT]"}')
            runtime_only = body.get("runtime_only", False)
            if not isinstance(runtime_only, bool):
                raise AdminError(400, "runtime_only must be true or false")
            self._forward_change(lambda d: d.add_forward(ForwardSpec.parse(body), runtime_only=runtime_only,
                                                         who=f"admin-{self.via}"), 201)
        elif path.startswith("/api/forwards/"):
            self._require("DELETE")
            self._authorize_change()
            proto, _, port = path[len("/api/forwards/"):].partition("/")
            if proto not in ("tcp", "udp") or not port.isdigit():
                raise AdminError(404, f"no such forward: {path} (use /api/forwards/tcp|udp/PORT)")
            wan = (query.get("wan_address") or [""])[0] or None
            runtime = (query.get("runtime_only") or [""])[0] in ("1", "true")
            self._forward_change(lambda d: d.remove_forward(proto, int(port), wan, runtime_only=runtime,
                                                            who=f"admin-{self.via}"), 200)
        elif path == "/metrics":
            self._require("GET")
            status = self.admin.call(lambda d: d.status())
            self._send(200, metrics.render(status).encode(), metrics.CONTENT_TYPE)
        elif path in ("/", "/index.html"):
            self._require("GET")
            status = self.admin.call(lambda d: d.status())
            flows = self.admin.call(lambda d: d.flows(PAGE_FLOW_LIMIT))[:PAGE_FLOW_LIMIT]
            page = render_page(status, flows, writable=self.via == "unix" or self.admin.token is not None)
            self._send(200, page.encode(), "text/html; charset=utf-8")
        elif path.startswith("/static/") and path[len("/static/"):] in STATIC_FILES:
            self._require("GET")
            name = path[len("/static/"):]
            self._send(200, (STATIC_DIR / name).read_bytes(), STATIC_FILES[name])
        elif path == "/favicon.ico":
            self._require("GET")
            self._send(204, b"", "image/x-icon")
        else:
            raise AdminError(404, f"no such endpoint: {path}")

    def _forward_change(self, change: Callable[[RouterControl], ForwardResult], status: int) -> None:
        """Add or remove a forward; a refusal is 422 (invalid), 409 (port taken, or needs a
        restart) or 404 (no such forward), and changes nothing."""
        try:
            result = self.admin.call(change)
        except ForwardError as exc:
            code = {"invalid": 422, "conflict": 409, "restart": 409, "missing": 404}.get(exc.kind, 422)
            raise AdminError(code, f"port forward refused: {exc.message}") from None
        log.info("admin (%s): port forward %s %s", self.via, result.action, result.forward)
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
        log.info("admin (%s): configuration %s: %s", self.via, done.replace("_", " "), result.summary)
        self._send_json(200, {done: True, **result.as_dict()})


def _flow_limit(query: dict[str, list[str]]) -> int:
    values = query.get("limit")
    if not values:
        return DEFAULT_FLOW_LIMIT
    text = values[-1]
    if not text.isdigit() or not 1 <= int(text) <= MAX_FLOW_LIMIT:
        raise AdminError(400, f"limit must be an integer from 1 to {MAX_FLOW_LIMIT}")
    return int(text)


# --- the page ---------------------------------------------------------------------------------

def _e(value: Any) -> str:
    if isinstance(value, bool):
        value = "yes" if value else "no"
    elif isinstance(value, float):
        value = f"{value:.1f}"
    elif isinstance(value, dict | list):
        value = json.dumps(value, default=json_default, separators=(", ", ": "))
    return html.escape("" if value is None else str(value), quote=True)


def _table(rows: list[dict[str, Any]], empty: str, max_columns: int = 10) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns and len(columns) < max_columns:
                columns.append(key)
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pairs(values: Any, key: str, value: str, empty: str) -> str:
    if not isinstance(values, Mapping) or not values:
        return f'<p class="empty">{_e(empty)}</p>'
    rows = sorted(values.items(), key=lambda kv: (-kv[1] if isinstance(kv[1], int | float) else 0, str(kv[0])))
    return _table([{key: k, value: v} for k, v in rows], empty)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{s:02d}"




def compact_flow(flow: Mapping[str, Any]) -> dict[str, Any]:
    """A flow dict as the daemon gives it (``lan_addr``, ``lan_port``, ...) with each endpoint as
    one ``address:port`` column and the protocol by name, for tables."""
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


def proto_summary(protos: Mapping[str, int]) -> str:
    """``by protocol: tcp 2 · gre 1`` (largest first), or nothing."""
    ordered = sorted(protos.items(), key=lambda kv: (-kv[1], kv[0]))
    return "by protocol: " + " · ".join(f"{p} {n}" for p, n in ordered) if ordered else ""


def interfaces_text(interfaces: Any) -> str:
    """``LAN lan0 192.168.1.1 · WAN wan0 203.0.113.1`` from the daemon's ``interfaces``."""
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


def render_page(status: Any, flows: list[Any], writable: bool) -> str:
    """The admin page with the current values filled in (JavaScript only refreshes them)."""
    status = _jsonable(status) if isinstance(status, Mapping) else {}
    flows = [compact_flow(f) for f in _jsonable(flows) if isinstance(f, dict)]
    states = metrics.switch_states(status)
    helpers = metrics.helpers(status)
    cards = []
    for name in SWITCHES:
        title, what, note = SWITCH_INFO[name]
        on = states.get(name, False)
        tunnels = helpers.get(name, {}).get("tunnels", [])
        checked = " checked" if on else ""
        cards.append(
            f'<article class="switch {"on" if on else "off"}" id="switch-{name}" data-switch="{name}">'
            f'<label class="toggle"><input type="checkbox" role="switch" name="{name}"{checked} disabled'
            f' aria-describedby="what-{name} note-{name}"><span class="slider" aria-hidden="true"></span>'
            f'<span class="title">{_e(title)}</span></label>'
            f'<span class="state">{"ON" if on else "OFF"}</span>'
            f'<p class="what" id="what-{name}">{_e(what)}</p>'
            f'<p class="note" id="note-{name}">{_e(note)}</p>'
            f'<p class="tunnels">live tunnels: <b class="tunnel-count">{len(tunnels)}</b></p></article>'
        )
    tunnel_rows = [{"switch": name, **t} for name, h in sorted(helpers.items()) for t in h["tunnels"]
                   if isinstance(t, dict)]
    total, protos = metrics.flows_by_proto(status)
    flow_summary = _e(proto_summary(protos))
    replacements = {
        "uptime": _e(_duration(status.get("uptime"))),
        "config": _e(status.get("config_path") or "?"),
        "interfaces": _e(interfaces_text(status.get("interfaces"))),
        "flow_total": _e(total if total is not None else len(flows)),
        "switches": "".join(cards),
        "counters": _pairs(status.get("counters"), "counter", "value", "no counters yet"),
        "drops": _pairs(status.get("drops"), "reason", "packets", "no drops"),
        "tunnels": _table(tunnel_rows, "no live tunnels"),
        "flow_summary": flow_summary,
        "flows": _table(flows, "no connections"),
        "flow_limit": str(PAGE_FLOW_LIMIT),
        "writable": "true" if writable else "false",
        "mode_note": ("Switches change with JavaScript and the admin token (on the Unix socket: no token)."
                      if writable else "Read-only: no admin token, change switches with 'natpass switch'."),
        "generated": _e(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())),
    }
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    for key, value in replacements.items():
        template = template.replace("{{" + key + "}}", value)
    return template
