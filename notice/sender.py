"""The sender worker: posts pending notifications to the chat webhook, retrying with backoff.

A chat that is down (unreachable, timing out, 5xx, 429) is no reason to give up: the
message is retried with a capped backoff for as long as it takes, and the first post
the chat takes again makes every waiting message due at once (oldest first, each
request's messages in order). Only a message the chat keeps rejecting (another 4xx)
ends ``failed`` after ``NOTICE_MAX_ATTEMPTS``; an admin can re-drive it, and the later
messages of its request wait behind it meanwhile.

One notification per transaction: the row is locked (``FOR UPDATE SKIP LOCKED``)
while it is posted, so two notice replicas never post the same one, and a crash
mid-post leaves it pending for the next try. Each post carries the event's id as its
``Idempotency-Key``, so a chat that honours the key (Swing chat does) shows that message
once; a chat that ignores it (a plain Slack webhook) may show it twice. None misses one.

Up to ``concurrency`` messages are posted at once, each in its own transaction. They
belong to different requests: only the first unsent message of a request can be
claimed, so a request's next message is claimed once the one before it is sent.

A wake-up claims as many messages as were queued (and a sent message with one waiting
behind it claims one more): no claim that finds nothing follows each message. Once
every poll interval the sender sweeps instead, claiming until none is due, which
finds the messages due after a backoff, those another replica queued and those the
chat's return made due.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import structlog
from opentelemetry.trace import NoOpTracer, Tracer
from prometheus_client import Counter

from notice.repository import NoticeUnitOfWork, Notification
from servicekit.resilience import backoff_delay
from servicekit.tracing import span_from

log = structlog.get_logger(__name__)

MESSAGES_SENT = Counter("notice_messages_sent_total", "Chat messages the webhook accepted")
MESSAGES_FAILED = Counter(
    "notice_messages_failed_total", "Notifications the chat rejected on every allowed attempt"
)
SEND_RETRIES = Counter(
    "notice_send_retries_total", "Failed chat posts that will be tried again later"
)


PRUNE_EVERY_S = 60.0

# Answers that mean the chat is down or busy, not that it refuses this message.
RETRYABLE = frozenset({408, 425, 429})


class ChatFailed(Exception):
    """The webhook did not take the message."""


class ChatUnavailable(ChatFailed):
    """The chat is down: timeout, no connection, 5xx, 408/425/429. Retried until it is up."""


class ChatRejected(ChatFailed):
    """The chat refused this message (another 4xx): given up after the allowed attempts."""


Claim = contextlib.AsyncExitStack  # holds a claimed notification's transaction open


class Chat(Protocol):
    async def post(self, text: str, key: str) -> None:
        """Post ``text``; ``key`` is the same on every try of one message."""


class WebhookChat:
    """Slack-compatible incoming webhook: ``POST {"text": ...}``, any 2xx is accepted.

    The ``Idempotency-Key`` header lets a chat drop a repeat sent after a crash between
    its answer and our commit; Slack ignores the header, which is harmless."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        """``session``: aiohttp's, not httpx's: a post costs a fifth of the client CPU
        (``bench/http_clients.py``), and notice posts one per message."""
        self.session = session
        self.url = url

    async def post(self, text: str, key: str) -> None:
        try:
            async with self.session.post(
                self.url, json={"text": text}, headers={"Idempotency-Key": key}
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    return
                answer = (await response.read())[:200].decode(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChatUnavailable(f"{type(exc).__name__}: {exc}") from exc
        down = status >= 500 or status in RETRYABLE or status < 400
        error = ChatUnavailable if down else ChatRejected
        raise error(f"HTTP {status}: {answer}")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial_s: float
    max_s: float

    def delay_after(self, attempts: int, *, chat_down: bool) -> float | None:
        """Seconds to wait after ``attempts`` failed posts, or None: give up (only when
        the chat rejects the message; a chat that is down is waited for)."""
        if not chat_down and attempts >= self.max_attempts:
            return None
        # The exponent is bounded: a chat down for days must not overflow the float.
        return backoff_delay(min(attempts, 32), self.initial_s, self.max_s)


class Sender:
    def __init__(
        self,
        uow_factory: Callable[[], NoticeUnitOfWork],
        chat: Chat,
        policy: RetryPolicy,
        poll_interval_s: float,
        tracer: Tracer | None = None,
        retention_hours: float = 0.0,
        concurrency: int = 1,
    ) -> None:
        self.uow_factory = uow_factory
        self.chat = chat
        self.policy = policy
        self.poll_interval_s = poll_interval_s
        self.tracer = tracer or NoOpTracer()
        self.chat_down = False
        self.retention_hours = retention_hours
        self.concurrency = concurrency
        self._queued = asyncio.Event()
        self._wakes = 0  # how many times a notification was queued in this process
        self._due = 0  # of those, how many no claim has taken yet (a hint, never a promise)
        self._sweep_at = 0.0  # when to claim until none is due (time.monotonic())
        self._pruned_at = 0.0
        self._failure: BaseException | None = None

    def wake(self) -> None:
        """A notification was queued: send it now rather than at the next poll."""
        self._wakes += 1
        self._due += 1
        self._queued.set()

    async def run(self) -> None:
        """Claim due notifications and post each in a task of its own, up to
        ``concurrency`` at once: as many as were queued since the last claims, or, once
        every poll interval, until none is due. Then wait for a wake-up or the sweep."""
        slots = asyncio.Semaphore(self.concurrency)
        sending: set[asyncio.Task[None]] = set()
        try:
            while True:
                self._queued.clear()
                sweep = time.monotonic() >= self._sweep_at
                while sweep or self._due > 0:
                    await slots.acquire()
                    if self._failure is not None:
                        raise self._failure
                    due = self._due
                    try:
                        claimed = await self._claim()
                    except BaseException:
                        slots.release()
                        raise
                    if claimed is None:
                        slots.release()
                        # What was queued during the claim may not have been visible to it.
                        self._due = max(0, self._due - due)
                        if sweep:
                            self._sweep_at = time.monotonic() + self.poll_interval_s
                            sweep = False
                        continue
                    self._due = max(0, self._due - 1)
                    task = asyncio.create_task(self._deliver(*claimed))
                    sending.add(task)
                    task.add_done_callback(sending.discard)
                    task.add_done_callback(lambda _: slots.release())
                await self.prune()
                with contextlib.suppress(TimeoutError):
                    until_sweep = max(0.0, self._sweep_at - time.monotonic())
                    await asyncio.wait_for(self._queued.wait(), until_sweep)
                if self._failure is not None:
                    raise self._failure
        except asyncio.CancelledError:
            for task in sending:
                task.cancel()
            raise
        finally:
            # A crash lets the posts under way finish and be recorded (cancelling one
            # after the chat took it would post it again).
            await asyncio.gather(*sending, return_exceptions=True)

    async def prune(self) -> None:
        """Once every ``PRUNE_EVERY_S``: delete sent notifications past the retention."""
        now = time.monotonic()
        if not self.retention_hours or now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        async with self.uow_factory() as uow:
            pruned = await uow.notifications.prune_sent(self.retention_hours)
            await uow.commit()
        if pruned:
            log.info("sent notifications pruned", count=pruned, older_than_h=self.retention_hours)

    async def send_next(self) -> bool:
        """Try the next due notification now; False when none is due."""
        claimed = await self._claim()
        if claimed is None:
            return False
        await self._deliver(*claimed)
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return True

    async def _claim(self) -> tuple[Claim, NoticeUnitOfWork, Notification, int] | None:
        """The next due notification, locked in a transaction left open for
        :meth:`_deliver` (``Claim`` closes it), with the wake-up count at the claim."""
        wakes = self._wakes
        async with contextlib.AsyncExitStack() as claim:
            uow = await claim.enter_async_context(self.uow_factory())
            notification = await uow.notifications.claim_next()
            if notification is None:
                return None
            return claim.pop_all(), uow, notification, wakes
        return None  # not reached: the unit of work suppresses no exception

    async def _deliver(
        self, claim: Claim, uow: NoticeUnitOfWork, notification: Notification, wakes: int
    ) -> None:
        """Post ``notification`` and record the outcome, committing the claim's transaction.

        Its request's next message could not be claimed meanwhile: once this one is
        recorded, claim again if one was queued since the claim (or before it, behind
        this one). A failure to record it stops the sender (restarted by its supervisor).
        """
        attempts = notification.attempts + 1
        attributes = {"nocode.notification.id": notification.id, "nocode.attempt": attempts}
        try:
            async with claim:  # rolls back unless committed
                with span_from(
                    self.tracer,
                    "send chat message",
                    notification.traceparent,
                    attributes=attributes,
                ):
                    await self._send(uow, notification, attempts)
                    await uow.commit()
        except Exception as exc:
            self._failure = self._failure or exc
        finally:
            if self._failure is not None or notification.has_next or self._wakes != wakes:
                self._due += 1  # the next of its request, or one queued behind it meanwhile
                self._queued.set()

    async def _send(self, uow: NoticeUnitOfWork, notification: Notification, attempts: int) -> None:
        log_ = log.bind(notification_id=notification.id, attempts=attempts)
        try:
            await self.chat.post(notification.text, notification.event_id)
        except ChatFailed as exc:
            error = str(exc)
            down = isinstance(exc, ChatUnavailable)
            self.chat_down = self.chat_down or down
            delay = self.policy.delay_after(attempts, chat_down=down)
            if delay is None:
                await uow.notifications.mark_failed(notification, attempts, error)
                MESSAGES_FAILED.inc()
                log_.error("chat message given up: the chat rejects it", error=error)
            else:
                await uow.notifications.retry_later(notification, attempts, error, delay)
                SEND_RETRIES.inc()
                log_.warning(
                    "chat message failed, retrying", error=error, retry_in_s=delay, chat_down=down
                )
        else:
            await uow.notifications.mark_sent(notification, attempts)
            MESSAGES_SENT.inc()
            log_.debug("chat message sent")
            if self.chat_down:
                self.chat_down = False
                resumed = await uow.notifications.resume_all()
                log_.info("chat answers again: waiting messages resume", resumed=resumed)
