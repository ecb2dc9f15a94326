"""The admin web listener: the Starlette app of :mod:`natpass.web.app` served by uvicorn in a
thread of the router."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import threading
import time

import uvicorn

from natpass.router.auth import Auth, AuthError
from natpass.web.app import RouterControl, WebOptions, create_app
from natpass.web.history import SAMPLE_EVERY

log = logging.getLogger("natpass.admin")

START_TIMEOUT = 5.0


class WebStartError(Exception):
    """Why the admin web listener did not start."""


def parse_listen(text: str) -> tuple[socket.AddressFamily, str, int]:
    """``"192.168.1.1:8080"`` or ``"[::1]:8080"`` -> (family, host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise WebStartError(f"admin_http {text!r}: expected ADDRESS:PORT")
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        raise WebStartError(f"admin_http {text!r}: the address must be an IP address") from None
    return family, host, int(port)


def bind(text: str) -> socket.socket:
    family, host, port = parse_listen(text)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRNOTAVAIL:
            raise WebStartError(f"admin_http {text}: {host} is not an address of this machine "
                                "(or of this network namespace)") from None
        if exc.errno == errno.EADDRINUSE:
            raise WebStartError(f"admin_http {text}: port {port} is already in use") from None
        raise WebStartError(f"admin_http {text}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


class WebServer:
    """uvicorn serving the admin app on one bound socket, in its own thread."""

    def __init__(self, control: RouterControl) -> None:
        self.control = control
        cfg = control.config
        self.listen = cfg.admin_http or ""
        self.tls = cfg.admin_tls_cert is not None
        self.auth = Auth(cfg.state_dir, clock=control.clock)
        options = WebOptions(tls=self.tls, metrics_access=cfg.metrics_access)
        from natpass.router.usage import default_path

        self.app = create_app(control, self.auth, options, usage_path=str(default_path(cfg.state_dir)),
                              sample_every=SAMPLE_EVERY)
        self.sock: socket.socket | None = None
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None

    def start(self) -> WebServer:
        cfg = self.control.config
        if self.tls:
            for what in (cfg.admin_tls_cert, cfg.admin_tls_key):
                if what is None or not os.access(what, os.R_OK):
                    raise WebStartError(f"TLS file {what} is missing or unreadable")
        try:
            generated = self.auth.password.ensure()
        except (OSError, AuthError) as exc:
            raise WebStartError(f"cannot create the admin password file in {cfg.state_dir}: {exc}") from None
        if generated is not None:
            log.warning("admin password generated, shown only this once: %s   (change it with 'natpass passwd'; "
                        "the hash is in %s)", generated, self.auth.password.path)
        self.sock = bind(self.listen)
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on", server_header=False,
                                ssl_certfile=cfg.admin_tls_cert, ssl_keyfile=cfg.admin_tls_key,
                                limit_concurrency=64, timeout_keep_alive=5, h11_max_incomplete_event_size=16384)
        try:
            config.load()  # TLS errors show here, before the thread starts
        except Exception as exc:
            self.sock.close()
            raise WebStartError(f"TLS set-up failed: {exc}") from None
        self.server = uvicorn.Server(config)
        server, sock = self.server, self.sock
        self.thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                                       name="natpass-admin-web", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            self.stop()
            raise WebStartError("the web server did not start (see the log above)")
        host, port = sock.getsockname()[:2]
        self.address = (str(host), int(port))
        scheme = "https" if self.tls else "http"
        log.info("admin web page on %s://%s", scheme, f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}")
        if not self.tls and not ipaddress.ip_address(host).is_loopback:
            log.warning("admin web page on %s without TLS: the password crosses the LAN in clear text "
                        "(set admin_tls_cert and admin_tls_key)", host)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
