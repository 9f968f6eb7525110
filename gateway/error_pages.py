"""aiohttp's own answers to requests it cannot parse, made like the gateway's others.

aiohttp answers a malformed request (a bad header, a duplicate Content-Length, a bad
method) before any middleware runs: a text page naming its version in ``Server``, that
echoes the offending raw bytes (an ``Authorization`` header included), and an ERROR log
line carrying them. :func:`install_error_pages` replaces that answer with the gateway's
JSON error (the status's reason only, ``Server: nocode-gateway``, ``nosniff``) and one
WARNING line without the raw request (client mistakes are no server errors).

aiohttp offers no hook for this answer (``on_response_prepare`` does not run for a request
that was never routed), so ``RequestHandler.handle_error`` is replaced, once per process.
"""

from __future__ import annotations

from http import HTTPStatus

import structlog
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.headers import SECURITY_HEADERS, SERVER_NAME

log = structlog.get_logger("gateway.parser")

_original = RequestHandler.handle_error


def handle_error(
    self: RequestHandler,
    request: BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    if status >= 500:  # aiohttp's own failure: its log line (redacted) and traceback
        _original(self, request, status, exc, message)
    else:
        log.warning(
            "malformed_request",
            status=status,
            error=type(exc).__name__ if exc is not None else None,
            # the reason only: the exception's text holds the raw request line or header
            reason=exc.message.splitlines()[0] if isinstance(exc, HttpProcessingError) else None,
            remote=request.remote,
        )
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send an error message")
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    response = web.json_response(
        {"detail": phrase},
        status=status,
        headers={hdrs.SERVER: SERVER_NAME, **SECURITY_HEADERS, "Cache-Control": "no-store"},
    )
    response.force_close()
    return response


def install_error_pages() -> None:
    RequestHandler.handle_error = handle_error  # type: ignore[method-assign]
