"""Sessions end when access ends (issue 12, item 1), keys with one job (item 7) and limits
that work behind a proxy (item 8), over TCP against a real gateway.

The gateway runs under aiohttp's TestServer with its own migrated database, in front of a
tiny upstream standing in for the services. Every answer here is what the client sees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import SERVER_OPTIONS, build_app
from gateway.settings import GatewaySettings
from servicekit.auth import TokenIssuer, generate_keypair
from tests.support import migrated_database

pytestmark = pytest.mark.connected

PRIVATE, PUBLIC = generate_keypair()
SIGNER = TokenIssuer(PRIVATE, "k1", "nocode-gateway", "nocode")
ADMIN_PASSWORD = "admin-password-1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def upstream_url() -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def gateway_db(postgres_admin_url: str) -> str:
    return await migrated_database(postgres_admin_url, "gateway")


async def start_gateway(upstream_url: str, gateway_db: str, **overrides: Any) -> TestClient:
    settings: dict[str, Any] = {
        "routes": {"/models": upstream_url},
        "database_url": gateway_db,
        "jwt_public_keys": {"k1": PUBLIC},
        "jwt_private_key": PRIVATE,
        "jwt_key_id": "k1",
        "admin_password": ADMIN_PASSWORD,
        "rate_limit_per_s": 0,
        **overrides,
    }
    server = TestServer(build_app(GatewaySettings(**settings)), host="127.0.0.1")
    await server.start_server(**SERVER_OPTIONS)
    client = TestClient(server)
    await client.start_server()
    return client


@pytest.fixture
async def gateway(upstream_url: str, gateway_db: str) -> AsyncIterator[TestClient]:
    # A long cache on purpose: only the gateway's own forgetting makes a change immediate.
    client = await start_gateway(upstream_url, gateway_db, access_check_cache_s=5)
    try:
        yield client
    finally:
        await client.close()


async def login(client: TestClient, username: str, password: str) -> dict[str, Any]:
    response = await client.post("/auth/token", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    return await response.json()


@pytest.fixture
async def admin(gateway: TestClient) -> dict[str, str]:
    return bearer((await login(gateway, "admin", ADMIN_PASSWORD))["access_token"])


async def add_user(
    client: TestClient, admin: dict[str, str], name: str, roles: list[str]
) -> dict[str, Any]:
    password = f"{name}-password-long"
    body = {"username": name, "password": password, "roles": roles}
    response = await client.post("/users", json=body, headers=admin)
    assert response.status == 201, await response.text()
    return await login(client, name, password)


TOKEN_HINT = "get a token with POST /auth/token (form fields username and password)"


async def refused(response: Any, why: str) -> None:
    """401 for ``why``; a refused bearer token's answer also says how to get a token (the
    refresh and logout endpoints refuse the refresh token they were given, without it)."""
    assert response.status == 401, await response.text()
    assert response.headers["WWW-Authenticate"] == "Bearer"
    on_session = response.url.path in ("/auth/refresh", "/auth/logout")
    expected = f"unauthorized: {why}" if on_session else f"unauthorized: {why}; {TOKEN_HINT}"
    assert (await response.json())["detail"] == expected


async def works(client: TestClient, token: str) -> None:
    response = await client.get("/models/1", headers=bearer(token))
    assert response.status == 200, await response.text()


async def test_a_disabled_admins_old_token_is_refused_at_once(
    gateway: TestClient, admin: dict[str, str]
) -> None:
    eve = await add_user(gateway, admin, "eve", ["admin", "user"])
    eves = bearer(eve["access_token"])
    assert (await gateway.get("/users", headers=eves)).status == 200  # cached as allowed

    assert (await gateway.put("/users/eve/disable", headers=admin)).status == 200

    back_door = {"username": "eve2", "password": "another-long-password", "roles": ["admin"]}
    await refused(
        await gateway.post("/users", json=back_door, headers=eves), "the user is disabled"
    )
    await refused(await gateway.get("/users", headers=eves), "the user is disabled")
    await refused(await gateway.get("/models/1", headers=eves), "the user is disabled")
    again = await gateway.post("/auth/refresh", json={"refresh_token": eve["refresh_token"]})
    await refused(again, "the user's access has changed: sign in again")
    # No back door was made.
    assert (await gateway.get("/users/eve2", headers=admin)).status == 404
    # Enabled again, the old session stays over; a new login works.
    assert (await gateway.put("/users/eve/enable", headers=admin)).status == 200
    await refused(
        await gateway.get("/models/1", headers=eves), "the user's access has changed: sign in again"
    )
    await works(gateway, (await login(gateway, "eve", "eve-password-long"))["access_token"])


async def test_removing_a_role_ends_the_sessions_that_had_it(
    gateway: TestClient, admin: dict[str, str]
) -> None:
    ivan = await add_user(gateway, admin, "ivan", ["admin", "user"])
    ivans = bearer(ivan["access_token"])
    assert (await gateway.get("/users", headers=ivans)).status == 200

    assert (await gateway.delete("/users/ivan/roles/admin", headers=admin)).status == 200

    why = "the user's access has changed: sign in again"
    await refused(await gateway.get("/users", headers=ivans), why)
    await refused(await gateway.get("/models/1", headers=ivans), why)
    again = await gateway.post("/auth/refresh", json={"refresh_token": ivan["refresh_token"]})
    await refused(again, why)
    fresh = await login(gateway, "ivan", "ivan-password-long")
    claims = jwt.decode(fresh["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["user"]
    response = await gateway.get("/users", headers=bearer(fresh["access_token"]))
    assert (response.status, await response.json()) == (
        403,
        {"detail": "forbidden: only an admin may manage users"},
    )
    # Granting a role takes nothing away: the session goes on.
    assert (await gateway.put("/users/ivan/roles/admin", headers=admin)).status == 200
    await works(gateway, fresh["access_token"])


async def test_a_new_password_ends_the_sessions(gateway: TestClient, admin: dict[str, str]) -> None:
    pia = await add_user(gateway, admin, "pia", ["user"])
    other = await login(gateway, "pia", "pia-password-long")  # a second device
    await works(gateway, pia["access_token"])

    body = {"password": "a-brand-new-password"}
    assert (await gateway.put("/users/pia/password", json=body, headers=admin)).status == 200

    why = "the user's access has changed: sign in again"
    for session in (pia, other):
        await refused(await gateway.get("/models/1", headers=bearer(session["access_token"])), why)
        again = await gateway.post(
            "/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
        await refused(again, why)
    old = await gateway.post(
        "/auth/token", json={"username": "pia", "password": "pia-password-long"}
    )
    assert old.status == 401
    await works(gateway, (await login(gateway, "pia", "a-brand-new-password"))["access_token"])


async def test_refresh_rotates_and_a_reused_refresh_token_ends_the_family(
    gateway: TestClient, admin: dict[str, str], gateway_db: str
) -> None:
    rita = await add_user(gateway, admin, "rita", ["user"])
    elsewhere = await login(gateway, "rita", "rita-password-long")

    first = await gateway.post("/auth/refresh", json={"refresh_token": rita["refresh_token"]})
    assert first.status == 200, await first.text()
    assert first.headers["Cache-Control"] == "no-store"
    rotated = await first.json()
    assert set(rotated) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
    }
    assert rotated["refresh_token"] != rita["refresh_token"]
    old_claims = jwt.decode(rita["access_token"], options={"verify_signature": False})
    new_claims = jwt.decode(rotated["access_token"], options={"verify_signature": False})
    assert new_claims["sid"] == old_claims["sid"] and new_claims["sub"] == "rita"
    await works(gateway, rotated["access_token"])
    # A form works too (the seed's clients send forms).
    second = await gateway.post("/auth/refresh", data={"refresh_token": rotated["refresh_token"]})
    assert second.status == 200
    latest = await second.json()

    # Only hashes are stored.
    conn = await asyncpg.connect(gateway_db.replace("postgresql+asyncpg", "postgresql"))
    try:
        stored = [
            r["token_hash"] for r in await conn.fetch("SELECT token_hash FROM refresh_tokens")
        ]
    finally:
        await conn.close()
    assert latest["refresh_token"] not in stored and rita["refresh_token"] not in stored
    assert all(len(h) == 64 for h in stored)

    # The first refresh token again: someone copied it. The whole family ends.
    reuse = await gateway.post("/auth/refresh", json={"refresh_token": rita["refresh_token"]})
    await refused(reuse, "refresh token reused: the session has ended")
    latest_again = await gateway.post(
        "/auth/refresh", json={"refresh_token": latest["refresh_token"]}
    )
    await refused(latest_again, "the session has ended")
    await refused(
        await gateway.get("/models/1", headers=bearer(latest["access_token"])),
        "the session has ended",
    )
    # Another session of the same user is untouched.
    await works(gateway, elsewhere["access_token"])
    unknown = await gateway.post("/auth/refresh", json={"refresh_token": "x" * 43})
    await refused(unknown, "unknown refresh token")
    missing = await gateway.post("/auth/refresh", json={})
    assert missing.status == 422
    assert (await missing.json())["errors"] == [
        {"field": "refresh_token", "message": "field required"}
    ]


async def test_logout_ends_one_session(gateway: TestClient, admin: dict[str, str]) -> None:
    lena = await add_user(gateway, admin, "lena", ["user"])
    other = await login(gateway, "lena", "lena-password-long")

    out = await gateway.post("/auth/logout", json={"refresh_token": lena["refresh_token"]})
    assert out.status == 204
    await refused(
        await gateway.get("/models/1", headers=bearer(lena["access_token"])),
        "the session has ended",
    )
    again = await gateway.post("/auth/refresh", json={"refresh_token": lena["refresh_token"]})
    await refused(again, "the session has ended")
    await works(gateway, other["access_token"])

    # With the bearer token alone.
    out = await gateway.post("/auth/logout", headers=bearer(other["access_token"]))
    assert out.status == 204
    await refused(
        await gateway.get("/models/1", headers=bearer(other["access_token"])),
        "the session has ended",
    )
    await refused(
        await gateway.post("/auth/logout"),
        "no session to end: send refresh_token or a session's bearer token",
    )


async def test_the_admin_api_asks_the_user_store_not_the_token(
    gateway: TestClient, admin: dict[str, str]
) -> None:
    await add_user(gateway, admin, "bob", ["user"])
    # Signed with the gateway's own key, claiming a role bob does not have.
    forged = bearer(SIGNER.issue("bob", ["admin", "user"]))
    await refused(
        await gateway.get("/users", headers=forged),
        "the token claims roles the user does not have",
    )
    # A subject that is no user of the store is no admin of it either.
    nobody = bearer(SIGNER.issue("ghost", ["admin"]))
    response = await gateway.post(
        "/users", json={"username": "x", "password": "long-enough-pass"}, headers=nobody
    )
    assert (response.status, await response.json()) == (
        403,
        {"detail": "forbidden: only an admin may manage users"},
    )


async def test_another_gateway_sees_a_change_within_its_cache_time(
    upstream_url: str, gateway_db: str, gateway: TestClient, admin: dict[str, str]
) -> None:
    """Two replicas share the store: the one that did not make the change refuses the
    token once its memory of the user is older than GATEWAY_ACCESS_CHECK_CACHE_S."""
    other = await start_gateway(upstream_url, gateway_db, access_check_cache_s=1)
    try:
        kim = await add_user(gateway, admin, "kim", ["user"])
        await works(other, kim["access_token"])
        assert (await gateway.put("/users/kim/disable", headers=admin)).status == 200
        deadline = time.monotonic() + 10
        while (await other.get("/models/1", headers=bearer(kim["access_token"]))).status != 401:
            assert time.monotonic() < deadline, "the other gateway never refused the token"
            await asyncio.sleep(0.1)
    finally:
        await other.close()


async def test_service_tokens_and_century_tokens_are_refused(gateway: TestClient) -> None:
    service = bearer(SIGNER.issue("core", ["service"]))
    await refused(
        await gateway.get("/models/1", headers=service), "service tokens are not accepted here"
    )
    now = int(time.time())
    century = {"sub": "admin", "roles": ["admin"], "iat": now, "exp": now + 100 * 365 * 86400}
    century |= {"iss": "nocode-gateway", "aud": "nocode"}
    token = jwt.encode(century, SIGNER.key, algorithm="EdDSA", headers={"kid": "k1"})
    await refused(
        await gateway.get("/models/1", headers=bearer(token)),
        "invalid token: it may live at most 86400 s",
    )


# --- limits behind a proxy, and the password policy (item 8) --------------------------


def via(address: str) -> dict[str, str]:
    """What the ingress adds: the address it received the request from."""
    return {"X-Forwarded-For": f"203.0.113.250, {address}"}  # the first entry is the client's lie


async def test_sign_ins_are_limited_per_username_behind_a_proxy_hop(
    upstream_url: str, gateway_db: str
) -> None:
    client = await start_gateway(
        upstream_url,
        gateway_db,
        trusted_proxy_hops=1,
        token_rate_limit_per_s=0.01,
        token_rate_limit_burst=3,
        login_user_rate_limit_per_s=0.01,
        login_user_rate_limit_burst=4,
    )
    try:
        wrong = {"username": "admin", "password": "not-the-password"}
        # One attacker spreading guesses over many addresses: the username's bucket holds.
        guesses = [
            (await client.post("/auth/token", json=wrong, headers=via(f"198.51.100.{i}"))).status
            for i in range(6)
        ]
        assert guesses == [401, 401, 401, 401, 429, 429]
        limited = await client.post("/auth/token", json=wrong, headers=via("198.51.100.99"))
        assert 90 <= int(limited.headers["Retry-After"]) <= 100  # one token per 100 s
        assert (await limited.json())["detail"].startswith(
            "rate limit exceeded: too many sign-ins for this username"
        )
        # The same for a username nobody has: the answer tells nothing about who exists.
        ghost = {"username": "ghost", "password": "not-the-password"}
        statuses = [
            (await client.post("/auth/token", json=ghost, headers=via(f"192.0.2.{i}"))).status
            for i in range(5)
        ]
        assert statuses == [401, 401, 401, 401, 429]
        # Everyone shares the proxy's socket address, yet each client has its own bucket:
        # another client signs in to another account.
        ok = await client.post(
            "/auth/token",
            json={"username": "nobody-yet", "password": "not-the-password"},
            headers=via("192.0.2.200"),
        )
        assert ok.status == 401  # checked, not limited
        # One address, many usernames: the address's bucket (3) holds.
        per_address = [
            (
                await client.post(
                    "/auth/token",
                    json={"username": f"user{i}", "password": "not-the-password"},
                    headers=via("192.0.2.201"),
                )
            ).status
            for i in range(4)
        ]
        assert per_address == [401, 401, 401, 429]
    finally:
        await client.close()


async def test_requests_without_a_valid_token_are_limited_per_client(
    upstream_url: str, gateway_db: str
) -> None:
    client = await start_gateway(
        upstream_url, gateway_db, trusted_proxy_hops=1, rate_limit_per_s=0.01, rate_limit_burst=3
    )
    try:
        forged = bearer("not.a.token")
        statuses = [
            (await client.get("/models/1", headers=forged | via("198.51.100.7"))).status
            for _ in range(4)
        ]
        assert statuses == [401, 401, 401, 429]
        # Another client behind the same proxy is not affected.
        other = await client.get("/models/1", headers=forged | via("198.51.100.8"))
        assert other.status == 401
    finally:
        await client.close()


async def test_the_password_policy(gateway: TestClient, admin: dict[str, str]) -> None:
    async def refused_password(username: str, password: str) -> str:
        body = {"username": username, "password": password}
        response = await gateway.post("/users", json=body, headers=admin)
        assert response.status == 422, await response.text()
        (error,) = (await response.json())["errors"]
        assert error["field"] == "password"
        return error["message"]

    assert await refused_password("carl", " " * 8) == "must be at least 12 characters"
    assert await refused_password("carl", " " * 16) == "must not be blank"
    assert await refused_password("carlos-the-admin", "Carlos-The-Admin") == (
        "must not be the username"
    )
    assert await refused_password("carl", "Password1234") == "is one of the most common passwords"
    body = {"password": "        "}
    response = await gateway.put("/users/admin/password", json=body, headers=admin)
    assert response.status == 422
    assert (await gateway.get("/users/carl", headers=admin)).status == 404
    fine = {"username": "carl", "password": "correct horse battery staple"}
    assert (await gateway.post("/users", json=fine, headers=admin)).status == 201


async def test_metrics_answer_only_prometheus_when_a_token_is_set(
    upstream_url: str, gateway_db: str
) -> None:
    token = "prometheus-scrape-token-0123456789"
    client = await start_gateway(upstream_url, gateway_db, metrics_token=token)
    try:
        for headers in ({}, bearer("wrong"), bearer(token + "x")):
            response = await client.get("/metrics", headers=headers)
            assert response.status == 401
            assert "gateway_requests_total" not in await response.text()
        scraped = await client.get("/metrics", headers=bearer(token))
        assert scraped.status == 200
        assert "gateway_requests_total" in await scraped.text()
    finally:
        await client.close()


async def test_an_expired_refresh_token_is_refused(
    gateway: TestClient, admin: dict[str, str], gateway_db: str
) -> None:
    exp = await add_user(gateway, admin, "exp", ["user"])
    conn = await asyncpg.connect(gateway_db.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    finally:
        await conn.close()
    again = await gateway.post("/auth/refresh", json={"refresh_token": exp["refresh_token"]})
    await refused(again, "refresh token expired")
