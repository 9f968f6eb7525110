"""The worker loop: claim what there is room for, run each claimed job as a task.

Claims take the oldest claimable jobs (queued and due, or running with a lapsed lease)
with ``FOR UPDATE SKIP LOCKED``, so any number of worker processes share one queue
without taking the same job. Each process runs at most ``concurrency`` jobs at once.
The loop polls, and wakes early when this process enqueued a job or a job finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
import structlog

from core import metrics
from core.domain import Job, State
from core.repository import CoreUnitOfWork
from core.runner import JobRunner, record_end

log = structlog.get_logger(__name__)

# The queue's depth (a gauge) is counted at a claim at most this often: a count per claim
# was a statement per claim (every poll, and every job under load) for a gauge scraped
# every 15 s or so.
QUEUE_DEPTH_EVERY_S = 1.0


class Worker:
    def __init__(
        self,
        uow_factory: Callable[[], CoreUnitOfWork],
        make_runner: Callable[[aiohttp.ClientSession], JobRunner],
        *,
        make_http: Callable[[], aiohttp.ClientSession] = aiohttp.ClientSession,
        concurrency: int,
        poll_interval_s: float,
        lease_s: float,
        name: str | None = None,
        wake: asyncio.Event | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.make_runner = make_runner
        self.make_http = make_http
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.lease_s = lease_s
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._wake = wake or asyncio.Event()  # set: something may be claimable now
        self._counted_at = -QUEUE_DEPTH_EVERY_S  # when the queue's depth was last counted

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        async with self.make_http() as http:
            runner = self.make_runner(http)
            try:
                while True:
                    self._wake.clear()
                    free = self.concurrency - len(tasks)
                    for job in await self._claim_or_wait(free) if free > 0 else []:
                        task = asyncio.create_task(runner.run(job), name=f"job-{job.id}")
                        tasks.add(task)
                        task.add_done_callback(lambda t: self._finished(t, tasks))
                    metrics.RUNNING.set(len(tasks))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            finally:
                # Stopping (or crashing): the jobs stay running with their leases, and
                # whoever claims next takes them over once the leases run out.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                metrics.RUNNING.set(0)

    def _finished(self, task: asyncio.Task[None], tasks: set[asyncio.Task[None]]) -> None:
        tasks.discard(task)
        metrics.RUNNING.set(len(tasks))
        self._wake.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            # e.g. the database went away mid-write: the lease runs out, the job is retaken.
            log.error("job task crashed", task=task.get_name(), error=repr(exc))

    async def _claim_or_wait(self, limit: int) -> list[Job]:
        """Claim; if the database is unreachable, say so and let the running jobs go on."""
        try:
            return await self.claim(limit)
        except Exception as exc:
            log.warning("claiming jobs failed", error=repr(exc), retry_in_s=self.poll_interval_s)
            return []

    async def claim(self, limit: int) -> list[Job]:
        """Claim up to ``limit`` jobs in one transaction; each claim counts an attempt."""
        now = datetime.now(UTC)
        claimed: list[Job] = []
        ended: list[Job] = []
        async with self.uow_factory() as uow:
            for job in await uow.jobs.claimable(now, limit):
                takeover = job.state == State.RUNNING
                previous_owner = job.lease_owner
                if job.claim(f"{self.name}/{uuid.uuid4().hex[:8]}", now, self.lease_s):
                    claimed.append(job)
                    metrics.CLAIMS.labels("takeover" if takeover else "queued").inc()
                    log.info(
                        "job claimed",
                        job_id=job.id,
                        request_id=job.request_id,
                        kind=job.kind.value,
                        attempt=job.attempts,
                        max_attempts=job.max_attempts,
                        step=job.step,
                        takeover_from=previous_owner if takeover else None,
                    )
                else:
                    ended.append(job)
                await uow.jobs.save(job)
            queued = None
            if time.monotonic() - self._counted_at >= QUEUE_DEPTH_EVERY_S:
                queued = await uow.jobs.count_queued()
            await uow.commit()
        for job in ended:
            record_end(job)
        if queued is not None:
            self._counted_at = time.monotonic()
            metrics.QUEUE_DEPTH.set(queued)
        return claimed
