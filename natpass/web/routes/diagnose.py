"""Capture upload and its diagnosis (a worker thread, one at a time)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from natpass.diagnose.api import DiagnoseRequestError, diagnose_upload
from natpass.web.context import (
    CSRF_HEADER,
    Context,
    Principal,
    capture_type,
    check_csrf,
    client_address,
    jsonable,
    need_login,
    read_upload,
)
from natpass.web.errors import WebError

log = logging.getLogger("natpass.admin")


class DiagnoseRoutes:
    """Capture upload handlers (natpass.web.app wraps each with :meth:`Context.endpoint`)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.web = ctx.web
        self.views = ctx.views

    async def run_diagnosis(self, request: Request, who: Principal, data: bytes, name: str,
                            vantage: str | None) -> dict[str, Any]:
        kind = capture_type(data)
        if not self.web.diagnosing.acquire(blocking=False):
            raise WebError(503, "a diagnosis is already running: try again when it is done", {"Retry-After": "5"})
        try:
            # A worker thread: diagnose is CPU-bound and must not stall the event loop (the packet
            # loop is another thread and never sees this work).
            report = await run_in_threadpool(diagnose_upload, data, name, vantage)
        except DiagnoseRequestError as exc:
            self.web.log.add("diagnose", f"{kind} {name!r} refused: {exc}", client_address(request.scope))
            raise WebError(422, f"capture not diagnosed: {exc}") from None
        finally:
            self.web.diagnosing.release()
        self.web.log.add("diagnose", f"{kind} {name!r} ({len(data)} bytes) diagnosed by {who.kind} {who.name}: "
                    f"{len(report.get('findings') or [])} finding(s)", client_address(request.scope))
        out: dict[str, Any] = jsonable(report)
        return out

    async def api_diagnose(self, request: Request) -> Response:
        who = need_login(self.web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        data = await request.body()
        if len(data) > self.web.options.max_capture:
            raise WebError(413, f"body larger than {self.web.options.max_capture} bytes")
        name = Path(request.query_params.get("name") or "upload.pcap").name[:128] or "upload.pcap"
        report = await self.run_diagnosis(request, who, data, name, request.query_params.get("vantage") or None)
        return JSONResponse(report)

    async def diagnose_page(self, request: Request) -> Response:
        who = need_login(self.web, request)
        return HTMLResponse(self.views.diagnose(who))

    async def form_diagnose(self, request: Request) -> Response:
        who = need_login(self.web, request)
        data, name, form = await read_upload(request, "capture", self.web.options.max_capture)
        check_csrf(who, str(form.get("csrf") or ""))
        vantage = str(form.get("vantage") or "") or None
        try:
            report = await self.run_diagnosis(request, who, data, name, vantage)
        except WebError as exc:
            if exc.status not in (415, 422):
                raise
            self.web.refused(request.method, request.url.path, client_address(request.scope), exc)
            return HTMLResponse(self.views.diagnose(who, error=exc.message), exc.status)
        return HTMLResponse(self.views.diagnose(who, report=report))

