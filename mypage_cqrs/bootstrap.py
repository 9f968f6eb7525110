"""Composition root: settings in, a runnable mypage_cqrs service out."""

from __future__ import annotations

from fastapi import FastAPI

from contracts.topics import EVENT_TOPICS
from mypage_cqrs.api import router
from mypage_cqrs.handlers import HANDLERS
from mypage_cqrs.repository import MypageUnitOfWork
from mypage_cqrs.settings import MypageCqrsSettings
from mypage_cqrs.stalls import StallWatch, mount_stalls
from servicekit.app import create_app
from servicekit.ops import mount_ops
from servicekit.runtime import ServiceRuntime


def build(settings: MypageCqrsSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or MypageCqrsSettings()
    runtime = ServiceRuntime(settings)

    def uow_factory() -> MypageUnitOfWork:
        return MypageUnitOfWork(runtime.sessionmaker, runtime.outbox)

    # Consumes only: no outbox to publish from.
    runtime.consume(EVENT_TOPICS, HANDLERS, uow_factory)
    app = create_app(runtime, router)
    mount_ops(app, runtime, "/myRequests")
    stalls = StallWatch(
        runtime.sessionmaker, settings.saga_stall_after_s, settings.stall_check_interval_s
    )
    runtime.run_worker("stalls", stalls.run)
    mount_stalls(app, stalls)
    app.state.uow_factory = uow_factory
    return app, runtime
