"""Helpers the connected tests share: free ports, running a service, reading topics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import orjson
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from fastapi import FastAPI

from contracts import Event
from servicekit import migrations
from servicekit.auth import ADMIN, TokenIssuer, generate_keypair
from servicekit.consumer import EventConsumer
from servicekit.envelope import Envelope, header_map
from servicekit.tracing import Tracing

T = TypeVar("T")

# One signing key for the whole test session: services verify with the public half,
# tests (and core, for its own calls) sign with the private half.
TEST_KEY_ID = "test-key"
TEST_PRIVATE_KEY, TEST_PUBLIC_KEY = generate_keypair()
AUTH_SETTINGS: dict[str, object] = {
    "jwt_public_keys": {TEST_KEY_ID: TEST_PUBLIC_KEY},
    "jwt_private_key": TEST_PRIVATE_KEY,
    "jwt_key_id": TEST_KEY_ID,
}
AUTH_ENV = {
    "JWT_PUBLIC_KEYS": orjson.dumps({TEST_KEY_ID: TEST_PUBLIC_KEY}).decode(),
    "JWT_PRIVATE_KEY": TEST_PRIVATE_KEY,
    "JWT_KEY_ID": TEST_KEY_ID,
}
ISSUER = TokenIssuer(TEST_PRIVATE_KEY, TEST_KEY_ID, "nocode-gateway", "nocode")


def bearer(subject: str = "admin", *roles: str) -> dict[str, str]:
    """Authorization header of a valid token; ``bearer()`` is an admin's."""
    token = ISSUER.issue(subject, roles or ((ADMIN,) if subject == "admin" else ("user",)))
    return {"Authorization": f"Bearer {token}"}


# Ports for the servers tests start come from below the kernel's ephemeral range
# (32768-60999 here): a port the kernel handed out with bind(0) and we released can be
# taken as the local end of any outgoing connection before our server binds it, which
# made CI fail with "address already in use". Each port is handed out once per run.
_PORT_RANGE = range(20000, 32000)
_handed_out: set[int] = set()
_next_port = [_PORT_RANGE.start + (os.getpid() * 97) % len(_PORT_RANGE)]


def free_port() -> int:
    """A port nothing listens on, never handed out before in this run."""
    for _ in range(len(_PORT_RANGE)):
        port = _next_port[0]
        _next_port[0] = port + 1 if port + 1 < _PORT_RANGE.stop else _PORT_RANGE.start
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


@contextlib.asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on ``port`` (lifespan included) for the block."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def read_topic(
    bootstrap: str, topic: str, *, expect: int, timeout_s: float = 20.0
) -> list[ConsumerRecord]:
    """Every record on ``topic`` from the beginning; waits until ``expect`` are there."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = set()
        deadline = time.monotonic() + timeout_s
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        while len(records) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
        # Anything beyond what was expected is a bug the caller should see.
        batch = await consumer.getmany(timeout_ms=300)
        for recs in batch.values():
            records.extend(recs)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


def ce(record: ConsumerRecord) -> dict[str, str]:
    return header_map(record.headers)


async def create_database(admin_url: str, prefix: str) -> str:
    """A new empty database; returns its SQLAlchemy asyncpg URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def migrated_database(admin_url: str, service: str) -> str:
    """A new database with ``service``'s migrations applied; returns its URL."""
    url = await create_database(admin_url, service)
    await asyncio.to_thread(migrations.upgrade, service, url)
    return url


async def topic_values(bootstrap: str, topic: str) -> list[dict]:
    """The value of every record on ``topic`` now (up to its end offsets), in partition order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(recs)
        return [
            orjson.loads(r.value) for r in sorted(records, key=lambda r: (r.partition, r.offset))
        ]
    finally:
        await consumer.stop()


async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout_s: float = 30.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; return that, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what}; last: {result!r}"
            )
        await asyncio.sleep(0.1)


async def publish(bootstrap: str, *events: Event) -> None:
    """Send events the way their context's relay would: each on its contract's topic,
    in the CloudEvents envelope, keyed by request id."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            env = Envelope.wrap(event, f"/nocode/{event.context}")
            await producer.send_and_wait(
                event.topic, env.value(), key=env.subject.encode(), headers=env.headers()
            )
    finally:
        await producer.stop()


async def cancelled(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` (a consumer's ``run``, say) and wait until it has stopped."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def quick_consumer(service: str, topic: str, bootstrap: str, **options: Any) -> EventConsumer:
    """An ``EventConsumer`` of ``topic`` as the connected tests run one: a short session and
    heartbeat, so a test's group joins and leaves in seconds; ``options`` are the rest
    (``uow_factory``, ``handlers``, ``dead_letter_producer``, retry settings)."""
    defaults = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
    return EventConsumer(
        service=service,
        topics=(topic,),
        bootstrap_servers=bootstrap,
        tracer=Tracing(service).tracer,
        **(defaults | options),
    )
