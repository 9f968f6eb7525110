"""The platform's services, their default ports and the gateway routes to them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    default_port: int
    database: bool = True  # has its own PostgreSQL database (and migrations)

    @property
    def env_prefix(self) -> str:
        return self.name.upper()


SERVICES = (
    ServiceSpec("gateway", 8080),
    ServiceSpec("model", 8082),
    ServiceSpec("notice", 8083),
    ServiceSpec("core", 8084),
    ServiceSpec("target", 8085),
    ServiceSpec("mypage_cqrs", 8086),
    ServiceSpec("console", 8087, database=False),  # the web console: HTML at /ui
)
SERVICE_NAMES = tuple(s.name for s in SERVICES)

# Stand-ins for Vertica, MIDAS and Swing chat; started unless every endpoint is configured.
SIMULATORS = ServiceSpec("simulators", 8090)

# Endpoint setting -> its path on the simulators' server.
EXTERNAL_ENDPOINTS = {
    "VERTICA_URL": "/vertica",
    "MIDAS_URL": "/midas",
    "CHAT_WEBHOOK_URL": "/chat/webhook",
}

# Path prefix at the gateway -> the service behind it.
GATEWAY_ROUTES = {
    "/models": "model",
    "/notices": "notice",
    "/cores": "core",
    "/targets": "target",
    "/myRequests": "mypage_cqrs",
    "/ui": "console",
}
