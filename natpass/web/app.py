"""The admin web app (Starlette): login, pages, JSON API, /metrics, health probe.

Every call into the router goes through :class:`RouterControl`, whose methods queue onto the
packet loop; the app serialises them (one at a time) and caches status reads for a second, so a
client hammering the API costs the packet loop at most one status collection per second.

Refusals (documented in docs/ADMIN.md, each changes nothing):

    status  why
    303     a page without a session (redirect to /login)
    400     malformed body or query
    401     API without a session or token, wrong password, bad token, expired session
    403     missing or wrong CSRF token, foreign or null Origin, /metrics not from loopback
    404     unknown switch, token, config version or path
    409     a change that opens an exposure, sent without "confirm": true
    411     a body without Content-Length
    413     a body over the size bound (backups and captures have their own, larger bounds)
    415     a body of the wrong type (not JSON, not a pcap/pcapng capture)
    422     a config, backup or capture that is refused whole, with the reason (and line)
    421     a Host that is not an IP address, localhost or this machine's name (DNS rebinding)
    429     too many failed logins from this address (Retry-After says how long)
    503     the router did not answer in time, or a diagnosis is already running
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from natpass.diagnose.api import DiagnoseRequestError, diagnose_upload
from natpass.nat.config import SWITCHES
from natpass.router.auth import Auth, AuthError, Session, csrf_ok
from natpass.router.config import ConfigError, RouterConfig
from natpass.router.settings import EXPOSURES, BackupError, ConfigChange, SwitchResult
from natpass.web import pages
from natpass.web.errors import WebError
from natpass.web.history import EventLog, TrafficHistory
from natpass.web.labels import SWITCH_TITLES
from natpass.web.openapi import OPENAPI
from natpass.web.prometheus import CONTENT_TYPE as METRICS_TYPE
from natpass.web.prometheus import render as render_metrics

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
REQUESTS_PER_S = 20.0  # per source address; a page view is three requests
REQUEST_BURST = 40
FLOOD_LOG_EVERY = 60.0
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STATIC_DIR = Path(__file__).resolve().parent / "static"

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make browsers send "Origin: null"
    (b"cache-control", b"no-store"),
    (b"content-security-policy",
     b"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
     b"base-uri 'none'; frame-ancestors 'none'"),
]

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


def host_allowed(host_header: str, extra: tuple[str, ...] = ()) -> bool:
    """IP literals, localhost, this machine's name and ``extra`` (a name a DNS-rebinding page
    could point at this router is anything else)."""
    host = host_header.strip()
    if not host:
        return False
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    if ":" in host and not host.startswith("[") and host.count(":") == 1 and not host.rpartition(":")[2].isdigit():
        return False
    name = name.lower().rstrip(".")
    if name in ("localhost", socket.gethostname().lower(), *(e.lower() for e in extra)):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


class Pacer:
    """At most ``rate`` requests per second per source address after a burst of ``burst`` (GCRA):
    a request over the budget waits for its slot, and is refused (429) when that is more than
    ``max_wait`` away. Waiting costs the router nothing, so a hammering client gets slower, not
    more of the router's CPU (the web app shares the interpreter with the packet loop)."""

    def __init__(self, rate: float = REQUESTS_PER_S, burst: int = REQUEST_BURST, max_wait: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, limit: int = 4096) -> None:
        self.interval = 1.0 / rate
        self.tau = burst * self.interval
        self.max_wait = max_wait
        self.clock = clock
        self.limit = limit
        self._tat: OrderedDict[str, float] = OrderedDict()

    def delay(self, source: str) -> float | None:
        """Seconds this request must wait (0: none), or None when it is to be refused."""
        now = self.clock()
        tat = max(self._tat.pop(source, now), now)
        wait = tat - now - self.tau
        if wait > self.max_wait:
            self._tat[source] = tat
            return None
        self._tat[source] = tat + self.interval
        while len(self._tat) > self.limit:
            self._tat.popitem(last=False)
        return max(0.0, wait)


class Guard:
    """Host, Origin and body-size checks before anything is routed, plus the security headers
    on every answer."""

    def __init__(self, app: ASGIApp, web: WebState) -> None:
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        refusal = self.check(scope, headers)
        if refusal is None:
            wait = self.web.pacer.delay(_client(scope))
            if wait is None:
                response = error_response(scope["path"], WebError(429, "too many requests from this address",
                                                                  {"Retry-After": "5"}))
                self.web.flooded(_client(scope))
                await response(scope, receive, send_with_headers)
                return
            if wait > 0:
                await asyncio.sleep(wait)
        if refusal is not None:
            self.web.refused(scope["method"], scope["path"], _client(scope), refusal)
            response = error_response(scope["path"], refusal, self.web)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def check(self, scope: Scope, headers: dict[str, str]) -> WebError | None:
        host = headers.get("host", "")
        if not host_allowed(host, self.web.options.extra_hosts):
            return WebError(421, f"unexpected Host {host!r}: use the router's IP address")
        origin = headers.get("origin")
        if origin is not None:
            scheme = "https" if self.web.options.tls else "http"
            if origin == "null" or origin.lower() != f"{scheme}://{host}".lower():
                return WebError(403, "cross-origin request refused")
        if scope["method"] in UNSAFE:
            length = headers.get("content-length")
            if length is None:
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    return WebError(411, "send a Content-Length, not chunked")
            elif not length.isdigit():
                return WebError(400, "bad Content-Length")
            elif int(length) > (limit := self.web.options.body_limit(scope["path"])):
                return WebError(413, f"body larger than {limit} bytes")
        return None


def error_response(path: str, exc: WebError, web: WebState | None = None) -> Response:
    if is_api(path):
        return JSONResponse({"error": exc.message, "status": exc.status, **exc.extra}, exc.status,
                            headers=exc.headers)
    return HTMLResponse(pages.error_page(exc.status, exc.message), exc.status, headers=exc.headers)


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

    # ----- calls into the router (one at a time, off the event loop) ---------------------------
    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._lock.acquire(timeout=DAEMON_TIMEOUT):
            raise WebError(503, f"the router did not answer within {DAEMON_TIMEOUT:.0f} s")
        try:
            return fn(*args)
        finally:
            self._lock.release()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await run_in_threadpool(self._locked, fn, *args)

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
    source = _client(request.scope)
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


# ----- the app -------------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


def create_app(control: RouterControl, auth: Auth, options: WebOptions | None = None,
               usage_path: str | None = None, sample_every: float | None = None) -> Starlette:
    """The admin web app for ``control``; ``sample_every`` starts the traffic sampler."""
    web = WebState(control, auth, options or WebOptions(), usage_path)
    views = pages.Views(web)

    def endpoint(fn: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            try:
                return await fn(request)
            except WebError as exc:
                login_failure = exc.status == 401 and request.url.path in ("/login", "/api/login")
                if (exc.status in (401, 403, 404, 409, 413, 415, 429) or exc.status >= 500) and not login_failure:
                    web.refused(request.method, request.url.path, _client(request.scope), exc)
                if exc.status == 303:
                    return RedirectResponse(exc.headers["Location"], 303)
                return error_response(request.url.path, exc, web)
        return wrapped

    # ----- login / logout ------------------------------------------------------------------------
    def attempt_login(request: Request, password: str) -> Session:
        source = _client(request.scope)
        wait = web.auth.limiter.wait(source)
        if wait > 0:
            raise WebError(429, f"too many failed logins from this address: wait {int(wait) + 1} s",
                           {"Retry-After": str(int(wait) + 1)})
        try:
            ok = web.auth.password.verify(password)
        except AuthError as exc:
            raise WebError(503, str(exc)) from None
        if not ok:
            delay = web.auth.limiter.failure(source)
            web.log.add("login-failed", "wrong password", source)
            log.warning("admin web: failed login from %s (%d failures%s)", source,
                        web.auth.limiter.failures(source), f", next try in {delay:.0f} s" if delay else "")
            raise WebError(401, "wrong password")
        web.auth.limiter.success(source)
        session = web.auth.sessions.create("admin", source)
        web.log.add("login", "admin logged in", source)
        log.info("admin web: login from %s", source)
        return session

    def set_cookie(response: Response, session: Session) -> None:
        response.set_cookie(SESSION_COOKIE, session.id, httponly=True, samesite="strict",
                            secure=web.options.tls, path="/")

    @endpoint
    async def login_page(request: Request) -> Response:
        if principal(web, request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), 303)
        note = "Your session has expired: log in again." if request.query_params.get("expired") else None
        return HTMLResponse(pages.login_page(request.query_params.get("next") or "/", note=note))

    @endpoint
    async def login_form(request: Request) -> Response:
        form = await read_form(request)
        target = safe_next(str(form.get("next") or "/"))
        try:
            session = await run_in_threadpool(attempt_login, request, str(form.get("password") or ""))
        except WebError as exc:
            if exc.status in (401, 429):
                if exc.status == 429:
                    web.refused(request.method, request.url.path, _client(request.scope), exc)
                return HTMLResponse(pages.login_page(target, error=exc.message), exc.status, headers=exc.headers)
            raise
        response = RedirectResponse(target, 303)
        set_cookie(response, session)
        return response

    @endpoint
    async def api_login(request: Request) -> Response:
        body = await read_json(request)
        password = body.get("password")
        if not isinstance(password, str):
            raise WebError(400, 'body must be {"password": "..."}')
        session = await run_in_threadpool(attempt_login, request, password)
        response = JSONResponse({"csrf": session.csrf, "idle_timeout": web.auth.sessions.idle,
                                 "lifetime": web.auth.sessions.lifetime})
        set_cookie(response, session)
        return response

    async def _logout(request: Request, given_csrf: str | None) -> Response | None:
        who = need_login(web, request)
        check_csrf(who, given_csrf)
        if who.session is not None:
            web.auth.sessions.drop(who.session.id)
            web.log.add("logout", "admin logged out", _client(request.scope))
        return None

    @endpoint
    async def logout_form(request: Request) -> Response:
        form = await read_form(request)
        await _logout(request, str(form.get("csrf") or ""))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @endpoint
    async def api_logout(request: Request) -> Response:
        await _logout(request, request.headers.get(CSRF_HEADER))
        response = JSONResponse({"logged_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ----- switches ----------------------------------------------------------------------------
    async def change_switch(request: Request, who: Principal, name: str, on: bool,
                            confirm: bool) -> SwitchResult:
        if name not in SWITCHES:
            known = ", ".join(SWITCHES)
            raise WebError(404, f"unknown switch {name!r} (one of {known}; strict is set in the config file)")
        exposure = EXPOSURES.get((name, on))
        if exposure and not confirm:
            raise WebError(409, "this change opens an exposure: send it again with confirm",
                           exposure=exposure, confirm_required=True)
        by = f"web {who.kind} {who.name}"
        try:
            result: SwitchResult = await web.call(
                functools.partial(web.control.change_switch, name, on, who=by))
        except ValueError as exc:
            raise WebError(404, str(exc)) from None
        web.forget_cache()
        state, torn = ("on" if on else "off"), result.torn_down
        web.log.add("switch", f"{SWITCH_TITLES[name]} passthrough {state} by {who.kind} {who.name}"
                    + (f" ({torn} tunnel(s) closed)" if torn else "")
                    + ("" if result.saved else f"; NOT saved: {result.save_error}"), _client(request.scope))
        log.info("admin web: passthrough %s %s by %s %s (%d tunnels torn down)", name, state, who.kind,
                 who.name, torn)
        return result

    @endpoint
    async def api_switch(request: Request) -> Response:
        who = need_login(web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        name = request.path_params["name"]
        if name not in SWITCHES:
            await change_switch(request, who, name, False, True)  # raises the 404
        body = await read_json(request)
        on, confirm = body.get("on"), body.get("confirm", False)
        if not isinstance(on, bool) or not isinstance(confirm, bool):
            raise WebError(400, 'body must be {"on": true|false} (and "confirm": true for an exposure)')
        result = await change_switch(request, who, name, on, confirm)
        return JSONResponse({**result.as_dict(), "undo": {"on": not on}})

    @endpoint
    async def form_switch(request: Request) -> Response:
        who = need_login(web, request)
        form = await read_form(request)
        check_csrf(who, str(form.get("csrf") or ""))
        name = request.path_params["name"]
        on_text = str(form.get("on") or "")
        if on_text not in ("1", "0"):
            raise WebError(400, "on must be 1 or 0")
        on = on_text == "1"
        confirm = str(form.get("confirm") or "") == "1"
        if name in SWITCHES and EXPOSURES.get((name, on)) and not confirm:
            assert who.session is not None or who.kind == "token"
            csrf = who.session.csrf if who.session else ""
            return HTMLResponse(pages.confirm_page(name, on, EXPOSURES[(name, on)], csrf))
        result = await change_switch(request, who, name, on, confirm)
        done: dict[str, Any] = {"done": name, "on": int(on), "torn": result.torn_down, "saved": int(result.saved)}
        if not result.saved:
            done["why"] = (result.save_error or "the config file was not written")[:300]
        return RedirectResponse(f"/passthrough?{urlencode(done)}#switch-{quote(name)}", 303)

    # ----- reload ------------------------------------------------------------------------------
    async def do_reload(request: Request, who: Principal) -> None:
        try:
            await web.call(functools.partial(web.control.reload, None, who=f"web {who.kind} {who.name}"))
        except ConfigError as exc:
            web.log.add("reload", f"reload refused: {exc}", _client(request.scope))
            raise WebError(422, f"config not reloaded, the running one is kept: {exc}", path=exc.path,
                           line=exc.line, message=exc.message) from None
        web.forget_cache()
        web.log.add("reload", f"config reloaded by {who.kind} {who.name}", _client(request.scope))
        log.info("admin web: config reloaded by %s %s", who.kind, who.name)

    @endpoint
    async def api_reload(request: Request) -> Response:
        who = need_login(web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        await read_json(request)
        await do_reload(request, who)
        return JSONResponse({"reloaded": True})

    @endpoint
    async def form_reload(request: Request) -> Response:
        who = need_login(web, request)
        form = await read_form(request)
        check_csrf(who, str(form.get("csrf") or ""))
        await do_reload(request, who)
        return RedirectResponse("/?reloaded=1", 303)

    # ----- backup, restore, history, rollback --------------------------------------------------
    def by(who: Principal) -> str:
        return f"web {who.kind} {who.name}"

    async def config_change(request: Request, who: Principal, what: str,
                            change: Callable[[], ConfigChange]) -> ConfigChange:
        """Run a restore or rollback; refused whole (422/404), the running config kept."""
        source = _client(request.scope)
        try:
            result = await web.call(change)
        except (ConfigError, BackupError) as exc:
            web.log.add("config", f"{what} refused: {exc}", source)
            log.warning("admin web: %s refused (%s %s): %s", what, who.kind, who.name, exc)
            raise WebError(422, f"config not changed, the running one is kept: {exc}", path=exc.path,
                           line=exc.line, message=exc.message) from None
        except KeyError as exc:
            raise WebError(404, f"no such config version: {exc.args[0] if exc.args else ''}") from None
        web.forget_cache()
        web.log.add("config", f"{what} by {who.kind} {who.name}: {result.summary}", source)
        log.info("admin web: %s by %s %s: %s", what, who.kind, who.name, result.summary)
        return result

    async def backup_text(who: Principal) -> Response:
        text = await web.call(functools.partial(web.control.backup, who=by(who)))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return Response(text.encode("utf-8"), media_type="application/toml; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="natpass-backup-{stamp}.toml"'})

    async def history() -> list[dict[str, Any]]:
        return await web.call(web.control.config_history)

    def restore(request: Request, who: Principal, data: bytes, name: str) -> Awaitable[ConfigChange]:
        return config_change(request, who, f"restore of {name}",
                             functools.partial(web.control.restore, data, name, who=by(who)))

    def rollback(request: Request, who: Principal, number: int | None) -> Awaitable[ConfigChange]:
        what = f"rollback to #{number}" if number is not None else "rollback"
        return config_change(request, who, what, functools.partial(web.control.rollback, number, who=by(who)))

    @endpoint
    async def api_backup(request: Request) -> Response:
        return await backup_text(need_login(web, request))

    @endpoint
    async def api_history(request: Request) -> Response:
        need_login(web, request)
        return JSONResponse({"versions": await history()})

    @endpoint
    async def api_restore(request: Request) -> Response:
        who = need_login(web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        body = await read_json(request, web.options.max_backup)
        text, name = body.get("backup"), body.get("name", "backup")
        if not isinstance(text, str) or not isinstance(name, str):
            raise WebError(400, 'body must be {"backup": "<the backup file\'s text>", "name": "<file name>"}')
        result = await restore(request, who, text.encode("utf-8"), Path(name).name[:128] or "backup")
        return JSONResponse({"restored": True, **result.as_dict()})

    @endpoint
    async def api_rollback(request: Request) -> Response:
        who = need_login(web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        body = await read_json(request)
        number = body.get("number")
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
            raise WebError(400, 'body must be {} or {"number": N} (N from /api/config/history)')
        result = await rollback(request, who, number)
        return JSONResponse({"rolled_back": True, **result.as_dict()})

    async def backup_page_for(who: Principal, flash: str = "", error: str = "", status: int = 200) -> Response:
        return HTMLResponse(views.backup(who, await history(), flash=flash, error=error), status)

    @endpoint
    async def backup_page(request: Request) -> Response:
        who = need_login(web, request)
        return await backup_page_for(who, flash=request.query_params.get("done", "")[:200])

    @endpoint
    async def backup_download(request: Request) -> Response:
        return await backup_text(need_login(web, request))

    async def page_refusal(who: Principal, change: Awaitable[ConfigChange]) -> Response | ConfigChange:
        try:
            return await change
        except WebError as exc:
            if exc.status != 422:
                raise
            return await backup_page_for(who, error=exc.message, status=422)

    @endpoint
    async def form_restore(request: Request) -> Response:
        who = need_login(web, request)
        data, name, form = await read_upload(request, "backup", web.options.max_backup)
        check_csrf(who, str(form.get("csrf") or ""))
        result = await page_refusal(who, restore(request, who, data, name))
        if isinstance(result, Response):
            return result
        return RedirectResponse("/backup?" + urlencode({"done": f"Restored {name}: {result.summary}"}), 303)

    @endpoint
    async def form_rollback(request: Request) -> Response:
        who = need_login(web, request)
        form = await read_form(request)
        check_csrf(who, str(form.get("csrf") or ""))
        text = str(form.get("number") or "")
        if not text.isdigit():
            raise WebError(400, "number must be a version number from the history")
        result = await page_refusal(who, rollback(request, who, int(text)))
        if isinstance(result, Response):
            return result
        return RedirectResponse("/backup?" + urlencode({"done": f"Back to version #{text}: {result.summary}"}), 303)

    # ----- diagnose ----------------------------------------------------------------------------
    async def run_diagnosis(request: Request, who: Principal, data: bytes, name: str,
                            vantage: str | None) -> dict[str, Any]:
        kind = capture_type(data)
        if not web.diagnosing.acquire(blocking=False):
            raise WebError(503, "a diagnosis is already running: try again when it is done", {"Retry-After": "5"})
        try:
            # A worker thread: diagnose is CPU-bound and must not stall the event loop (the packet
            # loop is another thread and never sees this work).
            report = await run_in_threadpool(diagnose_upload, data, name, vantage)
        except DiagnoseRequestError as exc:
            web.log.add("diagnose", f"{kind} {name!r} refused: {exc}", _client(request.scope))
            raise WebError(422, f"capture not diagnosed: {exc}") from None
        finally:
            web.diagnosing.release()
        web.log.add("diagnose", f"{kind} {name!r} ({len(data)} bytes) diagnosed by {who.kind} {who.name}: "
                    f"{len(report.get('findings') or [])} finding(s)", _client(request.scope))
        out: dict[str, Any] = jsonable(report)
        return out

    @endpoint
    async def api_diagnose(request: Request) -> Response:
        who = need_login(web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        data = await request.body()
        if len(data) > web.options.max_capture:
            raise WebError(413, f"body larger than {web.options.max_capture} bytes")
        name = Path(request.query_params.get("name") or "upload.pcap").name[:128] or "upload.pcap"
        report = await run_diagnosis(request, who, data, name, request.query_params.get("vantage") or None)
        return JSONResponse(report)

    @endpoint
    async def diagnose_page(request: Request) -> Response:
        who = need_login(web, request)
        return HTMLResponse(views.diagnose(who))

    @endpoint
    async def form_diagnose(request: Request) -> Response:
        who = need_login(web, request)
        data, name, form = await read_upload(request, "capture", web.options.max_capture)
        check_csrf(who, str(form.get("csrf") or ""))
        vantage = str(form.get("vantage") or "") or None
        try:
            report = await run_diagnosis(request, who, data, name, vantage)
        except WebError as exc:
            if exc.status not in (415, 422):
                raise
            web.refused(request.method, request.url.path, _client(request.scope), exc)
            return HTMLResponse(views.diagnose(who, error=exc.message), exc.status)
        return HTMLResponse(views.diagnose(who, report=report))

    # ----- tokens ------------------------------------------------------------------------------
    def token_list() -> list[dict[str, Any]]:
        try:
            return [{"name": t.name, "created": t.created, "last_used": t.last_used}
                    for t in web.auth.tokens.list()]
        except AuthError as exc:
            raise WebError(503, str(exc)) from None

    def create_token(request: Request, who: Principal, name: str) -> str:
        try:
            secret = web.auth.tokens.create(name)
        except AuthError as exc:
            raise WebError(400, str(exc)) from None
        web.log.add("token", f"API token {name!r} created by {who.kind} {who.name}", _client(request.scope))
        return secret

    def revoke_token(request: Request, who: Principal, name: str) -> None:
        try:
            found = web.auth.tokens.revoke(name)
        except AuthError as exc:
            raise WebError(503, str(exc)) from None
        if not found:
            raise WebError(404, f"no API token named {name!r}")
        web.log.add("token", f"API token {name!r} revoked by {who.kind} {who.name}", _client(request.scope))

    @endpoint
    async def api_tokens(request: Request) -> Response:
        who = need_login(web, request)
        if request.method == "GET":
            return JSONResponse({"tokens": token_list()})
        check_csrf(who, request.headers.get(CSRF_HEADER))
        body = await read_json(request)
        name = body.get("name")
        if not isinstance(name, str):
            raise WebError(400, 'body must be {"name": "..."}')
        secret = create_token(request, who, name)
        return JSONResponse({"name": name, "token": secret}, 201)

    @endpoint
    async def api_token_delete(request: Request) -> Response:
        who = need_login(web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        revoke_token(request, who, request.path_params["name"])
        return JSONResponse({"revoked": request.path_params["name"]})

    @endpoint
    async def tokens_page(request: Request) -> Response:
        who = need_login(web, request)
        return HTMLResponse(views.tokens(who, token_list()))

    @endpoint
    async def form_tokens(request: Request) -> Response:
        who = need_login(web, request)
        form = await read_form(request)
        check_csrf(who, str(form.get("csrf") or ""))
        action = str(form.get("action") or "")
        name = str(form.get("name") or "")
        if action == "create":
            secret = create_token(request, who, name)
            return HTMLResponse(views.tokens(who, token_list(), created=(name, secret)))
        if action == "revoke":
            revoke_token(request, who, name)
            return RedirectResponse("/tokens", 303)
        raise WebError(400, "action must be create or revoke")

    # ----- reading -----------------------------------------------------------------------------
    @endpoint
    async def api_status(request: Request) -> Response:
        need_login(web, request)
        return JSONResponse(jsonable(await web.status()))

    @endpoint
    async def api_flows(request: Request) -> Response:
        need_login(web, request)
        query = pages.FlowQuery.parse(request.query_params, default_size=DEFAULT_FLOW_LIMIT)
        rows = await web.flows()
        shown, total = query.apply(rows, web.control.clock())
        return JSONResponse(jsonable({"flows": shown, "limit": query.size, "total": total, "page": query.page}))

    @endpoint
    async def api_log(request: Request) -> Response:
        need_login(web, request)
        entries = await run_in_threadpool(views.log_entries)
        return JSONResponse({"log": entries})

    @endpoint
    async def api_health(request: Request) -> Response:
        try:
            await asyncio.wait_for(web.status(), timeout=5.0)
        except (TimeoutError, WebError, Exception) as exc:  # a probe says no, it never fails
            return JSONResponse({"ok": False, "error": type(exc).__name__}, 503)
        return JSONResponse({"ok": True})

    @endpoint
    async def api_openapi(request: Request) -> Response:
        need_login(web, request)
        return JSONResponse(OPENAPI)

    @endpoint
    async def metrics_endpoint(request: Request) -> Response:
        if web.options.metrics_access == "loopback":
            try:
                loopback = ipaddress.ip_address(_client(request.scope)).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise WebError(403, "metrics are served to loopback clients only (metrics_access)")
        else:
            need_login(web, request)
        body = render_metrics(await web.status())
        return Response(body, media_type=METRICS_TYPE)

    # ----- pages -------------------------------------------------------------------------------
    def page(render: Callable[[Principal, Request, dict[str, Any]], Awaitable[str]]) -> Handler:
        @endpoint
        async def handler(request: Request) -> Response:
            who = need_login(web, request)
            st = await web.status()
            return HTMLResponse(await render(who, request, jsonable(st)))
        return handler

    async def status_view(who: Principal, request: Request, st: dict[str, Any]) -> str:
        return await run_in_threadpool(views.status, who, st, request.query_params)

    async def passthrough_view(who: Principal, request: Request, st: dict[str, Any]) -> str:
        return await run_in_threadpool(views.passthrough, who, st, request.query_params)

    async def connections_view(who: Principal, request: Request, st: dict[str, Any]) -> str:
        query = pages.FlowQuery.parse(request.query_params, default_size=PAGE_SIZE)
        rows = await web.flows()
        return views.connections(who, query, rows)

    async def log_view(who: Principal, request: Request, st: dict[str, Any]) -> str:
        return await run_in_threadpool(views.log, who)

    @endpoint
    async def not_found(request: Request) -> Response:
        raise WebError(404, f"no such page: {request.url.path}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(sampler(web, sample_every)) if sample_every else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    routes = [
        Route("/api/health", api_health, methods=["GET"]),
        Route("/api/login", api_login, methods=["POST"]),
        Route("/api/logout", api_logout, methods=["POST"]),
        Route("/api/status", api_status, methods=["GET"]),
        Route("/api/flows", api_flows, methods=["GET"]),
        Route("/api/log", api_log, methods=["GET"]),
        Route("/api/switch/{name}", api_switch, methods=["POST"]),
        Route("/api/reload", api_reload, methods=["POST"]),
        Route("/api/tokens", api_tokens, methods=["GET", "POST"]),
        Route("/api/tokens/{name}", api_token_delete, methods=["DELETE"]),
        Route("/api/config/backup", api_backup, methods=["GET"]),
        Route("/api/config/history", api_history, methods=["GET"]),
        Route("/api/config/restore", api_restore, methods=["POST"]),
        Route("/api/config/rollback", api_rollback, methods=["POST"]),
        Route("/api/diagnose", api_diagnose, methods=["POST"]),
        Route("/api/openapi.json", api_openapi, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/favicon.ico", lambda request: Response(status_code=204), methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_form, methods=["POST"]),
        Route("/logout", logout_form, methods=["POST"]),
        Route("/", page(status_view), methods=["GET"]),
        Route("/passthrough", page(passthrough_view), methods=["GET"]),
        Route("/passthrough/{name}", form_switch, methods=["POST"]),
        Route("/connections", page(connections_view), methods=["GET"]),
        Route("/log", page(log_view), methods=["GET"]),
        Route("/reload", form_reload, methods=["POST"]),
        Route("/backup", backup_page, methods=["GET"]),
        Route("/backup/download", backup_download, methods=["GET"]),
        Route("/backup/restore", form_restore, methods=["POST"]),
        Route("/backup/rollback", form_rollback, methods=["POST"]),
        Route("/diagnose", diagnose_page, methods=["GET"]),
        Route("/diagnose", form_diagnose, methods=["POST"]),
        Route("/tokens", tokens_page, methods=["GET"]),
        Route("/tokens", form_tokens, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    async def not_found_handler(request: Request, exc: Exception) -> Response:
        return await not_found(request)

    app = Starlette(routes=routes, middleware=[Middleware(Guard, web=web)], lifespan=lifespan,
                    exception_handlers={404: not_found_handler, 405: _method_not_allowed})
    app.state.web = web
    return app


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(request.url.path, WebError(405, f"{request.method} is not allowed here"))


async def sampler(web: WebState, every: float) -> None:
    """Read the status every ``every`` seconds so the traffic graph has its hour."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(Exception):  # a busy or stopping router skips a sample
            if web.history.due(web.control.clock()):
                await web.status()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        return str(ipaddress.IPv4Address(raw)) if len(raw) == 4 else raw.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def jsonable(value: Any) -> Any:
    """What the engine reports, made JSON-safe (addresses as dotted quads)."""
    return json.loads(json.dumps(value, default=_json_default, allow_nan=False))

