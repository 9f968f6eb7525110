"""What every service answers at its edge, whatever the route: security headers on every
answer, and a request body limit (413 with a JSON detail).

- ``X-Content-Type-Options: nosniff`` on every answer, ``Cache-Control: no-store`` on JSON
  ones (an API answer is one user's data; a proxy or browser must not keep it);
- a body past ``max_body_bytes`` is refused before the route reads it: at once from its
  Content-Length, or as soon as a chunked body grows past it (the body is buffered up to
  the limit, which every route reads whole anyway).
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")
JSON_TYPES = (b"application/json", b"application/problem+json")
DRAIN_BYTES = 16 * 1024 * 1024  # past this, the connection is closed under the sender


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = with_security_headers(send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body_bytes:
            await self.too_large(send, bad_length=not length.isdigit())
            return
        body: list[Message] = []
        size = 0
        while True:  # buffered up to the limit; a chunked body past it is refused
            message = await receive()
            body.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                await self.drain(receive, more=message.get("more_body", False))
                await self.too_large(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return body.pop(0) if body else await receive()

        await self.app(scope, replay, send)

    async def drain(self, receive: Receive, more: bool) -> None:
        """Read and drop the rest of a chunked body (up to DRAIN_BYTES), so the client, which
        is still sending, reads the 413 instead of a reset connection."""
        dropped = 0
        while more and dropped < DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            more = message.get("more_body", False)

    async def too_large(self, send: Send, bad_length: bool = False) -> None:
        status, detail = (
            (400, "invalid Content-Length")
            if bad_length
            else (413, f"request body too large: the limit is {self.max_body_bytes} bytes")
        )
        content = orjson.dumps({"detail": detail})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def with_security_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k.lower(), v) for k, v in message.get("headers", [])]
            names = {k for k, _ in headers}
            content_type = next((v for k, v in headers if k == b"content-type"), b"")
            headers.append(NOSNIFF)
            if content_type.split(b";")[0].strip() in JSON_TYPES and b"cache-control" not in names:
                headers.append(NO_STORE)
            message = {**message, "headers": headers}
        await send(message)

    return sending
