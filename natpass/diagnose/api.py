"""Diagnose as a JSON service for the router's admin API: an uploaded capture, or a live window.

The admin server calls these and returns the dicts as JSON (``POST /api/diagnose`` with the
capture as the body; ``POST /api/diagnose/live`` with ``{"seconds": N}``); they raise
:class:`DiagnoseRequestError` for a request that cannot be served, with the message to show.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from natpass.diagnose.live import MAX_SECONDS, LiveError, diagnose_live
from natpass.diagnose.network import VANTAGES, Vantage
from natpass.diagnose.run import CaptureError, diagnose

MAX_UPLOAD: Final = 64 * 1024 * 1024  # bytes of capture accepted in one request


class DiagnoseRequestError(ValueError):
    """The request cannot be served (not a capture, too large, bad parameter)."""


def _vantage(value: str | None) -> Vantage | None:
    if value is None or value == "":
        return None
    for v in VANTAGES:
        if v == value:
            return v
    raise DiagnoseRequestError(f"vantage must be one of {', '.join(VANTAGES)}")


def diagnose_upload(data: bytes, name: str = "upload.pcap", vantage: str | None = None) -> dict[str, Any]:
    """The diagnosis of an uploaded pcap/pcapng, as the JSON of ``natpass diagnose --json``."""
    if len(data) > MAX_UPLOAD:
        raise DiagnoseRequestError(f"capture larger than {MAX_UPLOAD // (1024 * 1024)} MB")
    where = _vantage(vantage)
    with tempfile.NamedTemporaryFile(prefix="natpass-upload-", suffix=".pcap") as fh:
        fh.write(data)
        fh.flush()
        try:
            diag = diagnose(Path(fh.name), vantage=where)
        except CaptureError as exc:
            raise DiagnoseRequestError(str(exc).replace(fh.name, name)) from None
    out = diag.to_dict()
    out["capture"]["file"] = name
    return out


def diagnose_live_json(lan_if: str, wan_if: str, seconds: float,
                       status: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    """A live window on the router's two interfaces, as the JSON of ``diagnose --live --json``."""
    if not 0 < seconds <= MAX_SECONDS:
        raise DiagnoseRequestError(f"seconds must be in (0, {MAX_SECONDS}]")
    try:
        return diagnose_live(lan_if, wan_if, seconds, status).to_dict()
    except LiveError as exc:
        raise DiagnoseRequestError(str(exc)) from None
