"""The gateway's protection in front of real local upstreams, over TCP.

Rate limit (429 then recovery), upstream down (503/504 quickly, the gateway stays up),
a circuit breaker per upstream, retries for GET only, the body size limit (413), CORS.
Every request carries a valid token (the gateway refuses any other with 401), unless a
test says otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import SERVER_OPTIONS, build_app
from gateway.settings import GatewaySettings
from servicekit.auth import TokenIssuer, generate_keypair
from tests.support import free_port

pytestmark = pytest.mark.connected

ORIGIN = "https://ui.example.com"
PRIVATE_KEY, PUBLIC_KEY = generate_keypair()
KEY_ID = "test-key"
ISSUER = TokenIssuer(PRIVATE_KEY, KEY_ID, "nocode-gateway", "nocode")


def bearer(user: str = "alice", *roles: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + ISSUER.issue(user, roles or ("user",))}


@dataclass
class Upstream:
    """A local service that counts the requests it is sent, by path."""

    url: str
    calls: Counter[str] = field(default_factory=Counter)
    failing: bool = False

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream(url="")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        state.calls[request.path] += 1
        if state.failing:
            return web.json_response({"detail": "not ready"}, status=503)
        response = web.json_response({"path": request.path, "size": len(body)})
        if request.path == "/models/cors-aware":
            response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_route("*", "/{path:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    try:
        yield state
    finally:
        await server.close()


@dataclass
class HangUp:
    """A server that reads each request and closes the connection without answering,
    except for the connections listed in ``answer`` (1-based), which get a 200."""

    port: int
    requests: int = 0
    answer: set[int] = field(default_factory=set)


@pytest.fixture
async def hang_up() -> AsyncIterator[HangUp]:
    state = HangUp(port=0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        state.requests += 1
        if state.requests in state.answer:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    state.port = int(server.sockets[0].getsockname()[1])
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def settings_for(upstream: Upstream, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "routes": {"/models": upstream.url, "/down": f"http://127.0.0.1:{free_port()}"},
        "upstream_timeout_s": 0.5,
        "retry_backoff_initial_s": 0.01,
        "retry_backoff_max_s": 0.05,
        "jwt_public_keys": {KEY_ID: PUBLIC_KEY},
        **overrides,
    }
    return GatewaySettings(**values)


@asynccontextmanager
async def running(
    settings: GatewaySettings, headers: dict[str, str] | None = None
) -> AsyncIterator[TestClient]:
    """The gateway, and a client sending ``headers`` (by default alice's token) each time."""
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server(**SERVER_OPTIONS)
    async with TestClient(server, headers=bearer() if headers is None else headers) as client:
        yield client


async def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await call()
    return result, time.perf_counter() - started


# --- rate limit -----------------------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after_then_recovers(upstream: Upstream) -> None:
    async with running(settings_for(upstream, rate_limit_per_s=1, rate_limit_burst=3)) as gw:
        statuses = [(await gw.get("/models/1")).status for _ in range(3)]
        assert statuses == [200, 200, 200]

        refused = await gw.get("/models/1")
        assert refused.status == 429
        assert refused.content_type == "application/json"
        body = await refused.json()
        assert body["detail"].startswith("rate limit exceeded")
        retry_after = int(refused.headers["Retry-After"])
        assert retry_after >= 1
        assert refused.headers["X-Request-ID"]
        assert upstream.calls["/models/1"] == 3  # the refused request never reached it

        # The gateway's own probes are not limited.
        assert (await gw.get("/health/live")).status == 200

        await asyncio.sleep(retry_after)
        assert (await gw.get("/models/1")).status == 200
        assert upstream.calls["/models/1"] == 4


async def test_rate_limit_is_per_user(upstream: Upstream) -> None:
    async with running(settings_for(upstream, rate_limit_per_s=0.1, rate_limit_burst=2)) as gw:
        alice, bob = bearer("alice"), bearer("bob")
        statuses = [(await gw.get("/models/1", headers=alice)).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        # bob calls from the same address, with his own bucket.
        statuses = [(await gw.get("/models/1", headers=bob)).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert int((await gw.get("/models/1", headers=alice)).headers["Retry-After"]) >= 1


async def test_token_endpoint_has_its_own_limit_by_address(upstream: Upstream) -> None:
    settings = settings_for(upstream, token_rate_limit_per_s=0.1, token_rate_limit_burst=2)
    async with running(settings) as gw:
        form = {"username": "nobody", "password": "wrong-password"}
        responses = [await gw.post("/auth/token", data=form, headers={}) for _ in range(3)]
        assert 429 not in [r.status for r in responses[:2]]
        assert responses[2].status == 429
        assert "token requests" in (await responses[2].json())["detail"]
        assert int(responses[2].headers["Retry-After"]) >= 1
        # Other requests from the same address draw from their own buckets.
        assert (await gw.get("/models/1")).status == 200


async def test_unauthenticated_routes_are_limited_by_address(upstream: Upstream) -> None:
    settings = settings_for(
        upstream, rate_limit_per_s=0.1, rate_limit_burst=2, token_rate_limit_per_s=0
    )
    async with running(settings, headers={}) as gw:
        form = {"username": "nobody", "password": "wrong-password"}
        statuses = [(await gw.post("/auth/token", data=form)).status for _ in range(3)]
        assert 429 not in statuses[:2]
        assert statuses[2] == 429
        # Without a valid token elsewhere: the same address's bucket, empty now (429), so
        # guessing tokens is as slow as guessing passwords.
        assert (await gw.get("/models/1")).status == 429


async def test_rate_limit_off_when_rate_is_zero(upstream: Upstream) -> None:
    async with running(settings_for(upstream, rate_limit_per_s=0, rate_limit_burst=1)) as gw:
        statuses = [(await gw.get("/models/1")).status for _ in range(20)]
        assert statuses == [200] * 20


# --- upstream down, timeouts, the breaker -------------------------------------------


async def test_upstream_down_is_503_quickly_and_the_gateway_stays_up(upstream: Upstream) -> None:
    async with running(settings_for(upstream)) as gw:
        for method in ("GET", "POST"):
            response, elapsed = await timed(lambda m=method: gw.request(m, "/down/1"))
            assert response.status == 503
            assert await response.json() == {"detail": "upstream for /down unavailable"}
            assert elapsed < 2

        response = await gw.get("/models/1")
        assert response.status == 200
        assert (await gw.get("/health/live")).status == 200


async def test_slow_upstream_is_504_quickly(upstream: Upstream) -> None:
    async def never_answers(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/{path:.*}", never_answers)
    slow = TestServer(app, host="127.0.0.1")
    await slow.start_server()
    try:
        settings = settings_for(
            upstream,
            routes={"/models": upstream.url, "/slow": str(slow.make_url("")).rstrip("/")},
            upstream_timeout_s=0.3,
        )
        async with running(settings) as gw:
            response, elapsed = await timed(lambda: gw.get("/slow/1"))
            assert response.status == 504
            assert await response.json() == {"detail": "upstream for /slow timed out"}
            assert elapsed < 2  # a timeout is not retried
            assert (await gw.get("/models/1")).status == 200
    finally:
        await slow.close()


async def test_breaker_opens_after_failures_and_closes_after_reset(upstream: Upstream) -> None:
    settings = settings_for(upstream, breaker_failures=3, breaker_reset_s=1.0)
    async with running(settings) as gw:
        upstream.failing = True
        for _ in range(3):  # the upstream's own 503s are relayed, and counted
            response = await gw.post("/models", data={"userId": "test"})
            assert response.status == 503
            assert await response.json() == {"detail": "not ready"}
        assert upstream.total == 3

        # Open: refused at once, without calling the upstream.
        for _ in range(5):
            response, elapsed = await timed(lambda: gw.get("/models/1"))
            assert response.status == 503
            body = await response.json()
            assert body["detail"].startswith("upstream for /models unavailable")
            assert int(response.headers["Retry-After"]) >= 1
            assert elapsed < 0.5
        assert upstream.total == 3

        # Another upstream's breaker is its own: /down still tries (and fails) normally.
        response = await gw.get("/down/1")
        assert await response.json() == {"detail": "upstream for /down unavailable"}

        # Half-open after the reset: one trial; failing, it opens the circuit again.
        await asyncio.sleep(1.1)
        assert (await gw.post("/models", data={"userId": "test"})).status == 503
        assert upstream.total == 4
        assert "Retry-After" in (await gw.get("/models/1")).headers
        assert upstream.total == 4

        # Next trial succeeds: closed, every request goes through again.
        upstream.failing = False
        await asyncio.sleep(1.1)
        statuses = [(await gw.get(f"/models/{i}")).status for i in range(5)]
        assert statuses == [200] * 5
        assert upstream.total == 9


async def test_breaker_counts_connection_failures(upstream: Upstream) -> None:
    settings = settings_for(upstream, breaker_failures=2, breaker_reset_s=5, retries=0)
    async with running(settings) as gw:
        for _ in range(2):
            response = await gw.get("/down/1")
            assert await response.json() == {"detail": "upstream for /down unavailable"}
            assert "Retry-After" not in response.headers
        response = await gw.get("/down/1")
        assert response.status == 503
        assert int(response.headers["Retry-After"]) in range(1, 6)
        metrics = await (await gw.get("/metrics")).text()
        assert 'circuit_breaker_open{dependency="http://127.0.0.1:' in metrics
        assert 'gateway_upstream_errors_total{kind="circuit_open",route="/down"}' in metrics
        # The gateway still serves the other routes.
        assert (await gw.get("/models/1")).status == 200


# --- retries ------------------------------------------------------------------------


async def test_get_is_retried_on_connection_errors(hang_up: HangUp, upstream: Upstream) -> None:
    routes = {"/models": upstream.url, "/flaky": f"http://127.0.0.1:{hang_up.port}"}
    settings = settings_for(upstream, routes=routes, retries=2, breaker_failures=100)
    async with running(settings) as gw:
        response = await gw.get("/flaky/1")
        assert response.status == 502
        assert await response.json() == {"detail": "upstream for /flaky failed"}
        assert hang_up.requests == 3  # the first attempt and two retries

        hang_up.requests = 0
        hang_up.answer = {2}
        response = await gw.get("/flaky/1")
        assert response.status == 200
        assert await response.read() == b"ok"
        assert hang_up.requests == 2


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_never_retried(
    hang_up: HangUp, upstream: Upstream, method: str
) -> None:
    routes = {"/models": upstream.url, "/flaky": f"http://127.0.0.1:{hang_up.port}"}
    settings = settings_for(upstream, routes=routes, retries=2, breaker_failures=100)
    async with running(settings) as gw:
        hang_up.answer = {2}  # a retry would succeed: none is made
        response = await gw.request(method, "/flaky/1", data={"userId": "test"})
        assert response.status == 502
        assert hang_up.requests == 1


# --- body size ----------------------------------------------------------------------

LIMIT = 1024


async def chunks(total: int, size: int = 256) -> AsyncIterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


async def test_oversized_body_with_content_length_is_413(upstream: Upstream) -> None:
    async with running(settings_for(upstream, max_body_bytes=LIMIT)) as gw:
        response = await gw.post("/models", data=b"x" * (LIMIT + 1))
        assert response.status == 413
        assert await response.json() == {
            "detail": f"request body too large: the limit is {LIMIT} bytes"
        }
        response = await gw.post("/models", data=b"x" * LIMIT)
        assert response.status == 200
        assert (await response.json())["size"] == LIMIT
        assert upstream.total == 1


async def test_oversized_chunked_body_is_413(upstream: Upstream) -> None:
    async with running(settings_for(upstream, max_body_bytes=LIMIT)) as gw:
        response = await gw.post("/models", data=chunks(4 * LIMIT))
        assert response.status == 413
        assert await response.json() == {
            "detail": f"request body too large: the limit is {LIMIT} bytes"
        }
        response = await gw.post("/models", data=chunks(LIMIT))
        assert response.status == 200
        assert (await response.json())["size"] == LIMIT
        assert upstream.total == 1


async def test_huge_declared_body_is_refused_before_it_is_sent(upstream: Upstream) -> None:
    async with running(settings_for(upstream, max_body_bytes=LIMIT)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        try:
            writer.write(
                b"POST /models HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 10737418240\r\n\r\n"
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        finally:
            writer.close()
        assert head.startswith(b"HTTP/1.1 413 ")
        assert upstream.total == 0


# --- what responses say -------------------------------------------------------------


async def test_server_header_names_only_the_gateway(upstream: Upstream) -> None:
    async with running(settings_for(upstream)) as gw:
        for path in ("/models/1", "/nowhere", "/down/1"):
            response = await gw.get(path)
            assert response.headers.getall("Server") == ["nocode-gateway"], path


# --- CORS ---------------------------------------------------------------------------


def cors_settings(upstream: Upstream) -> GatewaySettings:
    return settings_for(upstream, cors_origins=[ORIGIN, "http://localhost:3000"])


async def test_preflight_from_allowed_origin_is_answered_by_the_gateway(
    upstream: Upstream,
) -> None:
    async with running(cors_settings(upstream)) as gw:
        response = await gw.options(
            "/models/1",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert response.status == 204
        headers = response.headers
        assert headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "PUT" in headers["Access-Control-Allow-Methods"]
        allowed_headers = headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed_headers
        assert "content-type" in allowed_headers
        assert headers["Access-Control-Max-Age"] == "600"
        assert "Origin" in headers["Vary"]
        assert upstream.total == 0


async def test_preflight_from_other_origin_gets_no_cors_headers(upstream: Upstream) -> None:
    async with running(cors_settings(upstream)) as gw:
        response = await gw.options(
            "/models/1",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert response.status == 403
        assert await response.json() == {"detail": "CORS: origin not allowed"}
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]
        assert upstream.total == 0


async def test_simple_request_from_allowed_origin_gets_the_headers(upstream: Upstream) -> None:
    async with running(cors_settings(upstream)) as gw:
        response = await gw.get("/models/1", headers={"Origin": ORIGIN})
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
        assert "Origin" in response.headers["Vary"]

        # Errors the gateway makes itself carry them too, so a browser can read them.
        response = await gw.get("/nowhere", headers={"Origin": ORIGIN})
        assert response.status == 404
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_simple_request_from_other_origin_gets_none(upstream: Upstream) -> None:
    async with running(cors_settings(upstream)) as gw:
        # Even when the upstream itself says "*": the gateway owns CORS.
        for path in ("/models/1", "/models/cors-aware"):
            response = await gw.get(path, headers={"Origin": "https://evil.example"})
            assert response.status == 200
            assert not [h for h in response.headers if h.lower().startswith("access-control-")]
            assert "Origin" in response.headers["Vary"]


async def test_no_cors_headers_when_no_origin_is_configured(upstream: Upstream) -> None:
    async with running(settings_for(upstream)) as gw:
        response = await gw.get("/models/1", headers={"Origin": ORIGIN})
        assert "Access-Control-Allow-Origin" not in response.headers
        response = await gw.options(
            "/models/1", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert "Access-Control-Allow-Origin" not in response.headers
