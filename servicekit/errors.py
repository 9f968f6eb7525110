"""The one shape of every error answer on the platform, services and gateway alike.

``{"detail": "..."}`` always; a 422 adds ``errors`` (each invalid field with its message)
and a 409 the refused transition. A 401 says ``unauthorized: <why>`` with
``WWW-Authenticate: Bearer``; a 403 ``forbidden: <why>``. The FastAPI services answer
through :func:`servicekit.http.install_error_handlers`, the gateway (aiohttp) through
``gateway.errors``; both build their bodies here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def error_body(detail: str, **extra: Any) -> dict[str, Any]:
    return {"detail": detail, **extra}


def unauthorized_detail(reason: object) -> str:
    return f"unauthorized: {reason}"


def forbidden_detail(reason: object) -> str:
    return f"forbidden: {reason}"


def invalid_body(errors: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The 422 body for ``(field, message)`` pairs: a summary naming each, and the list."""
    listed = [{"field": field, "message": message} for field, message in errors]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in listed)
    return {"detail": f"invalid request: {summary}", "errors": listed}
