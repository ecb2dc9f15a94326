"""What the routes of the admin web app share: the router seam, options, the shared state, who is
asking, request readers and the error answer.

:class:`Context` is what each route module gets; its :meth:`Context.endpoint` turns a handler's
:class:`WebError` into the documented refusal (and logs the ones worth logging).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import Scope

from natpass.router.admin import json_default
from natpass.router.auth import Auth, Session, csrf_ok
from natpass.router.config import RouterConfig
from natpass.router.forwards import ForwardResult, ForwardSpec
from natpass.router.settings import ConfigChange, SwitchResult
from natpass.web import frame
from natpass.web.errors import WebError
from natpass.web.history import EventLog, TrafficHistory
from natpass.web.pacing import Pacer

if TYPE_CHECKING:
    from natpass.web.pages import Views

log = logging.getLogger("natpass.admin")

SESSION_COOKIE = "natpass_session"
CSRF_HEADER = "x-csrf-token"
MAX_BODY = 64 * 1024
MAX_BACKUP = 256 * 1024  # a config file is a few KiB; a backup upload is bounded well above that
MAX_CAPTURE = 20 * 1024 * 1024
CAPTURE_MAGIC = (b"\xa1\xb2\xc3\xd4", b"\xd4\xc3\xb2\xa1",  # pcap, microseconds (either byte order)
                 b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1",  # pcap, nanoseconds
                 b"\x0a\x0d\x0d\x0a")                           # pcapng section header block
STATUS_CACHE_S = 1.0
DAEMON_TIMEOUT = 15.0
MAX_FLOWS_READ = 10_000
DEFAULT_FLOW_LIMIT = 200
PAGE_SIZE = 50
FLOOD_LOG_EVERY = 60.0

T = TypeVar("T")


class RouterControl(Protocol):
    """What the web app needs from the running router (RouterDaemon provides it). Each method
    runs its work on the packet loop and may block until the loop gets to it."""

    @property
    def config(self) -> RouterConfig: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    def status(self) -> dict[str, Any]: ...

    def flows(self, limit: int = ...) -> list[dict[str, Any]]: ...

    def change_switch(self, name: str, on: bool, *, runtime_only: bool = False,
                      who: str = "api") -> SwitchResult: ...

    def reload(self, path: str | None = None, who: str = "reload") -> ConfigChange: ...

    def backup(self, who: str = "api") -> str: ...

    def config_history(self) -> list[dict[str, Any]]: ...

    def restore(self, data: bytes, source: str, who: str = "restore") -> ConfigChange: ...

    def rollback(self, number: int | None = None, who: str = "rollback") -> ConfigChange: ...

    def forwards(self) -> list[dict[str, Any]]: ...

    def add_forward(self, spec: ForwardSpec, *, runtime_only: bool = False, who: str = "api") -> ForwardResult: ...

    def remove_forward(self, proto: str, port: int, wan_address: str | None = None, *,
                       runtime_only: bool = False, who: str = "api") -> ForwardResult: ...


@dataclass(frozen=True, slots=True)
class WebOptions:
    tls: bool = False
    metrics_access: str = "token"  # "token" | "loopback"
    max_body: int = MAX_BODY
    extra_hosts: tuple[str, ...] = ()
    max_backup: int = MAX_BACKUP
    max_capture: int = MAX_CAPTURE

    def body_limit(self, path: str) -> int:
        """The size bound of a request body to ``path``."""
        if path in ("/diagnose", "/api/diagnose"):
            return self.max_capture
        if path in ("/backup/restore", "/api/config/restore"):
            return self.max_backup
        return self.max_body


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "session" | "token" | "loopback"
    name: str
    session: Session | None = None



def is_api(path: str) -> bool:
    return path.startswith("/api/") or path == "/metrics"


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


def error_response(path: str, exc: WebError, web: WebState | None = None) -> Response:
    if is_api(path):
        return JSONResponse({"error": exc.message, "status": exc.status, **exc.extra}, exc.status,
                            headers=exc.headers)
    return HTMLResponse(frame.error_page(exc.status, exc.message), exc.status, headers=exc.headers)



class WebState:
    """Everything the routes share: the router, auth, caches, history and the log."""

    def __init__(self, control: RouterControl, auth: Auth, options: WebOptions,
                 usage_path: str | None = None) -> None:
        self.control = control
        self.auth = auth
        self.options = options
        self.usage_path = usage_path
        self.history = TrafficHistory()
        self.pacer = Pacer()
        self._flood_said: dict[str, float] = {}
        self.log = EventLog()
        self.started = time.time()
        self._lock = threading.Lock()
        self._status: tuple[float, dict[str, Any]] | None = None
        self._flows: tuple[float, list[dict[str, Any]]] | None = None
        self.diagnosing = threading.Semaphore(1)  # one capture at a time: diagnose is CPU-bound
        self._password_seen = self._password_stamp()

    # ----- the password file ---------------------------------------------------------------------
    def _password_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.auth.password.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def check_password_change(self) -> None:
        """End every session when the password file changed since the last look (``natpass
        passwd`` writes a new one): no session outlives the password it was opened with."""
        stamp = self._password_stamp()
        if stamp == self._password_seen:
            return
        self._password_seen = stamp
        ended = self.auth.sessions.drop_all()
        if ended:
            self.log.add("logout", f"{ended} session(s) ended: the admin password was changed", "router")
            log.warning("admin web: the admin password was changed: %d session(s) ended", ended)

    # ----- calls into the router (one at a time, off the event loop) ---------------------------
    def call_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the calling (worker) thread, one router call at a time."""
        if not self._lock.acquire(timeout=DAEMON_TIMEOUT):
            raise WebError(503, f"the router did not answer within {DAEMON_TIMEOUT:.0f} s")
        try:
            return fn(*args)
        finally:
            self._lock.release()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await run_in_threadpool(self.call_blocking, fn, *args)

    def _status_now(self) -> dict[str, Any]:
        now = self.control.clock()
        cached = self._status
        if cached is not None and 0 <= now - cached[0] < STATUS_CACHE_S:
            return cached[1]
        st = self.control.status()
        self._status = (now, st)
        self.history.add(now, st)
        return st

    async def status(self) -> dict[str, Any]:
        return await self.call(self._status_now)

    def _flows_now(self) -> list[dict[str, Any]]:
        now = self.control.clock()
        cached = self._flows
        if cached is not None and 0 <= now - cached[0] < STATUS_CACHE_S:
            return cached[1]
        rows = list(self.control.flows(MAX_FLOWS_READ))
        self._flows = (now, rows)
        return rows

    async def flows(self) -> list[dict[str, Any]]:
        return await self.call(self._flows_now)

    def forget_cache(self) -> None:
        self._status = None
        self._flows = None

    # ----- log ---------------------------------------------------------------------------------
    def flooded(self, source: str) -> None:
        """A source over its request budget: said once a minute, not once a request."""
        now = time.monotonic()
        if now - self._flood_said.get(source, -FLOOD_LOG_EVERY) >= FLOOD_LOG_EVERY:
            self._flood_said[source] = now
            if len(self._flood_said) > 1024:
                self._flood_said.clear()
            self.refused("*", "*", source, WebError(429, "too many requests from this address (said once a minute)"))

    def refused(self, method: str, path: str, source: str, exc: WebError) -> None:
        self.log.add("refused", f"{method} {path}: {exc.status} {exc.message}", source)
        log.warning("admin web: refused %s %s from %s: %d %s", method, path, source, exc.status, exc.message)


# ----- who is asking -------------------------------------------------------------------------



def _bearer(request: Request) -> str | None:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def principal(web: WebState, request: Request) -> Principal | None:
    """The session or token behind a request; a wrong token is refused outright (401/429)."""
    source = client_address(request.scope)
    token = _bearer(request)
    if token is not None:
        wait = web.auth.limiter.wait(source)
        if wait > 0:
            raise WebError(429, "too many failed attempts from this address", {"Retry-After": str(int(wait) + 1)})
        name = web.auth.tokens.verify(token)
        if name is None:
            web.auth.limiter.failure(source)
            web.log.add("login-failed", "API token refused", source)
            log.warning("admin web: API token refused from %s", source)
            raise WebError(401, "unknown or revoked API token", {"WWW-Authenticate": 'Bearer realm="natpass"'})
        return Principal("token", name)
    web.check_password_change()
    session = web.auth.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        return Principal("session", session.user, session)
    return None


def need_login(web: WebState, request: Request) -> Principal:
    who = principal(web, request)
    if who is not None:
        return who
    expired = SESSION_COOKIE in request.cookies
    message = "session expired: log in again" if expired else "log in first (session cookie or API token)"
    if is_api(request.url.path):
        raise WebError(401, message, {"WWW-Authenticate": 'Bearer realm="natpass"'})
    query = {"next": request.url.path + (f"?{request.url.query}" if request.url.query else "")}
    if expired:
        query["expired"] = "1"
    raise WebError(303, message, {"Location": "/login?" + urlencode(query)})


def check_csrf(who: Principal, given: str | None) -> None:
    """Sessions must echo their CSRF token on every change; tokens are never sent by a browser
    on its own, so they need none."""
    if who.session is not None and not csrf_ok(who.session, given):
        raise WebError(403, "missing or wrong CSRF token (reload the page and try again)")


async def read_json(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise WebError(415, "send JSON (Content-Type: application/json)")
    raw = await request.body()
    if len(raw) > limit:
        raise WebError(413, f"body larger than {limit} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebError(400, f"bad JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WebError(400, "the body must be a JSON object")
    return body


async def read_form(request: Request) -> FormData:
    try:
        return await request.form(max_files=0, max_fields=20, max_part_size=MAX_BODY)
    except Exception as exc:  # multipart parse errors come in several types
        raise WebError(400, f"bad form: {exc}") from None


async def read_upload(request: Request, field: str, limit: int) -> tuple[bytes, str, FormData]:
    """The file in multipart field ``field`` (at most ``limit`` bytes), its name and the form."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        raise WebError(415, "send the file as a form upload (multipart/form-data)")
    try:
        form = await request.form(max_files=1, max_fields=10, max_part_size=MAX_BODY)
    except Exception as exc:  # multipart parse errors come in several types
        raise WebError(400, f"bad form: {exc}") from None
    upload = form.get(field)
    if upload is None or isinstance(upload, str):
        raise WebError(400, f"choose a file to upload (form field {field!r})")
    data = await upload.read(limit + 1)
    await upload.close()
    if len(data) > limit:
        raise WebError(413, f"file larger than {limit} bytes")
    name = Path(upload.filename or "upload").name[:128] or "upload"
    return data, name, form


def capture_type(data: bytes) -> str:
    """``pcap`` or ``pcapng`` from the magic number; anything else is refused (415) unparsed."""
    head = data[:4]
    if head == CAPTURE_MAGIC[-1]:
        return "pcapng"
    if head in CAPTURE_MAGIC:
        return "pcap"
    raise WebError(415, "not a packet capture: a pcap or pcapng file starts with its magic number "
                        "(save it from Wireshark or tcpdump -w)")


def safe_next(value: str | None) -> str:
    """A redirect target after login: a path on this router only."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    return parts.path + (f"?{parts.query}" if parts.query else "") if not parts.netloc else "/"




Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Context:
    """The shared state and page renderer handed to every route module."""

    web: WebState
    views: Views

    def endpoint(self, fn: Handler) -> Handler:
        """``fn`` with its WebError answered as the documented refusal (logged where it matters)."""
        web = self.web

        async def wrapped(request: Request) -> Response:
            try:
                return await fn(request)
            except WebError as exc:
                login_failure = exc.status == 401 and request.url.path in ("/login", "/api/login")
                if (exc.status in (401, 403, 404, 409, 413, 415, 429) or exc.status >= 500) and not login_failure:
                    web.refused(request.method, request.url.path, client_address(request.scope), exc)
                if exc.status == 303:
                    return RedirectResponse(exc.headers["Location"], 303)
                return error_response(request.url.path, exc, web)
        return wrapped


def by(who: Principal) -> str:
    """Who made a change, as the config history and the log name it."""
    return f"web {who.kind} {who.name}"


def jsonable(value: Any) -> Any:
    """What the engine reports, made JSON-safe (addresses as dotted quads)."""
    return json.loads(json.dumps(value, default=json_default, allow_nan=False))


class Routes:
    """One page's handlers: the shared context, its app state and its views
    (natpass.web.app wraps each handler with :meth:`Context.endpoint`)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.web = ctx.web
        self.views = ctx.views
