"""Gateway settings, read from the environment (``GATEWAY_*`` plus the shared ones)."""

from __future__ import annotations

from pydantic import Field

from servicekit.settings import ServiceSettings

DEFAULT_ROUTES: dict[str, str] = {
    "/models": "http://127.0.0.1:8082",
    "/notices": "http://127.0.0.1:8083",
    "/cores": "http://127.0.0.1:8084",
    "/targets": "http://127.0.0.1:8085",
    "/myRequests": "http://127.0.0.1:8086",
}


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    port: int = Field(8080, validation_alias="GATEWAY_PORT")
    # Unused until the gateway owns users, roles and menus.
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:55432/gateway",
        validation_alias="GATEWAY_DATABASE_URL",
    )
    # Path prefix -> upstream base URL; JSON in the environment.
    routes: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ROUTES), validation_alias="GATEWAY_ROUTES"
    )
    upstream_timeout_s: float = Field(30.0, validation_alias="GATEWAY_UPSTREAM_TIMEOUT_S")
    upstream_connections: int = Field(200, validation_alias="GATEWAY_UPSTREAM_CONNECTIONS")
