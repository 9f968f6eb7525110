"""The gateway in front of a real local upstream server, over TCP."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import SERVER_OPTIONS, build_app
from gateway.settings import GatewaySettings
from tests.support import AUTH_SETTINGS, bearer, free_port

pytestmark = pytest.mark.connected

UPSTREAM_TIMEOUT_S = 0.5
HEX_ID = re.compile(r"[0-9a-f]{32}")
GZIPPED = gzip.compress(b'{"compressed": true}')


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.rel_url.raw_path,
            "query": request.rel_url.raw_query_string,
            "headers": [[name, value] for name, value in request.headers.items()],
            # latin-1 maps every byte to one character, so binary bodies survive the echo.
            "body": body.decode("latin-1"),
        }
    )


async def created(request: web.Request) -> web.Response:
    return web.json_response({"id": 7}, status=201, headers={"Location": "/models/7"})


async def conflict(request: web.Request) -> web.Response:
    return web.json_response({"detail": "model request 7 is cancelled"}, status=409)


async def compressed(request: web.Request) -> web.Response:
    return web.Response(
        body=GZIPPED, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )


async def noisy_headers(request: web.Request) -> web.Response:
    response = web.json_response({"ok": True})
    response.headers["Keep-Alive"] = "timeout=99"
    response.headers["Proxy-Authenticate"] = "Basic"
    response.headers["X-Upstream"] = "yes"
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; Path=/")
    return response


async def redirect(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/models/elsewhere"})


@dataclass
class Upstream:
    url: str
    release_slow: asyncio.Event


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    release_slow = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(release_slow.wait(), timeout=10)
        return web.json_response({"late": True})

    app = web.Application()
    app.router.add_post("/models/created", created)
    app.router.add_put("/models/conflict", conflict)
    app.router.add_get("/models/gzip", compressed)
    app.router.add_get("/models/noisy", noisy_headers)
    app.router.add_get("/models/redirect", redirect)
    app.router.add_get("/models/slow", slow)
    app.router.add_route("*", "/{path:.*}", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(auto_decompress=False)
    try:
        yield Upstream(url=str(server.make_url("")).rstrip("/"), release_slow=release_slow)
    finally:
        release_slow.set()
        await server.close()


@pytest.fixture
async def hang_up_port() -> AsyncIterator[int]:
    """A port whose server accepts connections and closes them without answering."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def gateway(upstream: Upstream, hang_up_port: int) -> AsyncIterator[TestClient]:
    settings = GatewaySettings(
        routes={
            "/models": upstream.url,
            "/notices/": upstream.url + "/",
            "/targets": f"http://127.0.0.1:{free_port()}",
            "/cores": f"http://127.0.0.1:{hang_up_port}",
        },
        upstream_timeout_s=UPSTREAM_TIMEOUT_S,
        **AUTH_SETTINGS,
    )
    server = TestServer(build_app(settings), host="127.0.0.1")
    # TestServer drops options given to its constructor; they go to start_server.
    await server.start_server(**SERVER_OPTIONS)
    async with TestClient(server, headers=bearer()) as client:
        yield client


def upstream_headers(echoed: dict[str, object]) -> dict[str, str]:
    pairs = echoed["headers"]
    assert isinstance(pairs, list)
    return {name.lower(): value for name, value in pairs}


# --- proxying -----------------------------------------------------------------------


async def test_get_passes_method_path_and_query(gateway: TestClient) -> None:
    response = await gateway.get("/models/1/steps?userId=test&x=%20a&x=b")
    assert response.status == 200
    echoed = await response.json()
    assert echoed["method"] == "GET"
    assert echoed["path"] == "/models/1/steps"
    assert echoed["query"] == "userId=test&x=%20a&x=b"
    assert echoed["body"] == ""


async def test_encoded_path_is_forwarded_as_sent(gateway: TestClient) -> None:
    response = await gateway.get("/models/a%20b/%C3%A9")
    echoed = await response.json()
    assert echoed["path"] == "/models/a%20b/%C3%A9"


async def test_json_body_and_created_status(gateway: TestClient) -> None:
    response = await gateway.post("/models/created", json={"modelName": "M"})
    assert response.status == 201
    assert response.headers["Location"] == "/models/7"
    assert await response.json() == {"id": 7}

    response = await gateway.post("/models", json={"modelName": "M", "userId": "test"})
    echoed = await response.json()
    assert echoed["method"] == "POST"
    assert json.loads(echoed["body"]) == {"modelName": "M", "userId": "test"}
    assert upstream_headers(echoed)["content-type"] == "application/json"


async def test_form_body_passes_through(gateway: TestClient) -> None:
    response = await gateway.post("/models", data={"userId": "test", "modelName": "Test Model"})
    echoed = await response.json()
    assert echoed["body"] == "userId=test&modelName=Test+Model"
    headers = upstream_headers(echoed)
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["content-length"] == str(len(echoed["body"]))


async def test_error_status_and_body_pass_through(gateway: TestClient) -> None:
    response = await gateway.put("/models/conflict", json={"state": "approved"})
    assert response.status == 409
    assert await response.json() == {"detail": "model request 7 is cancelled"}


async def test_redirects_are_relayed_not_followed(gateway: TestClient) -> None:
    response = await gateway.get("/models/redirect", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/models/elsewhere"


async def test_prefix_with_trailing_slash_in_config(gateway: TestClient) -> None:
    response = await gateway.delete("/notices/3")
    echoed = await response.json()
    assert (echoed["method"], echoed["path"]) == ("DELETE", "/notices/3")


async def test_request_id_generated_and_forwarded(gateway: TestClient) -> None:
    response = await gateway.get("/models/1")
    request_id = response.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(request_id)
    assert upstream_headers(await response.json())["x-request-id"] == request_id


async def test_client_request_id_kept_when_sane(gateway: TestClient) -> None:
    response = await gateway.get("/models/1", headers={"X-Request-ID": "abc-123.X_y"})
    assert response.headers["X-Request-ID"] == "abc-123.X_y"
    assert upstream_headers(await response.json())["x-request-id"] == "abc-123.X_y"


@pytest.mark.parametrize("given", ["has space", "semi;colon", "x" * 129, ""])
async def test_client_request_id_replaced_when_not_sane(gateway: TestClient, given: str) -> None:
    response = await gateway.get("/models/1", headers={"X-Request-ID": given})
    assert HEX_ID.fullmatch(response.headers["X-Request-ID"])
    assert upstream_headers(await response.json())["x-request-id"] != given


async def test_forwarded_headers_added_and_host_replaced(
    gateway: TestClient, upstream: Upstream
) -> None:
    response = await gateway.get("/models/1", headers={"X-Forwarded-For": "203.0.113.9"})
    headers = upstream_headers(await response.json())
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{gateway.port}"
    assert headers["host"] == upstream.url.removeprefix("http://")


async def test_forged_user_headers_are_stripped(gateway: TestClient) -> None:
    response = await gateway.get(
        "/models/1",
        headers={"X-User-Id": "admin", "x-user-roles": "ADMIN", "X-Userland": "kept"},
    )
    headers = upstream_headers(await response.json())
    assert "x-user-id" not in headers
    assert "x-user-roles" not in headers
    assert headers["x-userland"] == "kept"


async def test_hop_by_hop_request_headers_not_forwarded(gateway: TestClient) -> None:
    response = await gateway.get(
        "/models/1",
        headers={
            "Connection": "keep-alive, X-Hop-Custom",
            "X-Hop-Custom": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Trailer": "X-Checksum",
            "Upgrade": "h2c",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-End-To-End": "kept",
            "User-Agent": "siege/4",
        },
    )
    headers = upstream_headers(await response.json())
    for name in ("x-hop-custom", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization"):
        assert name not in headers, name
    assert headers.get("connection", "keep-alive").lower() == "keep-alive"
    assert headers["x-end-to-end"] == "kept"
    assert headers["user-agent"] == "siege/4"


async def test_hop_by_hop_response_headers_not_relayed(gateway: TestClient) -> None:
    response = await gateway.get("/models/noisy")
    assert response.status == 200
    assert response.headers["X-Upstream"] == "yes"
    assert "Proxy-Authenticate" not in response.headers
    assert response.headers.get("Keep-Alive") is None
    assert response.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


async def test_gateway_keeps_no_cookies_between_clients(gateway: TestClient) -> None:
    await gateway.get("/models/noisy")
    gateway.session.cookie_jar.clear()
    response = await gateway.get("/models/1")
    assert "cookie" not in upstream_headers(await response.json())


async def test_no_accept_encoding_is_invented(gateway: TestClient) -> None:
    response = await gateway.get("/models/1", skip_auto_headers=("Accept-Encoding",))
    assert "accept-encoding" not in upstream_headers(await response.json())


async def test_compressed_response_passes_through_encoded(gateway: TestClient) -> None:
    async with (
        aiohttp.ClientSession(auto_decompress=False, headers=bearer()) as raw,
        raw.get(gateway.make_url("/models/gzip")) as response,
    ):
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Content-Length"] == str(len(GZIPPED))
        assert await response.read() == GZIPPED

    response = await gateway.get("/models/gzip")
    assert await response.json() == {"compressed": True}


async def test_compressed_request_body_passes_through_encoded(gateway: TestClient) -> None:
    payload = gzip.compress(b"hello")
    response = await gateway.post(
        "/models/upload",
        data=payload,
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
    )
    echoed = await response.json()
    assert echoed["body"].encode("latin-1") == payload
    assert upstream_headers(echoed)["content-encoding"] == "gzip"


async def test_head_keeps_upstream_content_length(gateway: TestClient) -> None:
    response = await gateway.head("/models/1")
    assert response.status == 200
    assert int(response.headers["Content-Length"]) > 0


async def test_concurrent_requests(gateway: TestClient) -> None:
    responses = await asyncio.gather(*(gateway.get(f"/models/{i}") for i in range(50)))
    assert [r.status for r in responses] == [200] * 50
    paths = [(await r.json())["path"] for r in responses]
    assert paths == [f"/models/{i}" for i in range(50)]


# --- errors -------------------------------------------------------------------------


async def test_unknown_route_is_404_json(gateway: TestClient) -> None:
    response = await gateway.get("/nowhere/1")
    assert response.status == 404
    assert await response.json() == {"detail": "no route for /nowhere/1"}
    assert HEX_ID.fullmatch(response.headers["X-Request-ID"])

    response = await gateway.post("/modelsX", json={})
    assert response.status == 404
    assert await response.json() == {"detail": "no route for /modelsX"}


async def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as given; HTTP clients would normalize dot segments away."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        authorization = bearer()["Authorization"]
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "target",
    ["/models/../metrics", "/models/%2e%2e/metrics", "/models%2F..%2Fmetrics", "/models/."],
)
async def test_dot_segments_are_refused(gateway: TestClient, target: str) -> None:
    assert gateway.port is not None
    status, body = await raw_get(gateway.port, target)
    assert status == 400
    assert json.loads(body) == {"detail": "invalid path"}


async def test_upstream_down_is_503_and_gateway_stays_up(gateway: TestClient) -> None:
    started = time.perf_counter()
    response = await gateway.post("/targets", json={"modelRequestId": 1})
    assert time.perf_counter() - started < 2
    assert response.status == 503
    assert await response.json() == {"detail": "upstream for /targets unavailable"}
    assert HEX_ID.fullmatch(response.headers["X-Request-ID"])

    response = await gateway.get("/models/1")
    assert response.status == 200


async def test_slow_upstream_is_504(gateway: TestClient, upstream: Upstream) -> None:
    started = time.perf_counter()
    response = await gateway.get("/models/slow")
    elapsed = time.perf_counter() - started
    assert response.status == 504
    assert await response.json() == {"detail": "upstream for /models timed out"}
    assert UPSTREAM_TIMEOUT_S <= elapsed < UPSTREAM_TIMEOUT_S + 2
    upstream.release_slow.set()

    response = await gateway.get("/models/1")
    assert response.status == 200


async def test_upstream_hanging_up_is_502(gateway: TestClient) -> None:
    for method in ("GET", "POST"):
        response = await gateway.request(method, "/cores/jobs")
        assert response.status == 502
        assert await response.json() == {"detail": "upstream for /cores failed"}


async def test_oversized_body_is_json_error(gateway: TestClient) -> None:
    response = await gateway.post("/models", data=b"x" * (1024**2 + 1))
    assert response.status == 413
    assert await response.json() == {"detail": "request body too large: the limit is 1048576 bytes"}


# --- the gateway's own endpoints ----------------------------------------------------


async def test_health_endpoints(gateway: TestClient) -> None:
    response = await gateway.get("/health/live")
    assert (response.status, await response.json()) == (200, {"status": "ok"})
    response = await gateway.get("/health/ready")
    assert (response.status, await response.json()) == (200, {"status": "ok"})


async def test_metrics_count_requests_and_upstream_errors(gateway: TestClient) -> None:
    await gateway.get("/models/1")
    await gateway.get("/targets/1")
    await gateway.get("/nowhere")
    await gateway.get("/asyncapi.json")
    response = await gateway.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'gateway_requests_total{method="GET",route="/models",status="200"}' in text
    assert 'gateway_requests_total{method="GET",route="unmatched",status="404"}' in text
    assert 'gateway_requests_total{method="GET",route="/asyncapi.json",status="200"}' in text
    assert 'gateway_request_duration_seconds_bucket{le="0.005",route="/models"}' in text
    assert 'gateway_upstream_errors_total{kind="connect",route="/targets"}' in text
