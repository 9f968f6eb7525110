"""Gateway settings, read from the environment (``GATEWAY_*`` plus the shared ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from servicekit.settings import ServiceSettings

DEFAULT_ROUTES: dict[str, str] = {
    "/models": "http://127.0.0.1:8082",
    "/notices": "http://127.0.0.1:8083",
    "/cores": "http://127.0.0.1:8084",
    "/targets": "http://127.0.0.1:8085",
    "/myRequests": "http://127.0.0.1:8086",
    "/ui": "http://127.0.0.1:8087",  # the web console (gateway.console)
}


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    port: int = Field(8080, validation_alias="GATEWAY_PORT")
    # Users and roles (gateway.users); migrated by `nocode migrate` / `nocode up`.
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

    # Identity (gateway.auth_routes): the first admin, seeded at startup when the password is
    # set and no user of that name exists; and the menu catalogue (default gateway/menus.json).
    admin_username: str = Field("admin", validation_alias="GATEWAY_ADMIN_USERNAME")
    admin_password: SecretStr | None = Field(None, validation_alias="GATEWAY_ADMIN_PASSWORD")
    menus_file: Path | None = Field(None, validation_alias="GATEWAY_MENUS_FILE")
    # How long the aggregated /openapi.json (gateway.openapi) is kept before the services'
    # documents are fetched again.
    openapi_cache_s: float = Field(300.0, ge=0, validation_alias="GATEWAY_OPENAPI_CACHE_S")
    # When set, /metrics answers only a request with this bearer token (Prometheus's
    # credentials); unset, it is open (k8s keeps it internal with an AuthorizationPolicy).
    metrics_token: SecretStr | None = Field(None, validation_alias="GATEWAY_METRICS_TOKEN")

    # Sessions (gateway.sessions): short access tokens, rotating refresh tokens, and how long
    # a user's state (disabled, roles, token version) may be served from memory.
    access_token_ttl_s: int = Field(
        900, ge=1, le=900, validation_alias="GATEWAY_ACCESS_TOKEN_TTL_S"
    )
    refresh_token_ttl_s: int = Field(
        12 * 3600, ge=60, validation_alias="GATEWAY_REFRESH_TOKEN_TTL_S"
    )
    access_check_cache_s: float = Field(
        2.0, ge=0, le=5, validation_alias="GATEWAY_ACCESS_CHECK_CACHE_S"
    )

    # Protection (gateway.rate_limit, gateway.body_limit, gateway.cors, gateway.breakers,
    # gateway.retry_policy).
    upstream_connect_timeout_s: float = Field(
        5.0, gt=0, validation_alias="GATEWAY_UPSTREAM_CONNECT_TIMEOUT_S"
    )
    # Per caller (a token's subject; the address without one); 0 turns it off. 500/s is
    # above what the whole platform serves on 2 cores (the seed's siege, 25 users, one
    # token, must not see a 429) yet still stops one token from flooding the services.
    rate_limit_per_s: float = Field(500.0, ge=0, validation_alias="GATEWAY_RATE_LIMIT_PER_S")
    rate_limit_burst: int = Field(1000, ge=1, validation_alias="GATEWAY_RATE_LIMIT_BURST")
    rate_limit_max_keys: int = Field(100_000, ge=1, validation_alias="GATEWAY_RATE_LIMIT_MAX_KEYS")
    token_rate_limit_per_s: float = Field(
        1.0, ge=0, validation_alias="GATEWAY_TOKEN_RATE_LIMIT_PER_S"
    )  # POST /auth/token per client address (password checks); 0: the general limit applies
    token_rate_limit_burst: int = Field(10, ge=1, validation_alias="GATEWAY_TOKEN_RATE_LIMIT_BURST")
    # Behind proxies (gateway.clients): how many of them append to X-Forwarded-For; 0 (no
    # proxy) ignores the header. Logins per username (gateway.token_routes): a bucket each.
    trusted_proxy_hops: int = Field(0, ge=0, le=10, validation_alias="GATEWAY_TRUSTED_PROXY_HOPS")
    login_user_rate_limit_per_s: float = Field(
        0.1, ge=0, validation_alias="GATEWAY_LOGIN_USER_RATE_LIMIT_PER_S"
    )  # POST /auth/token per username; 0 turns it off
    login_user_rate_limit_burst: int = Field(
        10, ge=1, validation_alias="GATEWAY_LOGIN_USER_RATE_LIMIT_BURST"
    )
    max_body_bytes: int = Field(1024 * 1024, ge=1, validation_alias="GATEWAY_MAX_BODY_BYTES")
    cors_origins: list[str] = Field(
        default_factory=list, validation_alias="GATEWAY_CORS_ORIGINS"
    )  # JSON list of origins allowed from browsers; empty: no CORS headers at all
    cors_max_age_s: int = Field(600, ge=0, validation_alias="GATEWAY_CORS_MAX_AGE_S")
    breaker_failures: int = Field(5, ge=1, validation_alias="GATEWAY_BREAKER_FAILURES")
    breaker_reset_s: float = Field(10.0, gt=0, validation_alias="GATEWAY_BREAKER_RESET_S")
    retries: int = Field(2, ge=0, validation_alias="GATEWAY_RETRIES")  # GET, HEAD, OPTIONS only
    retry_backoff_initial_s: float = Field(
        0.05, ge=0, validation_alias="GATEWAY_RETRY_BACKOFF_INITIAL_S"
    )
    retry_backoff_max_s: float = Field(0.5, ge=0, validation_alias="GATEWAY_RETRY_BACKOFF_MAX_S")
