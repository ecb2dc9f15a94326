"""Capture upload, live capture on the router's two interfaces, and their diagnosis (a worker
thread, one at a time)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from natpass.diagnose.api import DiagnoseRequestError, diagnose_live_json, diagnose_upload
from natpass.web.context import (
    CSRF_HEADER,
    Principal,
    Routes,
    capture_type,
    check_csrf,
    client_address,
    jsonable,
    need_login,
    read_form,
    read_json,
    read_upload,
)
from natpass.web.errors import WebError
from natpass.web.report import LIVE_DEFAULT, LIVE_SECONDS

log = logging.getLogger("natpass.admin")


class DiagnoseRoutes(Routes):
    """Capture upload and live capture handlers."""

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

    # ----- live capture ----------------------------------------------------------------------
    @staticmethod
    def live_seconds(value: object) -> int:
        low, high = LIVE_SECONDS
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
            raise WebError(422, f"seconds must be a whole number from {low} to {high}")
        seconds = int(str(value).strip())
        if not low <= seconds <= high:
            raise WebError(422, f"seconds must be a whole number from {low} to {high}")
        return seconds

    def _router_status(self) -> dict[str, Any] | None:
        """The router's status from the worker thread (None: the drop counters are unknown)."""
        try:
            return self.web.call_blocking(self.web.control.status)
        except WebError:
            return None

    async def run_live(self, request: Request, who: Principal, seconds: int) -> dict[str, Any]:
        cfg = self.web.control.config
        if not self.web.diagnosing.acquire(blocking=False):
            raise WebError(503, "a diagnosis is already running: try again when it is done", {"Retry-After": "5"})
        source = client_address(request.scope)
        self.web.log.add("diagnose", f"live capture of {seconds} s on {cfg.lan_interface} and {cfg.wan_interface} "
                                     f"started by {who.kind} {who.name}", source)
        try:
            report = await run_in_threadpool(diagnose_live_json, cfg.lan_interface, cfg.wan_interface,
                                             float(seconds), self._router_status)
        except DiagnoseRequestError as exc:
            self.web.log.add("diagnose", f"live capture failed: {exc}", source)
            raise WebError(422, f"live capture not made: {exc}") from None
        finally:
            self.web.diagnosing.release()
        self.web.log.add("diagnose", f"live capture of {seconds} s diagnosed: "
                                     f"{len(report.get('findings') or [])} finding(s) across LAN and WAN", source)
        out: dict[str, Any] = jsonable(report)
        return out

    async def api_diagnose_live(self, request: Request) -> Response:
        who = need_login(self.web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        body = await read_json(request)
        seconds = self.live_seconds(body.get("seconds", LIVE_DEFAULT))
        return JSONResponse(await self.run_live(request, who, seconds))

    async def form_diagnose_live(self, request: Request) -> Response:
        who = need_login(self.web, request)
        form = await read_form(request)
        check_csrf(who, str(form.get("csrf") or ""))
        try:
            seconds = self.live_seconds(str(form.get("seconds") or LIVE_DEFAULT))
            report = await self.run_live(request, who, seconds)
        except WebError as exc:
            if exc.status != 422:
                raise
            self.web.refused(request.method, request.url.path, client_address(request.scope), exc)
            return HTMLResponse(self.views.diagnose(who, error=exc.message), exc.status)
        return HTMLResponse(self.views.diagnose(who, live=report))
