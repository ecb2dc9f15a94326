"""API tokens: list, create, revoke (page and API)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from natpass.router.auth import AuthError
from natpass.web.context import (
    CSRF_HEADER,
    Principal,
    Routes,
    check_csrf,
    client_address,
    need_login,
    read_form,
    read_json,
)
from natpass.web.errors import WebError

log = logging.getLogger("natpass.admin")


class TokenRoutes(Routes):
    """API token handlers."""

    def token_list(self) -> list[dict[str, Any]]:
        try:
            return [{"name": t.name, "created": t.created, "last_used": t.last_used}
                    for t in self.web.auth.tokens.list()]
        except AuthError as exc:
            raise WebError(503, str(exc)) from None

    def create_token(self, request: Request, who: Principal, name: str) -> str:
        try:
            secret = self.web.auth.tokens.create(name)
        except AuthError as exc:
            raise WebError(400, str(exc)) from None
        self.web.log.add("token", f"API token {name!r} created by {who.kind} {who.name}", client_address(request.scope))
        return secret

    def revoke_token(self, request: Request, who: Principal, name: str) -> None:
        try:
            found = self.web.auth.tokens.revoke(name)
        except AuthError as exc:
            raise WebError(503, str(exc)) from None
        if not found:
            raise WebError(404, f"no API token named {name!r}")
        self.web.log.add("token", f"API token {name!r} revoked by {who.kind} {who.name}", client_address(request.scope))

    async def api_tokens(self, request: Request) -> Response:
        who = need_login(self.web, request)
        if request.method == "GET":
            return JSONResponse({"tokens": self.token_list()})
        check_csrf(who, request.headers.get(CSRF_HEADER))
        body = await read_json(request)
        name = body.get("name")
        if not isinstance(name, str):
            raise WebError(400, 'body must be {"name": "..."}')
        secret = self.create_token(request, who, name)
        return JSONResponse({"name": name, "token": secret}, 201)

    async def api_token_delete(self, request: Request) -> Response:
        who = need_login(self.web, request)
        check_csrf(who, request.headers.get(CSRF_HEADER))
        self.revoke_token(request, who, request.path_params["name"])
        return JSONResponse({"revoked": request.path_params["name"]})

    async def tokens_page(self, request: Request) -> Response:
        who = need_login(self.web, request)
        return HTMLResponse(self.views.tokens(who, self.token_list()))

    async def form_tokens(self, request: Request) -> Response:
        who = need_login(self.web, request)
        form = await read_form(request)
        check_csrf(who, str(form.get("csrf") or ""))
        action = str(form.get("action") or "")
        name = str(form.get("name") or "")
        if action == "create":
            secret = self.create_token(request, who, name)
            return HTMLResponse(self.views.tokens(who, self.token_list(), created=(name, secret)))
        if action == "revoke":
            self.revoke_token(request, who, name)
            return RedirectResponse("/tokens", 303)
        raise WebError(400, "action must be create or revoke")

