"""The gateway's one OpenAPI document (issue 15 item 1) over the whole platform: every
service's paths as a client calls them through the gateway, the gateway's own (/auth,
/users, /menus), valid by openapi-spec-validator, each operation with its error answers;
a service that is down is left out and comes back once it is up; Swagger UI at /docs
from local assets. And the 401 of a request without a token says how to get one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from contracts.topics import ALL_TOPICS
from nocode.embedded_broker import EmbeddedBroker
from servicekit.kafka import ensure_topics
from tests.connected.whole_platform import SERVICES, Platform, whole_platform
from tests.support import eventually, free_port

pytestmark = pytest.mark.connected

Json = dict[str, Any]
SERVICE_ERRORS = {"401", "403", "404", "409", "422", "503"}
TOKEN_HINT = "get a token with POST /auth/token (form fields username and password)"
# Method, path, the error answers it must document (besides whatever else it lists).
EXPECTED: list[tuple[str, str, set[str]]] = [
    ("post", "/auth/token", {"401", "422", "429", "503"}),
    ("post", "/auth/refresh", {"401", "422", "503"}),
    ("post", "/auth/logout", {"401", "422"}),
    ("get", "/menus", {"401"}),
    ("get", "/users", {"401", "403", "422", "503"}),
    ("post", "/users", {"401", "403", "409", "422", "503"}),
    ("get", "/users/{username}", {"401", "403", "404", "503"}),
    ("put", "/users/{username}/disable", {"401", "403", "404", "409", "503"}),
    ("put", "/users/{username}/password", {"401", "403", "404", "422", "503"}),
    ("put", "/users/{username}/roles/{role}", {"401", "403", "404", "409", "422", "503"}),
    ("delete", "/users/{username}/roles/{role}", {"401", "403", "404", "409", "422", "503"}),
    ("post", "/models", SERVICE_ERRORS | {"429", "502", "504"}),
    ("get", "/models/{id}", SERVICE_ERRORS),
    ("put", "/models/{id}/reject", SERVICE_ERRORS),
    ("post", "/targets", SERVICE_ERRORS),
    ("get", "/targets", SERVICE_ERRORS),
    ("get", "/cores/{id}", SERVICE_ERRORS),
    ("get", "/notices", SERVICE_ERRORS),
    ("get", "/myRequests", SERVICE_ERRORS),
    ("get", "/myRequests/{kind}/{id}/timeline", SERVICE_ERRORS),
]


@pytest.fixture(scope="module")
async def platform(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    broker = EmbeddedBroker(free_port(), log_file=Path(tmp_path_factory.mktemp("b")) / "log")
    broker.start()
    try:
        await ensure_topics(broker.bootstrap_servers, ALL_TOPICS, 3, 1)
        # No caching of the document, so the test sees a service leave and come back.
        gateway = {"openapi_cache_s": 0.0}
        async with whole_platform(
            postgres_admin_url, broker.bootstrap_servers, gateway=gateway
        ) as running:
            yield running
    finally:
        broker.stop()


async def spec_of(gateway: httpx.AsyncClient) -> Json:
    answer = await gateway.get("/openapi.json", headers={"Authorization": ""})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    return answer.json()


def error_schema(operation: Json, status: str) -> str:
    answer = operation["responses"][status]
    return answer["content"]["application/json"]["schema"]["$ref"]


async def test_one_valid_document_with_every_public_path_and_its_errors(
    platform: tuple[Platform, httpx.AsyncClient],
) -> None:
    _, gateway = platform
    spec = await spec_of(gateway)
    validate(spec)  # raises on anything OpenAPI 3.1 does not allow
    assert "x-unavailable" not in spec
    paths = spec["paths"]
    operations = sum(len(item) for item in paths.values())
    print(f"\naggregated OpenAPI: {len(paths)} paths, {operations} operations")
    for method, path, errors in EXPECTED:
        operation = paths[path][method]
        missing = errors - set(operation["responses"])
        assert not missing, f"{method.upper()} {path} lacks {sorted(missing)}"
        for status in errors:
            assert error_schema(operation, status) == "#/components/schemas/Error"
        if operation.get("security") == [{"bearer": []}]:
            assert TOKEN_HINT in operation["responses"]["401"]["description"], path
    # Only what the gateway routes: no service's health, metrics or docs.
    assert not [p for p in paths if p.startswith(("/health/outbox", "/metrics", "/docs"))]
    for prefix in ("/models", "/targets", "/cores", "/notices", "/myRequests"):
        assert prefix in paths or f"{prefix}/{{id}}" in paths, prefix
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/models"]["post"]["security"] == [{"bearer": []}]
    # Bodies: JSON and form, each with an example; the token endpoint's is a form first.
    for method, path in (("post", "/models"), ("post", "/targets"), ("post", "/auth/token")):
        content = paths[path][method]["requestBody"]["content"]
        assert set(content) == {"application/json", "application/x-www-form-urlencoded"}
        assert all(media["example"] for media in content.values()), path
    token_body = paths["/auth/token"]["post"]["requestBody"]["content"]
    assert token_body["application/x-www-form-urlencoded"]["example"]["username"] == "alice"
    assert paths["/models"]["post"]["requestBody"]["content"]["application/json"]["example"] == {
        "userId": "alice",
        "modelName": "churn-model",
    }


async def test_each_service_documents_its_bodies_bearer_and_errors(
    platform: tuple[Platform, httpx.AsyncClient],
) -> None:
    running, _ = platform
    async with httpx.AsyncClient() as client:
        for name in SERVICES:
            spec = (await client.get(f"{running.url(name)}/openapi.json")).json()
            validate(spec)
            for path, item in spec["paths"].items():
                for method, operation in item.items():
                    if path.startswith("/health"):
                        continue
                    assert operation["security"] == [{"bearer": []}], (name, path)
                    missing = SERVICE_ERRORS - set(operation["responses"])
                    assert not missing, (name, method, path, missing)
                    for media in operation.get("requestBody", {}).get("content", {}).values():
                        assert "example" in media, (name, method, path)


async def test_a_service_that_is_down_is_left_out_until_it_is_back(
    platform: tuple[Platform, httpx.AsyncClient],
) -> None:
    running, gateway = platform
    await running.stop("notice")
    try:
        spec = await spec_of(gateway)
        assert spec["x-unavailable"] == ["/notices"]
        assert not [p for p in spec["paths"] if p.startswith("/notices")]
        assert "/models" in spec["paths"] and "/auth/token" in spec["paths"]
    finally:
        await running.start("notice")

    async def back() -> Json | None:
        spec = await spec_of(gateway)
        return spec if "/notices" in spec["paths"] else None

    spec = await eventually(back, what="notice's paths back in the document")
    assert "x-unavailable" not in spec


async def test_swagger_ui_is_served_from_local_assets(
    platform: tuple[Platform, httpx.AsyncClient],
) -> None:
    _, gateway = platform
    page = await gateway.get("/docs", headers={"Authorization": ""})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "/docs/assets/swagger-ui-bundle.js" in html and "'/openapi.json'" in html
    assert "cdn" not in html.lower()
    for asset, kind in (
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
    ):
        answer = await gateway.get(f"/docs/assets/{asset}", headers={"Authorization": ""})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
        assert len(answer.content) > 100_000
    missing = await gateway.get("/docs/assets/index.html", headers={"Authorization": ""})
    assert missing.status_code == 404


async def test_a_401_says_how_to_get_a_token(platform: tuple[Platform, httpx.AsyncClient]) -> None:
    _, gateway = platform
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer not-a-token"}):
        answer = await gateway.post(
            "/models", json={"userId": "a", "modelName": "m"}, headers=headers
        )
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        detail = answer.json()["detail"]
        assert detail.startswith("unauthorized: ") and detail.endswith("; " + TOKEN_HINT)
        assert answer.json().keys() == {"detail"}
