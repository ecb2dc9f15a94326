"""The passthrough switches: the page's forms and ``/api/switch/NAME``."""

from __future__ import annotations

import functools
import logging
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from natpass.nat.config import SWITCHES
from natpass.router.settings import EXPOSURES, SwitchResult
from natpass.web import frame
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
from natpass.web.labels import SWITCH_TITLES

log = logging.getLogger("natpass.admin")


class PassthroughRoutes(Routes):
    """Switch handlers."""

    async def change_switch(self, request: Request, who: Principal, name: str, on: bool,
                            confirm: bool) -> SwitchResult:
        if name not in SWITCHES:
            known = ", ".join(SWITCHES)
            raise WebError(404, f"unknown switch {name!r} (one of {known}; strict is set in the config file)")
        exposure = EXPOSURES.get((name, on))
        if exposure and not confirm:
            raise WebError(409, "this change opens an exposure: send it again with confirm",
                           exposure=exposure, confirm_required=True)
        try:
            result: SwitchResult = await self.web.call(
                functools.partial(self.web.control.change_switch, name, on, who=by(who)))
        except ValueError as exc:
            raise WebError(404, str(exc)) from None
        self.web.forget_cache()
        state, torn = ("on" if on else "off"), result.torn_down
        self.web.log.add("switch", f"{SWITCH_TITLES[name]} passthrough {state} by {who.kind} {who.name}"
                    + (f" ({torn} tunnel(s) closed)" if torn else "")
                    + ("" if result.saved else f"; NOT saved: {result.save_error}"), client_address(request.scope))
        log.info("admin web: passthrough %s %s by %s %s (%d tunnels torn down)", name, state, who.kind,
                 who.name, torn)
        return result

    async def api_switch(self, request: Request) -> Response:
        who = need_login(self.web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        name = request.path_params["name"]
        if name not in SWITCHES:
            await self.change_switch(request, who, name, False, True)  # raises the 404
        body = await read_json(request)
        on, confirm = body.get("on"), body.get("confirm", False)
        if not isinstance(on, bool) or not isinstance(confirm, bool):
            raise WebError(400, 'body must be {"on": true|false} (and "confirm": true for an exposure)')
        result = await self.change_switch(request, who, name, on, confirm)
        return JSONResponse({**result.as_dict(), "undo": {"on": not on}})

    async def form_switch(self, request: Request) -> Response:
        who = need_login(self.web, request)
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
            return HTMLResponse(frame.confirm_page(name, on, EXPOSURES[(name, on)], csrf))
        result = await self.change_switch(request, who, name, on, confirm)
        done: dict[str, Any] = {"done": name, "on": int(on), "torn": result.torn_down, "saved": int(result.saved)}
        if not result.saved:
            done["why"] = (result.save_error or "the config file was not written")[:300]
        return RedirectResponse(f"/passthrough?{urlencode(done)}#switch-{quote(name)}", 303)

