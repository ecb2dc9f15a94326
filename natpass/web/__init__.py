"""The admin web page and API on ``[router] admin_http`` (see :mod:`natpass.web.app` for the
routes and refusals, :mod:`natpass.web.server` for the listener).

:func:`start_web` is the one call the router makes. It never raises: a listener that cannot
start (an address the machine does not have, a port in use, a bad certificate) is logged with the
reason, and the router and its Unix admin socket keep running. The web stack is imported only
when ``admin_http`` is set: it takes about 0.3 s, which every restart of a router without the
page would otherwise wait for.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from natpass.web.app import RouterControl
    from natpass.web.server import WebServer

log = logging.getLogger("natpass.admin")


def start_web(control: RouterControl) -> WebServer | None:
    """Start the admin web page when ``admin_http`` is set; on failure log why and return None."""
    if not control.config.admin_http:
        return None
    from natpass.web.server import WebServer, WebStartError

    try:
        return WebServer(control).start()
    except WebStartError as exc:
        log.error("admin web page not started: %s (the router and its admin socket keep running)", exc)
    except Exception:
        log.exception("admin web page not started (the router and its admin socket keep running)")
    return None


__all__ = ["start_web"]
