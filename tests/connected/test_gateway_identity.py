"""The gateway's identity over TCP: tokens, the admin API, menus, and what it refuses.

The gateway runs under aiohttp's TestServer with its own freshly migrated database, in
front of a tiny upstream that echoes the headers it receives.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import asyncpg
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import SERVER_OPTIONS, build_app
from gateway.settings import GatewaySettings
from servicekit.auth import TokenIssuer, TokenVerifier, generate_keypair
from tests.support import free_port, migrated_database

pytestmark = pytest.mark.connected

ISS = "nocode-gateway"
AUD = "nocode"
ADMIN_PASSWORD = "admin-password-1"
PRIVATE_1, PUBLIC_1 = generate_keypair()
PRIVATE_2, PUBLIC_2 = generate_keypair()
PRIVATE_OTHER, PUBLIC_OTHER = generate_keypair()
SIGNER_1 = TokenIssuer(PRIVATE_1, "k1", ISS, AUD)
SIGNER_2 = TokenIssuer(PRIVATE_2, "k2", ISS, AUD)
EVIL = "'; DROP TABLE users;--"
TOKEN_HINT = "get a token with POST /auth/token (form fields username and password)"
EVERYONE_MENUS = ["my-requests", "new-model-request", "new-target-request", "notices"]
ADMIN_MENUS = ["model-approvals", "target-approvals", "jobs", "users"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(
    header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    """A JWT assembled by hand, for the tokens no honest library would produce."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def good_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "mallory", "roles": ["admin"], "iat": now, "exp": now + 600}
    return {**claims, "iss": ISS, "aud": AUD, **changes}


@dataclass
class Upstream:
    url: str = ""
    seen: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream()

    async def echo(request: web.Request) -> web.Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        state.seen.append(headers)
        return web.json_response({"path": request.path, "headers": headers})

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    try:
        yield state
    finally:
        await server.close()


@pytest.fixture
async def gateway_db(postgres_admin_url: str) -> str:
    return await migrated_database(postgres_admin_url, "gateway")


GatewayFactory = Callable[..., Any]


@pytest.fixture
def make_gateway(upstream: Upstream, gateway_db: str) -> GatewayFactory:
    """Start a gateway with settings overrides: ``async with make_gateway(**s) as client``."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[TestClient]:
        settings: dict[str, Any] = {
            "routes": {"/models": upstream.url, "/myRequests": upstream.url},
            "database_url": gateway_db,
            "jwt_public_keys": {"k1": PUBLIC_1, "k2": PUBLIC_2},
            "jwt_private_key": PRIVATE_1,
            "jwt_key_id": "k1",
            "admin_password": ADMIN_PASSWORD,
            "rate_limit_per_s": 0,
            **overrides,
        }
        server = TestServer(build_app(GatewaySettings(**settings)), host="127.0.0.1")
        await server.start_server(**SERVER_OPTIONS)
        async with TestClient(server) as client:
            yield client

    return start


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> AsyncIterator[TestClient]:
    async with make_gateway() as client:
        yield client


async def login(client: TestClient, username: str, password: str) -> str:
    response = await client.post("/auth/token", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    return (await response.json())["access_token"]


@pytest.fixture
async def admin(gateway: TestClient) -> dict[str, str]:
    return bearer(await login(gateway, "admin", ADMIN_PASSWORD))


async def create_user(
    client: TestClient, admin: dict[str, str], username: str, roles: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"username": username, "password": f"{username}-password"}
    if roles is not None:
        body["roles"] = roles
    response = await client.post("/users", json=body, headers=admin)
    assert response.status == 201, await response.text()
    return await response.json()


def user_path(username: str, *rest: str) -> str:
    return "/".join(["/users", quote(username, safe=""), *rest])


async def assert_unauthorized(response: Any) -> str:
    assert response.status == 401, await response.text()
    assert response.headers["WWW-Authenticate"] == "Bearer"
    detail = (await response.json())["detail"]
    assert detail.startswith("unauthorized: ")
    return detail


# --- tokens the gateway refuses -----------------------------------------------------


def _tampered() -> str:
    header, _, signature = SIGNER_1.issue("bob", ["user"]).split(".")
    forged = b64url(json.dumps(good_claims(sub="bob")).encode())
    return f"{header}.{forged}.{signature}"


def _bad_signature() -> str:
    token = SIGNER_1.issue("bob", ["user"])
    last = token[-2]
    return token[:-2] + ("A" if last != "A" else "B") + token[-1]


BAD_TOKENS: dict[str, Callable[[], str | None]] = {
    "no token": lambda: None,
    "expired": lambda: SIGNER_1.issue("bob", ["user"], ttl_s=-30),
    "wrong audience": lambda: TokenIssuer(PRIVATE_1, "k1", ISS, "somebody-else").issue(
        "bob", ["user"]
    ),
    "wrong issuer": lambda: TokenIssuer(PRIVATE_1, "k1", "evil-issuer", AUD).issue("bob", ["user"]),
    "tampered claims": _tampered,
    "tampered signature": _bad_signature,
    "alg none": lambda: hand_made(
        {"alg": "none", "typ": "JWT", "kid": "k1"}, good_claims(), lambda _: b""
    ),
    "HS256 keyed with the public key": lambda: hand_made(
        {"alg": "HS256", "typ": "JWT", "kid": "k1"},
        good_claims(),
        lambda data: hmac.new(PUBLIC_1.encode(), data, hashlib.sha256).digest(),
    ),
    "unknown kid": lambda: TokenIssuer(PRIVATE_OTHER, "k9", ISS, AUD).issue("bob", ["user"]),
    "known kid, other key": lambda: TokenIssuer(PRIVATE_OTHER, "k1", ISS, AUD).issue(
        "bob", ["admin"]
    ),
    "no roles claim": lambda: jwt.encode(
        {k: v for k, v in good_claims().items() if k != "roles"},
        SIGNER_1.key,
        algorithm="EdDSA",
        headers={"kid": "k1"},
    ),
    "not a JWT": lambda: "not-a-token",
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_tokens_are_401_and_never_reach_upstream(
    gateway: TestClient, upstream: Upstream, case: str
) -> None:
    token = BAD_TOKENS[case]()
    headers = bearer(token) if token is not None else {}
    for method, path in (("GET", "/models/1"), ("POST", "/models"), ("GET", "/menus")):
        response = await gateway.request(method, path, headers=headers, json={})
        await assert_unauthorized(response)
    assert upstream.seen == []


async def test_other_schemes_are_401(gateway: TestClient) -> None:
    for value in ("Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer  ", SIGNER_1.issue("bob", [])):
        response = await gateway.get("/models/1", headers={"Authorization": value})
        detail = await assert_unauthorized(response)
        assert detail == f"unauthorized: missing bearer token; {TOKEN_HINT}"


async def test_valid_token_passes_with_its_header_and_no_forged_identity(
    gateway: TestClient, upstream: Upstream
) -> None:
    token = SIGNER_1.issue("bob", ["user"])
    forged = {"X-User-Id": "admin", "X-User-Roles": "admin", "x-user-name": "root"}
    for _ in range(2):  # the second time from the verified-token memory
        response = await gateway.get("/models/1", headers={**bearer(token), **forged})
        assert response.status == 200
        headers = (await response.json())["headers"]
        assert headers["authorization"] == f"Bearer {token}"
        assert not [name for name in headers if name.startswith("x-user-")]


async def test_public_routes_need_no_token(gateway: TestClient) -> None:
    for path in ("/health/live", "/health/ready", "/metrics"):
        response = await gateway.get(path)
        assert response.status == 200, path
    response = await gateway.get("/auth/token")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


async def test_token_expiring_while_remembered_is_refused(
    gateway: TestClient, upstream: Upstream
) -> None:
    token = SIGNER_1.issue("bob", ["user"], ttl_s=2)
    response = await gateway.get("/models/1", headers=bearer(token))
    assert response.status == 200
    # PyJWT compares whole seconds: past exp + 1 the token is expired whatever the rounding.
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    await asyncio.sleep(max(0.0, exp + 1.05 - time.time()))
    response = await gateway.get("/models/1", headers=bearer(token))
    assert await assert_unauthorized(response) == f"unauthorized: token expired; {TOKEN_HINT}"


# --- key rotation -------------------------------------------------------------------


async def test_key_rotation_by_kid(make_gateway: GatewayFactory) -> None:
    old, new = SIGNER_1.issue("bob", ["user"]), SIGNER_2.issue("bob", ["user"])
    # Both keys published, signing with the new one.
    async with make_gateway(jwt_private_key=PRIVATE_2, jwt_key_id="k2") as client:
        for token in (old, new):
            assert (await client.get("/models/1", headers=bearer(token))).status == 200
        issued = await login(client, "admin", ADMIN_PASSWORD)
        assert jwt.get_unverified_header(issued)["kid"] == "k2"
    # The old key dropped: its tokens are refused, the new key's still pass.
    async with make_gateway(
        jwt_public_keys={"k2": PUBLIC_2}, jwt_private_key=PRIVATE_2, jwt_key_id="k2"
    ) as client:
        response = await client.get("/models/1", headers=bearer(old))
        detail = await assert_unauthorized(response)
        assert detail == f"unauthorized: token signed with an unknown key; {TOKEN_HINT}"
        for token in (new, issued):
            assert (await client.get("/models/1", headers=bearer(token))).status == 200


# --- /auth/token --------------------------------------------------------------------


async def test_token_for_the_seeded_admin(gateway: TestClient) -> None:
    response = await gateway.post(
        "/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900  # GATEWAY_ACCESS_TOKEN_TTL_S: 15 minutes at most
    assert len(body["refresh_token"]) >= 40 and body["refresh_expires_in"] == 12 * 3600
    identity = TokenVerifier({"k1": PUBLIC_1}, ISS, AUD).verify(body["access_token"])
    assert identity.subject == "admin"
    assert identity.roles == {"admin", "user"}
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900


async def test_token_from_a_form(gateway: TestClient) -> None:
    response = await gateway.post(
        "/auth/token",
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
    )
    assert response.status == 200
    assert (await response.json())["access_token"]


async def test_wrong_password_unknown_and_disabled_users_look_alike(
    gateway: TestClient, admin: dict[str, str]
) -> None:
    await create_user(gateway, admin, "dora")
    assert (await gateway.put(user_path("dora", "disable"), headers=admin)).status == 200
    details = set()
    for username, password in (
        ("admin", "wrong-password"),
        ("nobody", "whatever-password"),
        ("dora", "dora-password"),  # the right password, but disabled
        ("x" * 500, "whatever-password"),
    ):
        response = await gateway.post(
            "/auth/token", json={"username": username, "password": password}
        )
        details.add(await assert_unauthorized(response))
    assert details == {"unauthorized: invalid username or password"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "x"}, "username"),
        ({"username": "admin"}, "password"),
        ({"username": "", "password": "x"}, "username"),
        ({"username": 3, "password": "x"}, "username"),
        ({"username": "admin", "password": "x", "grant_type": "client_credentials"}, "grant_type"),
    ],
)
async def test_token_request_missing_fields_is_422_naming_it(
    gateway: TestClient, body: dict[str, Any], field: str
) -> None:
    response = await gateway.post("/auth/token", json=body)
    assert response.status == 422
    answer = await response.json()
    assert answer["errors"][0]["field"] == field
    assert field in answer["detail"]


async def test_token_request_with_broken_json_is_422(gateway: TestClient) -> None:
    for data in (b"{not json", b"[1, 2]"):
        response = await gateway.post(
            "/auth/token", data=data, headers={"Content-Type": "application/json"}
        )
        assert response.status == 422
        assert (await response.json())["errors"][0]["field"] == "body"


async def test_no_signing_key_is_503(make_gateway: GatewayFactory) -> None:
    async with make_gateway(jwt_private_key=None) as client:
        response = await client.post(
            "/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert response.status == 503
        assert await response.json() == {"detail": "token signing is not configured"}


# --- seeding ------------------------------------------------------------------------


async def test_seeding_leaves_an_existing_admin_alone(
    gateway: TestClient, make_gateway: GatewayFactory
) -> None:
    async with make_gateway(admin_password="another-password") as again:
        await login(again, "admin", ADMIN_PASSWORD)
        response = await again.post(
            "/auth/token", json={"username": "admin", "password": "another-password"}
        )
        await assert_unauthorized(response)


async def test_no_admin_without_a_password(make_gateway: GatewayFactory) -> None:
    async with make_gateway(admin_password=None) as client:
        response = await client.post("/auth/token", json={"username": "admin", "password": ""})
        assert response.status == 422
        response = await client.post(
            "/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        await assert_unauthorized(response)


async def test_seeded_admin_with_another_name(make_gateway: GatewayFactory) -> None:
    async with make_gateway(admin_username="root") as client:
        token = await login(client, "root", ADMIN_PASSWORD)
        menus = await (await client.get("/menus", headers=bearer(token))).json()
        assert menus["roles"] == ["admin", "user"]


# --- the admin API ------------------------------------------------------------------


async def test_only_admins_manage_users(gateway: TestClient, admin: dict[str, str]) -> None:
    await create_user(gateway, admin, "bob")
    bob = bearer(await login(gateway, "bob", "bob-password"))
    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/users", {"username": "eve", "password": "eve-password"}),
        ("GET", "/users", None),
        ("GET", user_path("bob"), None),
        ("PUT", user_path("admin", "disable"), None),
        ("PUT", user_path("bob", "enable"), None),
        ("PUT", user_path("bob", "roles", "admin"), None),
        ("DELETE", user_path("admin", "roles", "admin"), None),
        ("PUT", user_path("admin", "password"), {"password": "hijacked-password"}),
    ]
    for method, path, body in attempts:
        response = await gateway.request(method, path, json=body, headers=bob)
        assert response.status == 403, (method, path)
        assert await response.json() == {"detail": "forbidden: only an admin may manage users"}
    # Nothing changed: eve does not exist, bob is no admin, admin's password holds.
    assert (await gateway.get(user_path("eve"), headers=admin)).status == 404
    assert (await (await gateway.get(user_path("bob"), headers=admin)).json())["roles"] == ["user"]
    await login(gateway, "admin", ADMIN_PASSWORD)


async def test_admin_creates_grants_revokes_disables(
    gateway: TestClient, admin: dict[str, str]
) -> None:
    created = await create_user(gateway, admin, "carol")
    assert created["username"] == "carol"
    assert created["roles"] == ["user"]
    assert created["disabled"] is False

    async def menus_of(username: str) -> tuple[list[str], list[str]]:
        token = await login(gateway, username, f"{username}-password")
        body = await (await gateway.get("/menus", headers=bearer(token))).json()
        return body["roles"], [m["id"] for m in body["menus"]]

    assert await menus_of("carol") == (["user"], EVERYONE_MENUS)

    response = await gateway.put(user_path("carol", "roles", "admin"), headers=admin)
    assert response.status == 200
    assert (await response.json())["roles"] == ["admin", "user"]
    assert await menus_of("carol") == (["admin", "user"], EVERYONE_MENUS + ADMIN_MENUS)
    # Granting again changes nothing.
    response = await gateway.put(user_path("carol", "roles", "admin"), headers=admin)
    assert (await response.json())["roles"] == ["admin", "user"]

    response = await gateway.delete(user_path("carol", "roles", "admin"), headers=admin)
    assert response.status == 200
    assert (await response.json())["roles"] == ["user"]
    assert await menus_of("carol") == (["user"], EVERYONE_MENUS)

    response = await gateway.put(user_path("carol", "disable"), headers=admin)
    assert response.status == 200
    assert (await response.json())["disabled"] is True
    response = await gateway.post(
        "/auth/token", json={"username": "carol", "password": "carol-password"}
    )
    await assert_unauthorized(response)

    response = await gateway.put(user_path("carol", "enable"), headers=admin)
    assert (await response.json())["disabled"] is False
    await login(gateway, "carol", "carol-password")

    response = await gateway.put(
        user_path("carol", "password"), json={"password": "a-new-password"}, headers=admin
    )
    assert response.status == 200
    await login(gateway, "carol", "a-new-password")
    response = await gateway.post(
        "/auth/token", json={"username": "carol", "password": "carol-password"}
    )
    await assert_unauthorized(response)


async def test_user_listing_shows_no_hashes(gateway: TestClient, admin: dict[str, str]) -> None:
    await create_user(gateway, admin, "zed", roles=["admin", "user"])
    response = await gateway.get("/users", headers=admin)
    assert response.status == 200
    listed = await response.json()
    assert [u["username"] for u in listed] == ["admin", "zed"]
    assert set(listed[1]) == {"username", "roles", "disabled", "createdAt", "updatedAt"}
    assert "argon2" not in await response.text()
    response = await gateway.get("/users?limit=1&offset=1", headers=admin)
    assert [u["username"] for u in await response.json()] == ["zed"]
    response = await gateway.get("/users?limit=0", headers=admin)
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "limit"


async def test_admin_api_errors(gateway: TestClient, admin: dict[str, str]) -> None:
    await create_user(gateway, admin, "bob")

    async def answer(method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        response = await gateway.request(method, path, json=body, headers=admin)
        return response.status, await response.json()

    status, body = await answer(
        "POST", "/users", {"username": "bob", "password": "long-enough-pass"}
    )
    assert (status, body["detail"]) == (
        409,
        "user 'bob' already exists (usernames are unique ignoring case)",
    )
    status, _ = await answer("POST", "/users", {"username": "BOB", "password": "long-enough-pass"})
    assert status == 409
    for method, path in (
        ("GET", user_path("nobody")),
        ("PUT", user_path("nobody", "disable")),
        ("PUT", user_path("nobody", "roles", "admin")),
        ("PUT", user_path("nobody", "password")),
    ):
        status, body = await answer(method, path, {"password": "long-enough-pass"})
        assert (status, body) == (404, {"detail": "user 'nobody' not found"}), (method, path)

    cases: list[tuple[str, str, Any, str]] = [
        ("POST", "/users", {"password": "long-enough-pass"}, "username"),
        ("POST", "/users", {"username": "eve"}, "password"),
        ("POST", "/users", {"username": "eve", "password": "short"}, "password"),
        ("POST", "/users", {"username": " eve", "password": "long-enough-pass"}, "username"),
        ("POST", "/users", {"username": "e/ve", "password": "long-enough-pass"}, "username"),
        ("POST", "/users", {"username": "e\x00ve", "password": "long-enough-pass"}, "username"),
        ("POST", "/users", {"username": "e" * 129, "password": "long-enough-pass"}, "username"),
        (
            "POST",
            "/users",
            {"username": "eve", "password": "long-enough-pass", "roles": ["god"]},
            "roles",
        ),
        (
            "POST",
            "/users",
            {"username": "eve", "password": "long-enough-pass", "roles": "admin"},
            "roles",
        ),
        ("PUT", user_path("bob", "roles", "service"), None, "role"),
        ("DELETE", user_path("bob", "roles", "god"), None, "role"),
        ("PUT", user_path("bob", "password"), {}, "password"),
    ]
    for method, path, request_body, named in cases:
        status, body = await answer(method, path, request_body)
        assert status == 422, (path, request_body, body)
        assert body["errors"][0]["field"] == named, (path, request_body, body)
        assert body["detail"].startswith(f"invalid request: {named}: ")
    assert (await gateway.get(user_path("eve"), headers=admin)).status == 404

    response = await gateway.patch("/users", headers=admin)
    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD, POST"


async def test_create_from_a_form(gateway: TestClient, admin: dict[str, str]) -> None:
    response = await gateway.post(
        "/users",
        data={"username": "fay", "password": "fay-password", "roles": "admin,user"},
        headers=admin,
    )
    assert response.status == 201
    assert (await response.json())["roles"] == ["admin", "user"]
    assert response.headers["Location"] == "/users/fay"


async def test_the_last_admin_stays(gateway: TestClient, admin: dict[str, str]) -> None:
    for method, path in (
        ("PUT", user_path("admin", "disable")),
        ("DELETE", user_path("admin", "roles", "admin")),
    ):
        response = await gateway.request(method, path, headers=admin)
        assert response.status == 409
        assert "last enabled admin" in (await response.json())["detail"]
    await create_user(gateway, admin, "second", roles=["admin"])
    response = await gateway.delete(user_path("admin", "roles", "admin"), headers=admin)
    assert response.status == 200
    assert (await response.json())["roles"] == ["user"]


async def test_hostile_username_is_stored_and_returned_verbatim(
    gateway: TestClient, admin: dict[str, str], gateway_db: str
) -> None:
    created = await create_user(gateway, admin, EVIL)
    assert created["username"] == EVIL
    response = await gateway.get(user_path(EVIL), headers=admin)
    assert response.status == 200
    assert (await response.json())["username"] == EVIL
    token = await login(gateway, EVIL, f"{EVIL}-password")
    menus = await (await gateway.get("/menus", headers=bearer(token))).json()
    assert menus["username"] == EVIL
    listed = await (await gateway.get("/users", headers=admin)).json()
    assert EVIL in [u["username"] for u in listed]
    conn = await asyncpg.connect(gateway_db.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == 2
        assert await conn.fetchval("SELECT username FROM users WHERE username = $1", EVIL) == EVIL
    finally:
        await conn.close()


# --- menus --------------------------------------------------------------------------


async def test_menus_differ_by_role(gateway: TestClient) -> None:
    async def menus(*roles: str) -> list[dict[str, str]]:
        token = SIGNER_1.issue("someone", list(roles))
        response = await gateway.get("/menus", headers=bearer(token))
        assert response.status == 200
        return (await response.json())["menus"]

    for_user = await menus("user")
    for_admin = await menus("admin", "user")
    assert [m["id"] for m in for_user] == EVERYONE_MENUS
    assert [m["id"] for m in for_admin] == EVERYONE_MENUS + ADMIN_MENUS
    assert [m["id"] for m in await menus()] == EVERYONE_MENUS
    assert for_user[1] == {
        "id": "new-model-request",
        "title": "New model request",
        "method": "POST",
        "path": "/models",
    }
    assert {"id": "users", "title": "Users & permissions", "method": "GET", "path": "/users"} in (
        for_admin
    )


# --- failures answer JSON -----------------------------------------------------------


async def test_user_database_down_is_503_json_and_proxying_goes_on(
    make_gateway: GatewayFactory,
) -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/gateway"
    async with make_gateway(database_url=nowhere, admin_password=None) as client:
        response = await client.post(
            "/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert response.status == 503
        assert await response.json() == {"detail": "user database unavailable"}
        admin = bearer(SIGNER_1.issue("admin", ["admin"]))
        response = await client.get("/users", headers=admin)
        assert (response.status, await response.json()) == (
            503,
            {"detail": "user database unavailable"},
        )
        response = await client.get("/models/1", headers=admin)
        assert response.status == 200
