"""Composition root: settings in, a runnable target service out."""

from __future__ import annotations

from fastapi import FastAPI

from contracts.topics import CORE_EVENTS, MODEL_EVENTS
from servicekit.app import create_app
from servicekit.idempotency import prune_forever
from servicekit.ops import mount_ops
from servicekit.runtime import ServiceRuntime
from target.api import router
from target.handlers import HANDLERS
from target.model_view import ModelView
from target.repository import TargetUnitOfWork
from target.settings import TargetSettings


def build(settings: TargetSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or TargetSettings()
    runtime = ServiceRuntime(settings)

    def uow_factory() -> TargetUnitOfWork:
        return TargetUnitOfWork(runtime.sessionmaker, runtime.outbox)

    runtime.publish_from_outbox()
    runtime.run_worker("idempotency-keys-pruner", prune_forever(runtime.engine))
    # Model's events keep target's record of model states; core's move extractions on.
    runtime.consume((MODEL_EVENTS, CORE_EVENTS), HANDLERS, uow_factory)
    app = create_app(runtime, router)
    mount_ops(app, runtime, "/targets")
    app.state.uow_factory = uow_factory
    app.state.model_view = ModelView(settings.model_service_url, settings.model_check_timeout_s)
    return app, runtime
