"""The durable job queue: loading, claiming and storing Jobs; the unit of work carrying it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.domain import Job, Kind, State
from core.tables import CLAIMABLE, job_ids, jobs
from servicekit.db import EventSource, UnitOfWork
from servicekit.ids import IdBlocks
from servicekit.outbox import OutboxWriter
from servicekit.sql import Sql, Statement, constant
from servicekit.tracing import current_traceparent

_COLUMNS = (
    "kind",
    "request_id",
    "user_id",
    "name",
    "state",
    "step",
    "total_steps",
    "attempts",
    "max_attempts",
    "data_offset",
    "params",
    "result",
    "available_at",
    "lease_owner",
    "lease_expires_at",
    "cancel_requested",
    "reason",
    "last_error",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "traceparent",
    "redrives",
)


# Every statement of the queue's hot path (a claim, a step, a renewal, an end), compiled once.
_QUEUED, _RUNNING = constant(State.QUEUED.value), constant(State.RUNNING.value)
_COUNT_QUEUED = Statement(select(func.count()).select_from(jobs).where(jobs.c.state == _QUEUED))
_BY_ID = select(jobs).where(jobs.c.id == bindparam("job_id"))
_GET = Statement(_BY_ID)
_GET_LOCKED = Statement(_BY_ID.with_for_update())
_BY_REQUEST = select(jobs).where(
    jobs.c.kind == bindparam("kind"), jobs.c.request_id == bindparam("request_id")
)
_GET_FOR_REQUEST = Statement(_BY_REQUEST)
_GET_FOR_REQUEST_LOCKED = Statement(_BY_REQUEST.with_for_update())
_IDS = IdBlocks(job_ids)
_ENQUEUE = Statement(
    insert(jobs).on_conflict_do_nothing(constraint="uq_jobs_kind_request").returning(jobs.c.id),
    columns=("id", *_COLUMNS),
)
_SAVE = Statement(
    update(jobs).where(jobs.c.id == bindparam("job_id")).values({c: bindparam(c) for c in _COLUMNS})
)
_SAVE_UNCHANGED = Statement(
    update(jobs)
    .where(
        jobs.c.id == bindparam("job_id"),
        jobs.c.state == _RUNNING,
        jobs.c.lease_owner == bindparam("held_by"),
        jobs.c.cancel_requested.is_(False),
        jobs.c.updated_at == bindparam("written_at"),
    )
    .values({c: bindparam(c) for c in _COLUMNS})
)
_CLAIMABLE = Statement(
    select(jobs)
    .where(
        CLAIMABLE,  # the predicate of the partial index ix_jobs_claimable
        or_(
            and_(jobs.c.state == _QUEUED, jobs.c.available_at <= bindparam("now")),
            and_(jobs.c.state == _RUNNING, jobs.c.lease_expires_at < bindparam("now")),
        ),
    )
    .order_by(jobs.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)


def _job(row: Mapping[str, Any]) -> Job:
    return Job(**{**row, "state": State(row["state"]), "kind": Kind(row["kind"])})


def _values(job: Job) -> dict[str, Any]:
    values = {c: getattr(job, c) for c in _COLUMNS}
    values["state"] = job.state.value
    values["kind"] = job.kind.value
    return values


class JobRepository:
    def __init__(
        self,
        session: AsyncSession,
        sql: Sql,
        track: Callable[[EventSource], None],
        enqueued: Callable[[], None],
    ) -> None:
        self.session = session
        self.sql = sql
        self.track = track
        self._enqueued = enqueued

    async def next_id(self) -> int:
        return await _IDS.next(self.sql)

    async def enqueue(self, job: Job) -> bool:
        """Add a job; False if its request already has a job of that kind (a redelivery).

        The job keeps the current trace context, so the work it does joins that trace."""
        job.traceparent = job.traceparent or current_traceparent()
        if await self.sql.fetchval(_ENQUEUE, {"id": job.id, **_values(job)}) is None:
            return False
        self.track(job)
        self._enqueued()
        return True

    async def get(self, id: int, *, for_update: bool = True) -> Job | None:
        """Load one job; locked by default, so every change to a job is serialized."""
        query = _GET_LOCKED if for_update else _GET
        return self._tracked(await self.sql.fetchrow(query, {"job_id": id}))

    async def get_for_request(
        self, kind: Kind, request_id: str, *, for_update: bool = True
    ) -> Job | None:
        query = _GET_FOR_REQUEST_LOCKED if for_update else _GET_FOR_REQUEST
        row = await self.sql.fetchrow(query, {"kind": kind.value, "request_id": request_id})
        return self._tracked(row)

    async def claimable(self, now: datetime, limit: int) -> list[Job]:
        """Up to ``limit`` jobs a worker may take now, oldest first, locked; rows other
        workers hold locked are skipped, so concurrent claims never take the same job."""
        rows = await self.sql.fetch(_CLAIMABLE, {"now": now, "limit": limit})
        claimed = [_job(row) for row in rows]
        for job in claimed:
            self.track(job)
        return claimed

    async def list(
        self,
        state: State | None = None,
        kind: Kind | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        user_id: str | None = None,
    ) -> list[Job]:
        query = select(jobs).order_by(jobs.c.id).limit(limit).offset(offset)
        if user_id is not None:
            query = query.where(jobs.c.user_id == user_id)
        if state is not None:
            query = query.where(jobs.c.state == state.value)
        if kind is not None:
            query = query.where(jobs.c.kind == kind.value)
        rows = (await self.session.execute(query)).mappings().all()
        return [_job(row) for row in rows]

    async def count_queued(self) -> int:
        """Jobs waiting in the queue (an index range of ``ix_jobs_state_kind``, not a count
        of every job the table ever held)."""
        return int(await self.sql.fetchval(_COUNT_QUEUED) or 0)

    async def save(self, job: Job) -> None:
        self.track(job)
        await self.sql.defer(_SAVE, {**_values(job), "job_id": job.id})  # written at the commit

    async def save_unchanged(self, job: Job, held_by: str, written_at: datetime) -> None:
        """Store ``job`` with the commit, without locking it first, if its row is still
        what ``held_by`` wrote at ``written_at``: running under that lease, no cancel
        asked, nobody else wrote since. Its events are stored with it, in the same one
        statement; if the row changed, the commit raises ``ConditionFailed`` and stores
        nothing (``servicekit.sql.Sql.defer_condition``)."""
        values = {**_values(job), "job_id": job.id, "held_by": held_by, "written_at": written_at}
        self.track(job)
        await self.sql.defer_condition(_SAVE_UNCHANGED, values)

    async def requeue(self, job: Job) -> None:
        """Store a job that is queued again (re-driven); the worker wakes after the commit."""
        await self.save(job)
        self._enqueued()

    def _tracked(self, row: Mapping[str, Any] | None) -> Job | None:
        if row is None:
            return None
        job = _job(row)
        self.track(job)
        return job


class CoreUnitOfWork(UnitOfWork):
    """One transaction over the queue; ``on_enqueue`` runs after a commit that added jobs
    (the worker in this process wakes up instead of waiting for its next poll)."""

    jobs: JobRepository

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        outbox: OutboxWriter,
        on_enqueue: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(sessionmaker, outbox)
        self._on_enqueue = on_enqueue
        self._added = False

    def on_begin(self) -> None:
        self._added = False
        self.jobs = JobRepository(self.session, self.sql, self.track, self._mark_added)

    def _mark_added(self) -> None:
        self._added = True

    async def commit(self) -> None:
        await super().commit()
        if self._added and self._on_enqueue is not None:
            self._on_enqueue()
