"""The gateway in front of the web console: ``/ui/**`` is public and streamed, ``/``
leads there, and the API next to it still wants its token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import SERVER_OPTIONS, build_app
from gateway.settings import GatewaySettings
from tests.support import AUTH_SETTINGS, migrated_database

pytestmark = pytest.mark.connected


@pytest.fixture
async def gateway(postgres_admin_url: str) -> AsyncIterator[tuple[TestClient, asyncio.Event]]:
    release = asyncio.Event()
    seen: list[str] = []

    async def page(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Cookie", ""))
        response = web.Response(text=f"<h1>{request.path}</h1>", content_type="text/html")
        response.set_cookie("nocode_console", "sid", httponly=True, path="/ui")
        return response

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"event: fragment\ndata: {}\n\n")
        await release.wait()  # the rest only once the test has read the first event
        await response.write(b'event: fragment\ndata: {"n": 2}\n\n')
        return response

    console = web.Application()
    console.router.add_get("/ui/requests/live", events)
    console.router.add_route("*", "/ui/{tail:.*}", page)
    upstream = TestServer(console, host="127.0.0.1")
    await upstream.start_server()
    settings = GatewaySettings(
        routes={"/ui": str(upstream.make_url("")).rstrip("/"), "/models": "http://127.0.0.1:9"},
        database_url=await migrated_database(postgres_admin_url, "gateway"),
        rate_limit_per_s=0,
        **AUTH_SETTINGS,
    )
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server(**SERVER_OPTIONS)
    async with TestClient(server) as client:
        client.seen = seen  # type: ignore[attr-defined]
        yield client, release
    await upstream.close()


async def test_the_console_is_public_at_the_gateway_and_root_leads_there(
    gateway: tuple[TestClient, asyncio.Event],
) -> None:
    client, _ = gateway
    root = await client.get("/", allow_redirects=False)
    assert (root.status, root.headers["Location"]) == (302, "/ui/")
    page = await client.get("/ui/signin", headers={"Cookie": "nocode_console=abc"})
    assert page.status == 200 and await page.text() == "<h1>/ui/signin</h1>"
    assert "HttpOnly" in page.headers["Set-Cookie"]
    assert client.seen == ["nocode_console=abc"]  # type: ignore[attr-defined]
    posted = await client.post("/ui/signin", data={"username": "u"})
    assert posted.status == 200
    # The API beside it still needs a token, and /uiX is not the console's.
    assert (await client.get("/models")).status == 401
    assert (await client.get("/uiX")).status == 401


async def test_the_console_event_stream_is_passed_on_as_it_is_written(
    gateway: tuple[TestClient, asyncio.Event],
) -> None:
    client, release = gateway
    response = await client.get("/ui/requests/live")
    assert response.headers["Content-Type"] == "text/event-stream"
    # The first event arrives while the console is still holding the stream open.
    first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
    assert first == b"event: fragment\ndata: {}\n\n"
    release.set()
    rest = await asyncio.wait_for(response.content.read(), 5)
    assert rest == b'event: fragment\ndata: {"n": 2}\n\n'
