"""Reading: status, connections, log, health probe, OpenAPI, /metrics and the read-only pages."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from natpass.web.context import (
    DEFAULT_FLOW_LIMIT,
    PAGE_SIZE,
    Handler,
    Principal,
    Routes,
    client_address,
    jsonable,
    need_login,
)
from natpass.web.errors import WebError
from natpass.web.flowlist import FlowQuery
from natpass.web.openapi import OPENAPI
from natpass.web.prometheus import CONTENT_TYPE as METRICS_TYPE
from natpass.web.prometheus import render as render_metrics

log = logging.getLogger("natpass.admin")


class StatusRoutes(Routes):
    """Read-only handlers and pages."""

    async def api_status(self, request: Request) -> Response:
        need_login(self.web, request)
        return JSONResponse(jsonable(await self.web.status()))

    async def api_flows(self, request: Request) -> Response:
        need_login(self.web, request)
        query = FlowQuery.parse(request.query_params, default_size=DEFAULT_FLOW_LIMIT)
        rows = await self.web.flows()
        shown, total = query.apply(rows, self.web.control.clock())
        return JSONResponse(jsonable({"flows": shown, "limit": query.size, "total": total, "page": query.page}))

    async def api_log(self, request: Request) -> Response:
        need_login(self.web, request)
        entries = await run_in_threadpool(self.views.log_entries)
        return JSONResponse({"log": entries})

    async def api_health(self, request: Request) -> Response:
        try:
            await asyncio.wait_for(self.web.status(), timeout=5.0)
        except (TimeoutError, WebError, Exception) as exc:  # a probe says no, it never fails
            return JSONResponse({"ok": False, "error": type(exc).__name__}, 503)
        return JSONResponse({"ok": True})

    async def api_openapi(self, request: Request) -> Response:
        need_login(self.web, request)
        return JSONResponse(OPENAPI)

    async def metrics_endpoint(self, request: Request) -> Response:
        if self.web.options.metrics_access == "loopback":
            try:
                loopback = ipaddress.ip_address(client_address(request.scope)).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise WebError(403, "metrics are served to loopback clients only (metrics_access)")
        else:
            need_login(self.web, request)
        body = render_metrics(await self.web.status())
        return Response(body, media_type=METRICS_TYPE)

    # ----- pages -------------------------------------------------------------------------------
    def page(self, render: Callable[[Principal, Request, dict[str, Any]], Awaitable[str]]) -> Handler:
        async def handler(request: Request) -> Response:
            who = need_login(self.web, request)
            st = await self.web.status()
            return HTMLResponse(await render(who, request, jsonable(st)))
        return handler

    async def status_view(self, who: Principal, request: Request, st: dict[str, Any]) -> str:
        return await run_in_threadpool(self.views.status, who, st, request.query_params)

    async def passthrough_view(self, who: Principal, request: Request, st: dict[str, Any]) -> str:
        return await run_in_threadpool(self.views.passthrough, who, st, request.query_params)

    async def connections_view(self, who: Principal, request: Request, st: dict[str, Any]) -> str:
        query = FlowQuery.parse(request.query_params, default_size=PAGE_SIZE)
        rows = await self.web.flows()
        return self.views.connections(who, query, rows)

    async def log_view(self, who: Principal, request: Request, st: dict[str, Any]) -> str:
        return await run_in_threadpool(self.views.log, who)

