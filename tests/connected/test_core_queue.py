"""The job queue on a real PostgreSQL: FIFO claims that skip locked rows, due times,
lapsed leases, one job per request and kind, and two cores sharing one queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.domain import Job, Kind, State
from core.repository import CoreUnitOfWork
from core.runner import JobRunner
from core.worker import Worker
from servicekit.db import make_engine
from servicekit.outbox import OutboxWriter
from tests.connected.core_service import (
    core_events,
    core_service,
    core_settings,
    job_in,
    names,
    simulators,
)
from tests.connected.model_service import model_service
from tests.support import eventually, free_port

pytestmark = pytest.mark.connected

NOW = datetime.now(UTC)


@pytest.fixture
async def sessions(core_db: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(core_db)
    yield async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    await engine.dispose()


def uow(sessions: async_sessionmaker[AsyncSession]) -> CoreUnitOfWork:
    return CoreUnitOfWork(sessions, OutboxWriter("/test"))


async def enqueue(sessions: async_sessionmaker[AsyncSession], *request_ids: str) -> list[int]:
    ids = []
    async with uow(sessions) as u:
        for request_id in request_ids:
            job = Job.new(await u.jobs.next_id(), Kind.MODEL, request_id, "u", "m", 3, 3, now=NOW)
            if await u.jobs.enqueue(job):
                ids.append(job.id)
        await u.commit()
    return ids


async def test_concurrent_claims_take_the_oldest_jobs_and_never_the_same_one(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ids = await enqueue(sessions, *[str(n) for n in range(1, 8)])
    async with uow(sessions) as first:
        mine = await first.jobs.claimable(NOW, 3)  # locked until this transaction ends
        async with uow(sessions) as second:
            theirs = await asyncio.wait_for(second.jobs.claimable(NOW, 10), 2.0)
    assert [j.id for j in mine] == ids[:3]
    assert [j.id for j in theirs] == ids[3:]


async def test_only_due_jobs_and_lapsed_leases_are_claimable(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    due, later, held, lapsed, done = await enqueue(sessions, "1", "2", "3", "4", "5")
    async with uow(sessions) as u:
        jobs = {j.id: j for j in await u.jobs.claimable(NOW, 10)}
        jobs[later].available_at = NOW + timedelta(seconds=60)  # backing off
        jobs[held].claim("w/held", NOW, lease_s=60)
        jobs[lapsed].claim("w/gone", NOW - timedelta(seconds=120), lease_s=60)
        jobs[done].claim("w/done", NOW, lease_s=60)
        jobs[done].complete(NOW)
        for job in jobs.values():
            await u.jobs.save(job)
        await u.commit()
    async with uow(sessions) as u:
        claimable = await u.jobs.claimable(NOW, 10)
    assert [(j.id, j.state) for j in claimable] == [(due, State.QUEUED), (lapsed, State.RUNNING)]


async def test_one_job_per_request_and_kind(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert len(await enqueue(sessions, "1", "1")) == 1
    async with uow(sessions) as u:
        lms = Job.new(await u.jobs.next_id(), Kind.LMS, "1", "u", "m", 1, 5, now=NOW)
        assert await u.jobs.enqueue(lms)  # another kind for the same request is another job
        await u.commit()


async def test_two_cores_on_one_queue_complete_each_job_exactly_once(
    core_db: str, model_db: str, topics: str
) -> None:
    model_port = free_port()
    async with (
        simulators() as sim,
        model_service(model_db, topics, port=model_port) as (model, _),
    ):
        settings = [
            core_settings(
                core_db, topics, sim, f"http://127.0.0.1:{model_port}", worker_concurrency=2
            )
            for _ in range(2)
        ]
        async with (
            core_service(settings[0]) as (core, first),
            core_service(settings[1]) as (_, second),
        ):
            claimed: list[list[int]] = []
            for runtime in (first, second):
                worker = runtime.workers["jobs"].__self__  # type: ignore[attr-defined]
                claimed.append(record_claims(worker))
            mids = []
            for n in range(6):
                created = await model.post("/models", json={"userId": "u", "modelName": f"m{n}"})
                mids.append(created.json()["id"])
                await model.put(f"/models/{mids[-1]}")
            for mid in mids:
                await eventually(lambda m=mid: job_in(core, "model", m, "completed"), what="jobs")
            per_request = {mid: names(await core_events(topics, mid)) for mid in mids}

    for mid in mids:
        assert per_request[mid] == ["ModelProgressed"] * 3 + ["ModelCompleted"], mid
    # Both shared the work, and no job was claimed twice.
    assert claimed[0] and claimed[1]
    assert len({*claimed[0], *claimed[1]}) == len(claimed[0] + claimed[1]) == 6


def record_claims(worker: Worker) -> list[int]:
    """Wrap ``worker.claim`` to note the ids of the jobs it claims."""
    claimed: list[int] = []
    original = worker.claim

    async def claim(limit: int) -> list[Job]:
        jobs = await original(limit)
        claimed.extend(j.id for j in jobs)
        return jobs

    worker.claim = claim  # type: ignore[method-assign]
    return claimed


async def test_the_queue_depth_is_counted_at_a_claim_at_most_once_a_second(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import metrics, worker

    def never(_: object) -> JobRunner:
        raise AssertionError("no job runs here")

    counts: list[int] = []
    original = CoreUnitOfWork.on_begin

    def on_begin(self: CoreUnitOfWork) -> None:
        original(self)
        count = self.jobs.count_queued

        async def counted() -> int:
            counts.append(n := await count())
            return n

        self.jobs.count_queued = counted  # type: ignore[method-assign]

    monkeypatch.setattr(CoreUnitOfWork, "on_begin", on_begin)
    monkeypatch.setattr(worker, "QUEUE_DEPTH_EVERY_S", 0.5)
    await enqueue(sessions, "1", "2", "3", "4")
    w = Worker(lambda: uow(sessions), never, concurrency=4, poll_interval_s=1, lease_s=30)
    assert len(await w.claim(1)) == 1
    assert counts == [3] and metrics.QUEUE_DEPTH._value.get() == 3  # counted after the claim
    assert len(await w.claim(1)) == 1
    assert counts == [3] and metrics.QUEUE_DEPTH._value.get() == 3  # not again so soon
    await asyncio.sleep(0.6)
    assert len(await w.claim(1)) == 1
    assert counts == [3, 1] and metrics.QUEUE_DEPTH._value.get() == 1
