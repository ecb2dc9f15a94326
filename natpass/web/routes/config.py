"""Reload, backup, restore, history and rollback of the config file."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from natpass.router.config import ConfigError
from natpass.router.settings import BackupError, ConfigChange
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
    read_upload,
)
from natpass.web.errors import WebError

log = logging.getLogger("natpass.admin")


class ConfigRoutes(Routes):
    """Reload, backup, restore and rollback handlers."""

    async def do_reload(self, request: Request, who: Principal) -> None:
        try:
            await self.web.call(functools.partial(self.web.control.reload, None, who=f"web {who.kind} {who.name}"))
        except ConfigError as exc:
            self.web.log.add("reload", f"reload refused: {exc}", client_address(request.scope))
            raise WebError(422, f"config not reloaded, the running one is kept: {exc}", path=exc.path,
                           line=exc.line, message=exc.message) from None
        self.web.forget_cache()
        self.web.log.add("reload", f"config reloaded by {who.kind} {who.name}", client_address(request.scope))
        log.info("admin web: config reloaded by %s %s", who.kind, who.name)

    async def api_reload(self, request: Request) -> Response:
        who = need_login(self.web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        await read_json(request)
        await self.do_reload(request, who)
        return JSONResponse({"reloaded": True})

    async def form_reload(self, request: Request) -> Response:
        who = need_login(self.web, request)
        form = await read_form(request)
        check_csrf(who, str(form.get("csrf") or ""))
        await self.do_reload(request, who)
        return RedirectResponse("/?reloaded=1", 303)

    # ----- backup, restore, history, rollback --------------------------------------------------
    async def config_change(self, request: Request, who: Principal, what: str,
                            change: Callable[[], ConfigChange]) -> ConfigChange:
        """Run a restore or rollback; refused whole (422/404), the running config kept."""
        source = client_address(request.scope)
        try:
            result = await self.web.call(change)
        except (ConfigError, BackupError) as exc:
            self.web.log.add("config", f"{what} refused: {exc}", source)
            log.warning("admin web: %s refused (%s %s): %s", what, who.kind, who.name, exc)
            raise WebError(422, f"config not changed, the running one is kept: {exc}", path=exc.path,
                           line=exc.line, message=exc.message) from None
        except KeyError as exc:
            raise WebError(404, f"no such config version: {exc.args[0] if exc.args else ''}") from None
        self.web.forget_cache()
        self.web.log.add("config", f"{what} by {who.kind} {who.name}: {result.summary}", source)
        log.info("admin web: %s by %s %s: %s", what, who.kind, who.name, result.summary)
        return result

    async def backup_text(self, who: Principal) -> Response:
        text = await self.web.call(functools.partial(self.web.control.backup, who=by(who)))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return Response(text.encode("utf-8"), media_type="application/toml; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="natpass-backup-{stamp}.toml"'})

    async def history(self) -> list[dict[str, Any]]:
        return await self.web.call(self.web.control.config_history)

    def restore(self, request: Request, who: Principal, data: bytes, name: str) -> Awaitable[ConfigChange]:
        return self.config_change(request, who, f"restore of {name}",
                             functools.partial(self.web.control.restore, data, name, who=by(who)))

    def rollback(self, request: Request, who: Principal, number: int | None) -> Awaitable[ConfigChange]:
        what = f"rollback to #{number}" if number is not None else "rollback"
        return self.config_change(request, who, what, functools.partial(self.web.control.rollback, number, who=by(who)))

    async def api_backup(self, request: Request) -> Response:
        return await self.backup_text(need_login(self.web, request))

    async def api_history(self, request: Request) -> Response:
        need_login(self.web, request)
        return JSONResponse({"versions": await self.history()})

    async def api_restore(self, request: Request) -> Response:
        who = need_login(self.web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        body = await read_json(request, self.web.options.max_backup)
        text, name = body.get("backup"), body.get("name", "backup")
        if not isinstance(text, str) or not isinstance(name, str):
            raise WebError(400, 'body must be {"backup": "<the backup file\'s text>", "name": "<file name>"}')
        result = await self.restore(request, who, text.encode("utf-8"), Path(name).name[:128] or "backup")
        return JSONResponse({"restored": True, **result.as_dict()})

    async def api_rollback(self, request: Request) -> Response:
        who = need_login(self.web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        body = await read_json(request)
        number = body.get("number")
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
            raise WebError(400, 'body must be {} or {"number": N} (N from /api/config/self.history)')
        result = await self.rollback(request, who, number)
        return JSONResponse({"rolled_back": True, **result.as_dict()})

    async def backup_page_for(self, who: Principal, flash: str = "", error: str = "", status: int = 200) -> Response:
        return HTMLResponse(self.views.backup(who, await self.history(), flash=flash, error=error), status)

    async def backup_page(self, request: Request) -> Response:
        who = need_login(self.web, request)
        return await self.backup_page_for(who, flash=request.query_params.get("done", "")[:200])

    async def backup_download(self, request: Request) -> Response:
        return await self.backup_text(need_login(self.web, request))

    async def page_refusal(self, who: Principal, change: Awaitable[ConfigChange]) -> Response | ConfigChange:
        try:
            return await change
        except WebError as exc:
            if exc.status != 422:
                raise
            return await self.backup_page_for(who, error=exc.message, status=422)

    async def form_restore(self, request: Request) -> Response:
        who = need_login(self.web, request)
        data, name, form = await read_upload(request, "backup", self.web.options.max_backup)
        check_csrf(who, str(form.get("csrf") or ""))
        result = await self.page_refusal(who, self.restore(request, who, data, name))
        if isinstance(result, Response):
            return result
        return RedirectResponse("/backup?" + urlencode({"done": f"Restored {name}: {result.summary}"}), 303)

    async def form_rollback(self, request: Request) -> Response:
        who = need_login(self.web, request)
        form = await read_form(request)
        check_csrf(who, str(form.get("csrf") or ""))
        text = str(form.get("number") or "")
        if not text.isdigit():
            raise WebError(400, "number must be a version number from the history")
        result = await self.page_refusal(who, self.rollback(request, who, int(text)))
        if isinstance(result, Response):
            return result
        return RedirectResponse("/backup?" + urlencode({"done": f"Back to version #{text}: {result.summary}"}), 303)

