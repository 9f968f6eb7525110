"""Composition root: settings in, a runnable notice service out."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from fastapi import FastAPI

from contracts.topics import CORE_EVENTS, MODEL_EVENTS, TARGET_EVENTS
from notice.api import router
from notice.handlers import HANDLERS
from notice.ops import FailedMessages
from notice.repository import NoticeUnitOfWork
from notice.sender import RetryPolicy, Sender, WebhookChat
from notice.settings import NoticeSettings
from servicekit.app import create_app
from servicekit.ops import mount_ops
from servicekit.runtime import ServiceRuntime


def build(settings: NoticeSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or NoticeSettings()
    runtime = ServiceRuntime(settings)

    wake_sender: list[Callable[[], object]] = []

    def uow_factory() -> NoticeUnitOfWork:
        uow = NoticeUnitOfWork(runtime.sessionmaker, runtime.outbox)
        uow.on_queued = wake_sender[0] if wake_sender else None
        return uow

    async def send_notifications() -> None:
        policy = RetryPolicy(
            settings.notice_max_attempts,
            settings.notice_backoff_initial_s,
            settings.notice_backoff_max_s,
        )
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.chat_timeout_s),
            trace_configs=[runtime.tracing.aiohttp_trace_config()],
        ) as session:
            chat = WebhookChat(session, settings.chat_webhook_url)
            sender = Sender(
                uow_factory,
                chat,
                policy,
                settings.notice_poll_interval_s,
                tracer=runtime.tracing.tracer,
                retention_hours=settings.notice_sent_retention_hours,
                concurrency=settings.notice_send_concurrency,
            )
            wake_sender[:] = [sender.wake]
            await sender.run()

    runtime.consume((MODEL_EVENTS, TARGET_EVENTS, CORE_EVENTS), HANDLERS, uow_factory)
    runtime.run_worker("sender", send_notifications)
    app = create_app(runtime, router)
    mount_ops(app, runtime, "/notices", FailedMessages(uow_factory))
    app.state.uow_factory = uow_factory
    return app, runtime
