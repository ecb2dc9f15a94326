"""The admin web app (Starlette): login, pages, JSON API, /metrics, health probe.

This module assembles the app: the route table (the map of every URL), the checks before routing
(:mod:`natpass.web.guard`) and the traffic sampler. The handlers live in :mod:`natpass.web.routes`,
one module per page with its API; what they share is in :mod:`natpass.web.context`.

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
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from natpass.router.auth import Auth
from natpass.web import pages
from natpass.web.context import (
    MAX_BODY,
    MAX_CAPTURE,
    SESSION_COOKIE,
    Context,
    RouterControl,
    WebOptions,
    WebState,
    error_response,
)
from natpass.web.errors import WebError
from natpass.web.guard import Guard
from natpass.web.pacing import Pacer
from natpass.web.routes.auth import AuthRoutes
from natpass.web.routes.config import ConfigRoutes
from natpass.web.routes.diagnose import DiagnoseRoutes
from natpass.web.routes.forwards import ForwardRoutes
from natpass.web.routes.passthrough import PassthroughRoutes
from natpass.web.routes.status import StatusRoutes
from natpass.web.routes.tokens import TokenRoutes

STATIC_DIR = Path(__file__).resolve().parent / "static"

__all__ = ["MAX_BODY", "MAX_CAPTURE", "SESSION_COOKIE", "Pacer", "RouterControl", "WebOptions", "create_app"]


def create_app(control: RouterControl, auth: Auth, options: WebOptions | None = None,
               usage_path: str | None = None, sample_every: float | None = None) -> Starlette:
    """The admin web app for ``control``; ``sample_every`` starts the traffic sampler."""
    web = WebState(control, auth, options or WebOptions(), usage_path)
    ctx = Context(web, pages.Views(web))
    ep = ctx.endpoint
    login, switch, config = AuthRoutes(ctx), PassthroughRoutes(ctx), ConfigRoutes(ctx)
    diag, tokens, read = DiagnoseRoutes(ctx), TokenRoutes(ctx), StatusRoutes(ctx)
    forwards = ForwardRoutes(ctx)

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
        Route("/api/health", ep(read.api_health), methods=["GET"]),
        Route("/api/login", ep(login.api_login), methods=["POST"]),
        Route("/api/logout", ep(login.api_logout), methods=["POST"]),
        Route("/api/status", ep(read.api_status), methods=["GET"]),
        Route("/api/flows", ep(read.api_flows), methods=["GET"]),
        Route("/api/log", ep(read.api_log), methods=["GET"]),
        Route("/api/switch/{name}", ep(switch.api_switch), methods=["POST"]),
        Route("/api/reload", ep(config.api_reload), methods=["POST"]),
        Route("/api/forwards", ep(forwards.api_forwards), methods=["GET", "POST"]),
        Route("/api/forwards/{proto}/{port}", ep(forwards.api_forward_delete), methods=["DELETE"]),
        Route("/api/tokens", ep(tokens.api_tokens), methods=["GET", "POST"]),
        Route("/api/tokens/{name}", ep(tokens.api_token_delete), methods=["DELETE"]),
        Route("/api/config/backup", ep(config.api_backup), methods=["GET"]),
        Route("/api/config/history", ep(config.api_history), methods=["GET"]),
        Route("/api/config/restore", ep(config.api_restore), methods=["POST"]),
        Route("/api/config/rollback", ep(config.api_rollback), methods=["POST"]),
        Route("/api/diagnose", ep(diag.api_diagnose), methods=["POST"]),
        Route("/api/diagnose/live", ep(diag.api_diagnose_live), methods=["POST"]),
        Route("/api/openapi.json", ep(read.api_openapi), methods=["GET"]),
        Route("/metrics", ep(read.metrics_endpoint), methods=["GET"]),
        Route("/favicon.ico", lambda request: Response(status_code=204), methods=["GET"]),
        Route("/login", ep(login.login_page), methods=["GET"]),
        Route("/login", ep(login.login_form), methods=["POST"]),
        Route("/logout", ep(login.logout_form), methods=["POST"]),
        Route("/", ep(read.page(read.status_view)), methods=["GET"]),
        Route("/passthrough", ep(read.page(read.passthrough_view)), methods=["GET"]),
        Route("/passthrough/{name}", ep(switch.form_switch), methods=["POST"]),
        Route("/connections", ep(read.page(read.connections_view)), methods=["GET"]),
        Route("/log", ep(read.page(read.log_view)), methods=["GET"]),
        Route("/forwards", ep(forwards.page), methods=["GET"]),
        Route("/forwards", ep(forwards.form), methods=["POST"]),
        Route("/reload", ep(config.form_reload), methods=["POST"]),
        Route("/backup", ep(config.backup_page), methods=["GET"]),
        Route("/backup/download", ep(config.backup_download), methods=["GET"]),
        Route("/backup/restore", ep(config.form_restore), methods=["POST"]),
        Route("/backup/rollback", ep(config.form_rollback), methods=["POST"]),
        Route("/diagnose", ep(diag.diagnose_page), methods=["GET"]),
        Route("/diagnose", ep(diag.form_diagnose), methods=["POST"]),
        Route("/diagnose/live", ep(diag.form_diagnose_live), methods=["POST"]),
        Route("/tokens", ep(tokens.tokens_page), methods=["GET"]),
        Route("/tokens", ep(tokens.form_tokens), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    not_found_ep = ep(not_found)

    async def not_found_handler(request: Request, exc: Exception) -> Response:
        return await not_found_ep(request)

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
