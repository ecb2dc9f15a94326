"""The checks before anything is routed: Host (DNS rebinding), Origin, body size, pacing; and the
security headers on every answer."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from natpass.web.context import WebState, client_address, error_response
from natpass.web.errors import WebError

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make browsers send "Origin: null"
    (b"cache-control", b"no-store"),
    (b"content-security-policy",
     b"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
     b"base-uri 'none'; frame-ancestors 'none'"),
]


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
            wait = self.web.pacer.delay(client_address(scope))
            if wait is None:
                response = error_response(scope["path"], WebError(429, "too many requests from this address",
                                                                  {"Retry-After": "5"}))
                self.web.flooded(client_address(scope))
                await response(scope, receive, send_with_headers)
                return
            if wait > 0:
                await asyncio.sleep(wait)
        if refusal is not None:
            self.web.refused(scope["method"], scope["path"], client_address(scope), refusal)
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

