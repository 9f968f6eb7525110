"""Composition root: settings in, a runnable model service out."""

from __future__ import annotations

from fastapi import FastAPI

from contracts.topics import CORE_EVENTS
from model.api import router
from model.handlers import CORE_HANDLERS
from model.repository import ModelUnitOfWork
from model.settings import ModelSettings
from servicekit.app import create_app
from servicekit.idempotency import prune_forever
from servicekit.ops import mount_ops
from servicekit.runtime import ServiceRuntime


def build(settings: ModelSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or ModelSettings()
    runtime = ServiceRuntime(settings)

    def uow_factory() -> ModelUnitOfWork:
        return ModelUnitOfWork(runtime.sessionmaker, runtime.outbox)

    runtime.publish_from_outbox()
    runtime.run_worker("idempotency-keys-pruner", prune_forever(runtime.engine))
    runtime.consume((CORE_EVENTS,), CORE_HANDLERS, uow_factory)
    app = create_app(runtime, router)
    mount_ops(app, runtime, "/models")
    app.state.uow_factory = uow_factory
    return app, runtime
