"""Port forwarding: the page's forms and ``/api/forwards``."""

from __future__ import annotations

import functools
import logging
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from natpass.router.forwards import REFUSAL_STATUS, ForwardError, ForwardResult, ForwardSpec
from natpass.web.context import (
    CSRF_HEADER,
    Principal,
    Routes,
    by,
    check_csrf,
    client_address,
    need_login,
    read_form,
    read_json,
)
from natpass.web.errors import WebError
from natpass.web.forwardview import FIELDS, forwards_page

log = logging.getLogger("natpass.admin")


class ForwardRoutes(Routes):
    """Port forward handlers."""

    async def listing(self) -> list[dict[str, Any]]:
        return await self.web.call(self.web.control.forwards)

    async def change(self, request: Request, who: Principal, action: str, spec: ForwardSpec | None = None,
                     key: tuple[str, int, str | None] | None = None, runtime_only: bool = False) -> ForwardResult:
        control = self.web.control
        try:
            if spec is not None:
                result: ForwardResult = await self.web.call(
                    functools.partial(control.add_forward, spec, runtime_only=runtime_only, who=by(who)))
            else:
                assert key is not None
                result = await self.web.call(
                    functools.partial(control.remove_forward, *key, runtime_only=runtime_only, who=by(who)))
        except ForwardError as exc:
            self.web.log.add("forward", f"port forward {action} refused: {exc.message}", client_address(request.scope))
            raise WebError(REFUSAL_STATUS[exc.kind], f"port forward not {action}: {exc.message}") from None
        self.web.forget_cache()
        f = result.forward
        what = f"{f['proto']} {f.get('wan_address') or '*'}:{f['port']} -> {f['to']}"
        self.web.log.add("forward", f"port forward {what} {result.action} by {who.kind} {who.name}"
                         + ("" if result.saved or runtime_only else f"; NOT saved: {result.save_error}"),
                         client_address(request.scope))
        log.info("admin web: port forward %s %s by %s %s", what, result.action, who.kind, who.name)
        return result

    @staticmethod
    def parse(fields: dict[str, Any]) -> ForwardSpec:
        try:
            return ForwardSpec.parse(fields)
        except ForwardError as exc:
            raise WebError(422, f"port forward not added: {exc.message}") from None

    # ----- API -----------------------------------------------------------------------------------
    async def api_forwards(self, request: Request) -> Response:
        who = need_login(self.web, request)
        if request.method == "GET":
            return JSONResponse({"forwards": await self.listing()})
        check_csrf(who, request.headers.get(CSRF_HEADER))
        body = await read_json(request)
        runtime_only = body.get("runtime_only", False)
        if not isinstance(runtime_only, bool):
            raise WebError(400, "runtime_only must be true or false")
        result = await self.change(request, who, "added", spec=self.parse(body), runtime_only=runtime_only)
        return JSONResponse(result.as_dict(), 201)

    async def api_forward_delete(self, request: Request) -> Response:
        who = need_login(self.web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        proto, port = request.path_params["proto"], request.path_params["port"]
        if proto not in ("tcp", "udp") or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise WebError(404, f"no port forward {proto}/{port}: use /api/forwards/tcp|udp/PORT")
        wan = request.query_params.get("wan_address") or None
        runtime_only = request.query_params.get("runtime_only") in ("1", "true")
        result = await self.change(request, who, "removed", key=(proto, int(port), wan), runtime_only=runtime_only)
        return JSONResponse(result.as_dict())

    # ----- page ----------------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        who = need_login(self.web, request)
        return HTMLResponse(forwards_page(who, await self.listing(), flash=request.query_params.get("done", "")[:300]))

    async def form(self, request: Request) -> Response:
        who = need_login(self.web, request)
        form = await read_form(request)
        check_csrf(who, str(form.get("csrf") or ""))
        action = str(form.get("action") or "")
        values = {k: str(form.get(k) or "").strip() for k in FIELDS}
        try:
            if action == "add":
                fields: dict[str, Any] = {k: v for k, v in values.items() if v}
                port = values["port"]
                fields["port"] = int(port) if port.isdigit() else port
                result = await self.change(request, who, "added", spec=self.parse(fields))
            elif action == "remove":
                port = values["port"]
                if not port.isdigit():
                    raise WebError(400, "port must be a number")
                result = await self.change(request, who, "removed",
                                           key=(values["proto"], int(port), values["wan_address"] or None))
            else:
                raise WebError(400, "action must be add or remove")
        except WebError as exc:
            if exc.status not in (404, 409, 422):
                raise
            self.web.refused(request.method, request.url.path, client_address(request.scope), exc)
            page = forwards_page(who, await self.listing(), error=exc.message,
                                 values=values if action == "add" else None)
            return HTMLResponse(page, exc.status)
        f = result.forward
        done = f"Port forward {f['proto'].upper()} {f['port']} -> {f['to']} {result.action}" + (
            ": saved in the config file." if result.saved else f", but NOT saved: {result.save_error}")
        return RedirectResponse("/forwards?" + urlencode({"done": done}), 303)
