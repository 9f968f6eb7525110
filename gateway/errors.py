"""JSON error responses: ``{"detail": "..."}``, never internals."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web


def json_error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": detail}, status=status, headers=headers)
