"""The one exception the web app turns into a refusal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class WebError(Exception):
    """A refusal with its HTTP status; ``headers`` go on the answer, ``extra`` into the JSON."""

    def __init__(self, status: int, text: str, headers: Mapping[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(text)
        self.status = status
        self.message = text
        self.headers = dict(headers or {})
        self.extra = extra
