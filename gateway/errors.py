"""JSON error answers in the platform's one shape (servicekit.errors), never internals."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from servicekit.db import DB_RETRY_AFTER_S
from servicekit.errors import (
    BEARER_CHALLENGE,
    error_body,
    forbidden_detail,
    invalid_body,
    unauthorized_detail,
)


def json_error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(detail), status=status, headers=headers)


def unauthorized(reason: str) -> web.Response:
    return json_error(401, unauthorized_detail(reason), headers=BEARER_CHALLENGE)


def forbidden(reason: object) -> web.Response:
    return json_error(403, forbidden_detail(reason))


def user_database_unavailable() -> web.Response:
    """503 while the gateway's user database cannot be reached; no SQL, no addresses."""
    return json_error(
        503, "user database unavailable", headers={"Retry-After": str(DB_RETRY_AFTER_S)}
    )


def invalid(field: str, message: str) -> web.Response:
    """422 naming the field, as the services answer it."""
    return web.json_response(invalid_body([(field, message)]), status=422)
