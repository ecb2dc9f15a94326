"""Login and logout: the form, the JSON API, the session cookie and the back-off."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from natpass.router.auth import AuthError, Session
from natpass.web import frame
from natpass.web.context import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Routes,
    check_csrf,
    client_address,
    need_login,
    principal,
    read_form,
    read_json,
    safe_next,
)
from natpass.web.errors import WebError

log = logging.getLogger("natpass.admin")


class AuthRoutes(Routes):
    """Login and logout handlers."""

    def attempt_login(self, request: Request, password: str) -> Session:
        source = client_address(request.scope)
        wait = self.web.auth.limiter.wait(source)
        if wait > 0:
            raise WebError(429, f"too many failed logins from this address: wait {int(wait) + 1} s",
                           {"Retry-After": str(int(wait) + 1)})
        try:
            ok = self.web.auth.password.verify(password)
        except AuthError as exc:
            raise WebError(503, str(exc)) from None
        if not ok:
            delay = self.web.auth.limiter.failure(source)
            self.web.log.add("login-failed", "wrong password", source)
            log.warning("admin web: failed login from %s (%d failures%s)", source,
                        self.web.auth.limiter.failures(source), f", next try in {delay:.0f} s" if delay else "")
            raise WebError(401, "wrong password")
        self.web.auth.limiter.success(source)
        self.web.check_password_change()  # sessions of an older password end; a rehash on verify is seen here
        session = self.web.auth.sessions.create("admin", source)
        self.web.log.add("login", "admin logged in", source)
        log.info("admin web: login from %s", source)
        return session

    def set_cookie(self, response: Response, session: Session) -> None:
        response.set_cookie(SESSION_COOKIE, session.id, httponly=True, samesite="strict",
                            secure=self.web.options.tls, path="/")

    async def login_page(self, request: Request) -> Response:
        if principal(self.web, request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), 303)
        note = "Your session has expired: log in again." if request.query_params.get("expired") else None
        return HTMLResponse(frame.login_page(request.query_params.get("next") or "/", note=note))

    async def login_form(self, request: Request) -> Response:
        form = await read_form(request)
        target = safe_next(str(form.get("next") or "/"))
        try:
            session = await run_in_threadpool(self.attempt_login, request, str(form.get("password") or ""))
        except WebError as exc:
            if exc.status in (401, 429):
                if exc.status == 429:
                    self.web.refused(request.method, request.url.path, client_address(request.scope), exc)
                return HTMLResponse(frame.login_page(target, error=exc.message), exc.status, headers=exc.headers)
            raise
        response = RedirectResponse(target, 303)
        self.set_cookie(response, session)
        return response

    async def api_login(self, request: Request) -> Response:
        body = await read_json(request)
        password = body.get("password")
        if not isinstance(password, str):
            raise WebError(400, 'body must be {"password": "..."}')
        session = await run_in_threadpool(self.attempt_login, request, password)
        response = JSONResponse({"csrf": session.csrf, "idle_timeout": self.web.auth.sessions.idle,
                                 "lifetime": self.web.auth.sessions.lifetime})
        self.set_cookie(response, session)
        return response

    async def _logout(self, request: Request, given_csrf: str | None) -> Response | None:
        who = need_login(self.web, request)
        check_csrf(who, given_csrf)
        if who.session is not None:
            self.web.auth.sessions.drop(who.session.id)
            self.web.log.add("logout", "admin logged out", client_address(request.scope))
        return None

    async def logout_form(self, request: Request) -> Response:
        form = await read_form(request)
        await self._logout(request, str(form.get("csrf") or ""))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def api_logout(self, request: Request) -> Response:
        await self._logout(request, request.headers.get(CSRF_HEADER))
        response = JSONResponse({"logged_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

