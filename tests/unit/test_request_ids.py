"""The request id a service echoes and logs: the client's when well formed, else a new one."""

from __future__ import annotations

import re

import pytest
from starlette.types import Message, Receive, Scope, Send

from servicekit.app import RequestContextMiddleware


async def _answered_id(given: bytes) -> str:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [(b"x-request-id", given)]}
    await RequestContextMiddleware(app, "test")(scope, receive, send)
    return dict(sent[0]["headers"])[b"x-request-id"].decode()


async def test_a_well_formed_request_id_is_kept() -> None:
    assert await _answered_id(b"abc-123.X_y") == "abc-123.X_y"


@pytest.mark.parametrize("given", [b"abc\n", b"abc\r\nSet-Cookie: x", b"a b", b"x" * 129, b""])
async def test_any_other_request_id_is_replaced(given: bytes) -> None:
    answered = await _answered_id(given)
    assert answered != given.decode("latin-1")
    assert re.fullmatch(r"[0-9a-f]{32}", answered)
