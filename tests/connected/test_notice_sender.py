"""The sender worker on its own: two senders on one database post each message once, in order."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notice.messages import Notice
from notice.repository import NoticeUnitOfWork
from notice.sender import RetryPolicy, Sender, WebhookChat
from notice.tables import notifications
from servicekit.db import make_engine
from servicekit.outbox import OutboxWriter
from simulators.app import build_app
from tests.support import free_port, serving

pytestmark = pytest.mark.connected


async def test_two_senders_post_every_message_once_and_each_request_in_order(
    notice_db: str,
) -> None:
    engine = make_engine(notice_db)
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    def uow() -> NoticeUnitOfWork:
        return NoticeUnitOfWork(sessions, OutboxWriter("/test"))

    expected = {r: [f"request {r}: change {c}" for c in range(4)] for r in range(1, 6)}
    async with uow() as u:
        for change in range(4):
            for request, texts in expected.items():
                notice = Notice("u", "model", request, texts[change])
                await u.notifications.add(notice, f"e-{request}-{change}", "StateChanged")
        await u.commit()

    async with (
        serving(build_app(), free_port()) as chat_url,
        httpx.AsyncClient(base_url=chat_url, timeout=10) as chat,
        aiohttp.ClientSession() as session,
    ):
        # Slow answers keep rows locked long enough for the two senders to contend.
        await chat.put("/chat/_faults", json={"delayS": 0.02, "failNext": 3})
        policy = RetryPolicy(max_attempts=5, initial_s=0.05, max_s=0.1)
        webhook = WebhookChat(session, f"{chat_url}/chat/webhook")
        senders = [asyncio.create_task(Sender(uow, webhook, policy, 0.05).run()) for _ in "ab"]
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                async with engine.connect() as conn:
                    rows = (await conn.execute(select(notifications))).all()
                if all(r.status == "sent" for r in rows):
                    break
                await asyncio.sleep(0.1)
        finally:
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
        messages = [m["text"] for m in (await chat.get("/chat/messages")).json()]
    await engine.dispose()

    assert sorted(messages) == sorted(t for texts in expected.values() for t in texts)
    for request, texts in expected.items():
        assert [m for m in messages if m.startswith(f"request {request}:")] == texts
    assert {r.status for r in rows} == {"sent"}
    assert sum(r.attempts for r in rows) == len(rows) + 3


async def test_requests_are_sent_in_parallel_each_in_order(notice_db: str) -> None:
    """A chat taking 200 ms per answer: eight requests' messages go out side by side, each
    request's in the order of its events, each once. The poll is 30 s, so only wake-ups
    (a message queued, or one sent with another of its request behind it) drive it."""
    engine = make_engine(notice_db)
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    def uow() -> NoticeUnitOfWork:
        return NoticeUnitOfWork(sessions, OutboxWriter("/test"))

    requests, changes, answer_s = range(11, 19), 3, 0.2
    expected = {r: [f"request {r}: change {c}" for c in range(changes)] for r in requests}

    async def queue(change: int) -> None:
        async with uow() as u:
            for request, texts in expected.items():
                notice = Notice("u", "model", request, texts[change])
                await u.notifications.add(notice, f"p-{request}-{change}", "StateChanged")
            await u.commit()

    await queue(0)
    await queue(1)
    async with (
        serving(build_app(), free_port()) as chat_url,
        httpx.AsyncClient(base_url=chat_url, timeout=10) as chat,
        aiohttp.ClientSession() as session,
    ):
        await chat.put("/chat/_faults", json={"delayS": answer_s})
        policy = RetryPolicy(max_attempts=5, initial_s=0.05, max_s=0.1)
        webhook = WebhookChat(session, f"{chat_url}/chat/webhook")
        sender = Sender(uow, webhook, policy, poll_interval_s=30.0, concurrency=8)
        started = time.monotonic()
        task = asyncio.create_task(sender.run())
        try:
            await asyncio.sleep(answer_s / 2)  # the first messages are being posted
            await queue(2)
            sender.wake()  # as the consumer's commit does
            total = len(requests) * changes
            while len((await chat.get("/chat/messages")).json()) < total:
                assert time.monotonic() - started < 30, "messages not all sent in 30 s"
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.5)  # anything sent twice would show now
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        messages = [m["text"] for m in (await chat.get("/chat/messages")).json()]
    async with engine.connect() as conn:
        rows = (await conn.execute(select(notifications))).all()
    await engine.dispose()

    assert sorted(messages) == sorted(t for texts in expected.values() for t in texts)
    for request, texts in expected.items():
        assert [m for m in messages if m.startswith(f"request {request}:")] == texts
    assert {r.status for r in rows} == {"sent"} and len(rows) == total
    # One after another: 24 answers of 0.2 s, 4.8 s. Eight at a time: about 3 answers.
    assert elapsed < total * answer_s / 2, f"{total} messages took {elapsed:.2f}s"


class DiesAfterTheChatAnswers:
    """The chat takes the post, then the sender dies before its commit (as under kill -9)."""

    def __init__(self, chat: WebhookChat) -> None:
        self.chat = chat
        self.keys: list[str] = []

    async def post(self, text: str, key: str) -> None:
        await self.chat.post(text, key)
        self.keys.append(key)
        if len(self.keys) == 1:
            raise ConnectionResetError("the sender's process died before its commit")


async def test_a_post_repeated_after_a_crash_before_the_commit_shows_once(notice_db: str) -> None:
    engine = make_engine(notice_db)
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    def uow() -> NoticeUnitOfWork:
        return NoticeUnitOfWork(sessions, OutboxWriter("/test"))

    async with uow() as u:
        await u.notifications.add(Notice("u", "model", 77, "request 77: approved"), "e-77", "X")
        await u.commit()
    async with (
        serving(build_app(), free_port()) as chat_url,
        httpx.AsyncClient(base_url=chat_url, timeout=10) as chat,
        aiohttp.ClientSession() as session,
    ):
        dying = DiesAfterTheChatAnswers(WebhookChat(session, f"{chat_url}/chat/webhook"))
        policy = RetryPolicy(max_attempts=5, initial_s=0.05, max_s=0.1)
        with pytest.raises(ConnectionResetError):  # the first sender ends with its failure
            await asyncio.wait_for(Sender(uow, dying, policy, 0.05).run(), 20)
        async with engine.connect() as conn:
            assert (await conn.execute(select(notifications.c.status))).scalar_one() == "pending"

        again = asyncio.create_task(Sender(uow, dying, policy, 0.05).run())
        try:
            for _ in range(200):
                async with engine.connect() as conn:
                    status = (await conn.execute(select(notifications.c.status))).scalar_one()
                if status == "sent":
                    break
                await asyncio.sleep(0.05)
        finally:
            again.cancel()
            await asyncio.gather(again, return_exceptions=True)
        messages = [m["text"] for m in (await chat.get("/chat/messages")).json()]
    await engine.dispose()

    assert status == "sent"
    assert dying.keys == ["e-77", "e-77"]  # posted twice, with one key
    assert messages == ["request 77: approved"]  # shown once


async def test_a_retry_is_found_by_the_sweep_and_each_wake_up_sends_what_it_queued(
    notice_db: str,
) -> None:
    """A wake-up claims only what was queued. The message the chat refused once becomes
    due 50 ms later with nothing to wake the sender: the sweep every poll interval
    (0.3 s) finds it. Then 40 messages, each queued with a wake-up, go out once each."""
    engine = make_engine(notice_db)
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    def uow() -> NoticeUnitOfWork:
        return NoticeUnitOfWork(sessions, OutboxWriter("/test"))

    async def queue(request: int, text: str) -> None:
        async with uow() as u:
            await u.notifications.add(Notice("u", "model", request, text), f"w-{request}", "X")
            await u.commit()

    async def unsent() -> int:
        async with engine.connect() as conn:
            query = select(notifications.c.id).where(notifications.c.status != "sent")
            return len((await conn.execute(query)).all())

    async def all_sent_within(seconds: float) -> float | None:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if await unsent() == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.02)
        return None

    async with (
        serving(build_app(), free_port()) as chat_url,
        httpx.AsyncClient(base_url=chat_url, timeout=10) as chat,
        aiohttp.ClientSession() as session,
    ):
        await chat.put("/chat/_faults", json={"failNext": 1})  # a 5xx: retried in 50 ms
        policy = RetryPolicy(max_attempts=5, initial_s=0.05, max_s=0.05)
        webhook = WebhookChat(session, f"{chat_url}/chat/webhook")
        sender = Sender(uow, webhook, policy, poll_interval_s=0.3)
        await queue(1, "request 1: refused once")
        task = asyncio.create_task(sender.run())
        try:
            retried_after_s = await all_sent_within(3.0)
            for request in range(100, 140):
                await queue(request, f"request {request}: queued")
                sender.wake()  # as the consumer's commit does
                await asyncio.sleep(0.01)
            streamed_after_s = await all_sent_within(3.0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        messages = [m["text"] for m in (await chat.get("/chat/messages")).json()]
    await engine.dispose()

    assert retried_after_s is not None and retried_after_s < 1.0, retried_after_s
    assert streamed_after_s is not None, "the queued messages were not all sent in 3 s"
    assert messages[0] == "request 1: refused once"
    assert messages[1:] == [f"request {r}: queued" for r in range(100, 140)]
