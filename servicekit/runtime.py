"""The moving parts of one service process: database, producer, relay, consumers.

A service's ``bootstrap.py`` builds a :class:`ServiceRuntime`, says what it
publishes and consumes, and hands it to :func:`servicekit.app.create_app`, whose
lifespan starts and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

import structlog
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import Event
from servicekit.consumer import EventConsumer, Handler
from servicekit.db import UnitOfWork, asyncpg_dsn, make_engine, ping
from servicekit.kafka import client_security, make_producer
from servicekit.outbox import OutboxWriter
from servicekit.relay import OutboxRelay
from servicekit.resilience import Backoff, backoff_delay
from servicekit.settings import ServiceSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Subscription:
    topics: tuple[str, ...]
    handlers: Mapping[type[Event], Handler]
    uow_factory: Callable[[], UnitOfWork]


Worker = Callable[[], Awaitable[None]]


class ServiceRuntime:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.tracing = settings.tracing()
        self.engine = make_engine(
            settings.database_url, settings.db_pool_size, settings.db_pool_pre_ping
        )
        if settings.trace_sql:
            self.tracing.instrument_engine(self.engine)
        self.sessionmaker = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        self.outbox = OutboxWriter(settings.source)
        self.publishes = False
        self.subscriptions: list[Subscription] = []
        self.producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self.consumers: list[EventConsumer] = []
        self.workers: dict[str, Worker] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def publish_from_outbox(self) -> None:
        self.publishes = True

    def consume(
        self,
        topics: tuple[str, ...],
        handlers: Mapping[type[Event], Handler],
        uow_factory: Callable[[], UnitOfWork],
    ) -> None:
        self.subscriptions.append(Subscription(topics, handlers, uow_factory))

    def run_worker(self, name: str, worker: Worker) -> None:
        """Run ``worker`` in the background while the service runs (restarted if it crashes).

        Workers need only the database (they publish through the outbox), so they
        start at once, broker or not.
        """
        self.workers[name] = worker

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._connect_then_run(), name="messaging"))
        for name, worker in self.workers.items():
            self._tasks.append(asyncio.create_task(self._supervise(name, worker), name=name))

    async def _supervise(self, name: str, worker: Worker) -> None:
        attempt = 0
        while True:
            try:
                await worker()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                delay = backoff_delay(attempt, 0.5, 10.0)
                log.error(
                    "worker crashed, restarting", worker=name, error=repr(exc), retry_in_s=delay
                )
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        await self.engine.dispose()
        await self.tracing.flush()

    async def ready(self) -> dict[str, str]:
        """What readiness depends on: the database and the broker, each ``ok`` or why not."""
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(ping(self.engine), 2.0)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        try:
            if self.producer is None:
                raise ConnectionError("not connected yet")
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 2.0)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        return checks

    async def _connect_then_run(self) -> None:
        # Requests are served while the broker is down (the outbox holds the events),
        # so the producer connects in the background and keeps trying.
        producer = await self._connect_producer()
        self.producer = producer
        s = self.settings
        runs = []
        if self.publishes:
            retention = (
                timedelta(hours=s.outbox_retention_hours) if s.outbox_retention_hours else None
            )
            self.relay = OutboxRelay(
                service=s.service_name,
                engine=self.engine,
                dsn=asyncpg_dsn(s.database_url),
                producer=producer,
                tracer=self.tracing.tracer,
                batch_size=s.outbox_batch_size,
                poll_interval_s=s.outbox_poll_interval_s,
                retention=retention,
            )
            self.outbox.wake = self.relay.wakeups.wake
            runs.append(self.relay.run())
        for sub in self.subscriptions:
            consumer = EventConsumer(
                service=s.service_name,
                topics=sub.topics,
                bootstrap_servers=s.kafka_bootstrap_servers,
                uow_factory=sub.uow_factory,
                handlers=sub.handlers,
                dead_letter_producer=producer,
                tracer=self.tracing.tracer,
                max_attempts=s.consumer_max_attempts,
                backoff_initial_s=s.consumer_backoff_initial_s,
                backoff_max_s=s.consumer_backoff_max_s,
                session_timeout_ms=s.kafka_session_timeout_ms,
                heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
                security=client_security(s),
                fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
                batch_size=s.consumer_batch_size,
                commit_interval_s=s.kafka_commit_interval_s,
            )
            self.consumers.append(consumer)
            runs.append(consumer.run())
        await asyncio.gather(*runs)

    async def _connect_producer(self) -> AIOKafkaProducer:
        retries = Backoff(0.2, 5.0).retries()
        while True:
            producer = make_producer(self.settings)
            try:
                await producer.start()
                return producer
            except Exception as exc:
                delay = retries.next_delay()
                log.warning("broker not reachable yet", error=str(exc), retry_in_s=delay)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
