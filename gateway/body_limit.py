"""Request body size: bodies over ``GATEWAY_MAX_BODY_BYTES`` are refused with 413.

A declared oversized body is refused from its Content-Length at once; a chunked body is
cut off while it streams (the application's ``client_max_size``, see :func:`read_body`).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import json_error
from gateway.state import SETTINGS


def body_too_large(limit: int) -> web.Response:
    return json_error(413, f"request body too large: the limit is {limit} bytes")


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuses a declared oversized body before anything reads it.

    A body without Content-Length (chunked) is bounded while it is read: the application's
    ``client_max_size`` is the same limit, and :func:`read_body` turns its error into ours.
    """
    declared = request.content_length
    if declared is not None:
        limit = request.app[SETTINGS].max_body_bytes
        if declared > limit:
            return body_too_large(limit)
    return await handler(request)


async def read_body(request: web.Request) -> bytes | web.Response:
    """The request's whole body, or the 413 answer if it grows past the limit."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return body_too_large(request.app[SETTINGS].max_body_bytes)
