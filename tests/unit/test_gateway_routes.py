"""The gateway's route table and settings: pure, no I/O."""

from __future__ import annotations

import json

import pytest

from gateway.routes import RouteTable
from gateway.settings import DEFAULT_ROUTES, GatewaySettings


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/models", "/models"),
        ("/models/", "/models"),
        ("/models/1", "/models"),
        ("/models/1/cancel", "/models"),
        ("/models/special/1", "/models/special"),
        ("/modelsX", None),
        ("/model", None),
        ("/", None),
        ("/targets/3", "/targets"),
    ],
)
def test_route_table_matches_on_segment_boundaries(path: str, expected: str | None) -> None:
    table = RouteTable(
        {
            "/models": "http://m:1",
            "/models/special/": "http://s:2/",
            "/targets": "http://t:3",
        }
    )
    route = table.match(path)
    assert (route.prefix if route else None) == expected


def test_route_table_root_prefix_catches_everything_else() -> None:
    table = RouteTable({"/": "http://fallback:1", "/models": "http://m:1"})
    assert table.match("/anything/at/all").upstream == "http://fallback:1"  # type: ignore[union-attr]
    assert table.match("/models/1").upstream == "http://m:1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "routes",
    [{"models": "http://m:1"}, {"/models": "ftp://m"}, {"/a": "http://x:1", "/a/": "http://y:1"}],
)
def test_route_table_rejects_bad_config(routes: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        RouteTable(routes)


def test_settings_read_routes_as_json_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ROUTES", json.dumps({"/models": "http://10.0.0.1:9000"}))
    monkeypatch.setenv("GATEWAY_PORT", "18080")
    monkeypatch.setenv("GATEWAY_UPSTREAM_TIMEOUT_S", "2.5")
    settings = GatewaySettings()
    assert settings.routes == {"/models": "http://10.0.0.1:9000"}
    assert settings.port == 18080
    assert settings.upstream_timeout_s == 2.5
    assert settings.service_name == "gateway"


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY_ROUTES", "GATEWAY_PORT", "GATEWAY_UPSTREAM_CONNECTIONS"):
        monkeypatch.delenv(name, raising=False)
    settings = GatewaySettings()
    assert settings.routes == DEFAULT_ROUTES
    assert settings.port == 8080
    assert settings.upstream_connections == 200
