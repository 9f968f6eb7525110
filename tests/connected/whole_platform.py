"""The whole platform in one event loop: every service, the gateway and the simulators.

Each service is the real application (its ``bootstrap.build``) on its own
database and port, all on the test's broker, behind the real gateway, with the
real simulators standing in for Vertica, MIDAS and Swing chat. Services can be
stopped and started again one by one, so tests can take one down mid-saga.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from fastapi import FastAPI

from console.bootstrap import build as build_console
from console.settings import ConsoleSettings
from core.bootstrap import build as build_core
from core.settings import CoreSettings
from gateway.app import SERVER_OPTIONS
from gateway.app import build_app as build_gateway
from gateway.settings import GatewaySettings
from gateway.state import TRACING
from model.bootstrap import build as build_model
from model.settings import ModelSettings
from mypage_cqrs.bootstrap import build as build_mypage
from mypage_cqrs.settings import MypageCqrsSettings
from notice.bootstrap import build as build_notice
from notice.settings import NoticeSettings
from servicekit.runtime import ServiceRuntime
from servicekit.settings import ServiceSettings
from servicekit.tracing import Tracing
from simulators.app import build_app as build_simulators
from target.bootstrap import build as build_target
from target.settings import TargetSettings
from tests.connected.services import running, settings_for
from tests.support import AUTH_SETTINGS, bearer, free_port, migrated_database, serving

ADMIN_PASSWORD = "admin-password-for-tests"  # the gateway's first admin, user "admin"

Build = Callable[[Any], tuple[FastAPI, ServiceRuntime]]

SERVICES: dict[str, tuple[Build, type[ServiceSettings], str]] = {
    "model": (build_model, ModelSettings, "/models"),
    "target": (build_target, TargetSettings, "/targets"),
    "core": (build_core, CoreSettings, "/cores"),
    "notice": (build_notice, NoticeSettings, "/notices"),
    "mypage_cqrs": (build_mypage, MypageCqrsSettings, "/myRequests"),
}

# Fast enough for tests, slow enough that a cancel can land mid-training.
SAGA_DEFAULTS: dict[str, dict[str, object]] = {
    "core": {
        "training_steps": 3,
        "step_duration_s": 0.2,
        "extraction_steps": 2,
        "poll_interval_s": 0.1,
        "check_backoff_initial_s": 0.1,
        "check_backoff_max_s": 0.5,
        "job_backoff_initial_s": 0.1,
        "breaker_reset_s": 1.0,
    },
    "notice": {"notice_poll_interval_s": 0.1, "notice_backoff_initial_s": 0.1},
}


@dataclass
class Platform:
    admin_url: str
    bootstrap: str
    overrides: dict[str, dict[str, object]]
    ports: dict[str, int] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    runtimes: dict[str, ServiceRuntime] = field(default_factory=dict)
    gateway_tracing: Tracing | None = None
    _running: dict[str, contextlib.AsyncExitStack] = field(default_factory=dict)

    @property
    def simulators_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['simulators']}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def settings(self, name: str) -> ServiceSettings:
        _, settings_cls, _ = SERVICES[name]
        wiring: dict[str, dict[str, object]] = {
            "core": {
                "model_service_url": self.url("model"),
                "vertica_url": f"{self.simulators_url}/vertica",
                "midas_url": f"{self.simulators_url}/midas",
            },
            "notice": {"chat_webhook_url": f"{self.simulators_url}/chat/webhook"},
            "target": {"model_service_url": self.url("model")},
        }
        values = {
            **wiring.get(name, {}),
            **SAGA_DEFAULTS.get(name, {}),
            **self.overrides.get(name, {}),
            "port": self.ports[name],
        }
        return settings_for(settings_cls, self.databases[name], self.bootstrap, **values)

    async def start(self, name: str) -> httpx.AsyncClient:
        build = SERVICES[name][0]
        stack = contextlib.AsyncExitStack()
        client, runtime = await stack.enter_async_context(running(build, self.settings(name)))
        self._running[name], self.clients[name], self.runtimes[name] = stack, client, runtime
        return client

    async def stop(self, name: str) -> None:
        await self._running.pop(name).aclose()
        self.clients.pop(name)
        self.runtimes.pop(name)

    def tracings(self) -> dict[str, Tracing]:
        """Each running service's tracing, the gateway's included."""
        found = {name: runtime.tracing for name, runtime in self.runtimes.items()}
        if self.gateway_tracing is not None:
            found["gateway"] = self.gateway_tracing
        return found

    async def stop_all(self) -> None:
        for name in list(self._running):
            await self.stop(name)


@contextlib.asynccontextmanager
async def gateway_in_front_of(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    routes = {prefix: platform.url(name) for name, (_, _, prefix) in SERVICES.items()}
    if "console" in platform.ports:
        routes["/ui"] = platform.url("console")
    platform.ports.setdefault("gateway", free_port())
    settings = GatewaySettings(
        port=platform.ports["gateway"],
        routes=routes,
        upstream_timeout_s=5.0,
        database_url=platform.databases["gateway"],
        admin_password=ADMIN_PASSWORD,
        **{**AUTH_SETTINGS, **platform.overrides.get("gateway", {})},
    )
    app = build_gateway(settings)
    platform.gateway_tracing = app[TRACING]
    runner = web.AppRunner(app, **SERVER_OPTIONS)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.port}", timeout=10, headers=bearer()
        ) as client:
            yield client
    finally:
        await runner.cleanup()


def console_settings(platform: Platform) -> ConsoleSettings:
    """The web console, calling the platform's gateway; its operations page probes every
    service as `nocode status` would."""
    names = (*SERVICES, "gateway", "console")
    values = {"live_poll_s": 0.3, **platform.overrides.get("console", {})}
    return ConsoleSettings(
        port=platform.ports["console"],
        gateway_url=platform.url("gateway"),
        service_urls={name: platform.url(name) for name in names},
        **values,
    )


@contextlib.asynccontextmanager
async def whole_platform(
    admin_url: str, bootstrap: str, **overrides: dict[str, object]
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    """Every service, the simulators and the gateway; yields the platform and a client of
    the gateway. ``overrides`` are per-service settings, e.g. ``core={"training_steps": 9}``.
    """
    platform = Platform(admin_url, bootstrap, overrides)
    platform.ports = {name: free_port() for name in (*SERVICES, "simulators", "console")}
    for name in (*SERVICES, "gateway"):
        platform.databases[name] = await migrated_database(admin_url, name)
    async with serving(build_simulators(), platform.ports["simulators"]):
        try:
            for name in SERVICES:
                await platform.start(name)
            async with (
                gateway_in_front_of(platform) as gateway,
                serving(build_console(console_settings(platform)), platform.ports["console"]),
            ):
                yield platform, gateway
        finally:
            await platform.stop_all()
