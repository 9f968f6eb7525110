"""The sender worker: posts pending notifications to the chat webhook, retrying with backoff.

One notification per transaction: the row is locked (``FOR UPDATE SKIP LOCKED``)
while it is posted, so two notice replicas never post the same one, and a crash
mid-post leaves it pending for the next try. The chat may then see a message
twice (the webhook has no idempotency key); it never misses one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx
import structlog
from opentelemetry.trace import NoOpTracer, Tracer
from prometheus_client import Counter

from notice.repository import NoticeUnitOfWork, Notification
from servicekit.resilience import backoff_delay
from servicekit.tracing import span_from

log = structlog.get_logger(__name__)

MESSAGES_SENT = Counter("notice_messages_sent_total", "Chat messages the webhook accepted")
MESSAGES_FAILED = Counter(
    "notice_messages_failed_total", "Notifications given up on after their last attempt"
)
SEND_RETRIES = Counter(
    "notice_send_retries_total", "Failed chat posts that will be tried again later"
)


class ChatUnavailable(Exception):
    """The webhook did not take the message (error status, timeout, connection)."""


class Chat(Protocol):
    async def post(self, text: str) -> None: ...


class WebhookChat:
    """Slack-compatible incoming webhook: ``POST {"text": ...}``, any 2xx is accepted."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url

    async def post(self, text: str) -> None:
        try:
            response = await self.client.post(self.url, json={"text": text})
        except httpx.HTTPError as exc:
            raise ChatUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise ChatUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial_s: float
    max_s: float

    def delay_after(self, attempts: int) -> float | None:
        """Seconds to wait after ``attempts`` failed posts, or None: give up."""
        if attempts >= self.max_attempts:
            return None
        return backoff_delay(attempts, self.initial_s, self.max_s)


class Sender:
    def __init__(
        self,
        uow_factory: Callable[[], NoticeUnitOfWork],
        chat: Chat,
        policy: RetryPolicy,
        poll_interval_s: float,
        tracer: Tracer | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.chat = chat
        self.policy = policy
        self.poll_interval_s = poll_interval_s
        self.tracer = tracer or NoOpTracer()

    async def run(self) -> None:
        while True:
            while await self.send_next():
                pass
            await asyncio.sleep(self.poll_interval_s)

    async def send_next(self) -> bool:
        """Try the next due notification; False when none is due."""
        async with self.uow_factory() as uow:
            notification = await uow.notifications.claim_next()
            if notification is None:
                return False
            attempts = notification.attempts + 1
            attributes = {"nocode.notification.id": notification.id, "nocode.attempt": attempts}
            with span_from(
                self.tracer, "send chat message", notification.traceparent, attributes=attributes
            ):
                await self._send(uow, notification, attempts)
                await uow.commit()
        return True

    async def _send(self, uow: NoticeUnitOfWork, notification: Notification, attempts: int) -> None:
        log_ = log.bind(notification_id=notification.id, attempts=attempts)
        try:
            await self.chat.post(notification.text)
        except ChatUnavailable as exc:
            error = str(exc)
            delay = self.policy.delay_after(attempts)
            if delay is None:
                await uow.notifications.mark_failed(notification.id, attempts, error)
                MESSAGES_FAILED.inc()
                log_.error("chat message given up", error=error)
            else:
                await uow.notifications.retry_later(notification.id, attempts, error, delay)
                SEND_RETRIES.inc()
                log_.warning("chat message failed, retrying", error=error, retry_in_s=delay)
        else:
            await uow.notifications.mark_sent(notification.id, attempts)
            MESSAGES_SENT.inc()
            log_.info("chat message sent")
