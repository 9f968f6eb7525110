"""Running a claimed job with fake adapters and a fake unit of work: steps, resumption,
cancel at the next step, attempts with backoff, the lease, and the follow-up LMS job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracer

from contracts import core as core_events
from core.adapters.midas import MidasRefused, MidasRejected
from core.adapters.model_client import ModelUnavailable
from core.adapters.vertica import Batch, VerticaUnavailable
from core.domain import Backoff, Job, Kind, State
from core.jobs import JobTypes
from core.jobs.cancellation_check import CancellationCheck
from core.runner import JobRunner
from servicekit.resilience import CircuitBreaker
from tests.unit.test_core_handlers import FakeUnitOfWork

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


async def no_sleep(_: float) -> None:
    pass


class FakeVertica:
    def __init__(self, total: int = 1000, failures: int = 0) -> None:
        self.total = total
        self.failures = failures
        self.reads: list[int] = []

    async def training_batch(self, model_request_id: str, offset: int, limit: int) -> Batch:
        if self.failures:
            self.failures -= 1
            raise VerticaUnavailable("vertica answered 503")
        self.reads.append(offset)
        end = min(offset + limit, self.total)
        rows = [{"customerId": n} for n in range(offset, end)]
        return Batch(rows, end if end < self.total else None, self.total)


class FakeModel:
    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)

    async def request_state(self, request_id: str) -> str | None:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeMidas:
    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[Any, ...]] = []

    async def send_lms(self, *args: Any) -> str:
        self.calls.append(args)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Fixture:
    def __init__(
        self,
        vertica: FakeVertica | None = None,
        model: FakeModel | None = None,
        midas: FakeMidas | None = None,
    ) -> None:
        self.uow = FakeUnitOfWork()
        self.vertica = vertica or FakeVertica()
        self.midas = midas or FakeMidas()
        check = CancellationCheck(
            model or FakeModel("inProgress"),
            CircuitBreaker("model"),
            Backoff(0.0, 0.0),
            sleep=no_sleep,
        )
        work = JobTypes(
            vertica=self.vertica,
            midas=self.midas,
            check=check,
            batch_size=400,
            step_duration_s=0,
            sleep=no_sleep,
        )
        self.runner = JobRunner(
            lambda: self.uow,  # type: ignore[arg-type,return-value]
            work,
            lease_s=10,
            backoff=Backoff(1.0, 8.0),
            lms_max_attempts=2,
            tracer=NoOpTracer(),
        )

    def claimed(self, kind: Kind = Kind.MODEL, *, steps: int = 3, **state: Any) -> Job:
        self.uow.jobs.ids += 1
        job = Job.new(self.uow.jobs.ids, kind, "15", "test", "m", steps, 3, now=T0)
        for name, value in state.items():
            setattr(job, name, value)
        self.uow.jobs.rows[job.id] = job
        job.claim(f"w/{job.id}", T0, 10)
        return job

    def row(self, id: int) -> Job:
        """The job as stored (a step stores a new copy of the claim's job)."""
        return self.uow.jobs.rows[id]

    def events(self) -> list[tuple[str, Any]]:
        return [(e.event_type(), getattr(e, "step", None)) for e in self.uow.outbox]


async def test_training_reads_batches_reports_each_step_then_completes() -> None:
    f = Fixture()
    job = f.claimed()
    await f.runner.run(job)
    assert f.events() == [
        ("ModelProgressed", 1),
        ("ModelProgressed", 2),
        ("ModelProgressed", 3),
        ("ModelCompleted", None),
    ]
    job = f.row(job.id)
    assert (job.state, job.step, job.attempts) == (State.COMPLETED, 3, 1)
    assert f.vertica.reads == [0, 400, 800]
    assert job.data_offset == 0  # the data ran out: a next step would start a new pass


async def test_a_job_taken_over_resumes_from_its_last_persisted_step() -> None:
    f = Fixture()
    job = f.claimed(step=2, data_offset=800, attempts=1)
    await f.runner.run(job)
    assert f.vertica.reads == [800]
    assert f.events() == [("ModelProgressed", 3), ("ModelCompleted", None)]
    assert job.attempts == 2


async def test_a_cancel_requested_mid_step_stops_the_job_at_that_step() -> None:
    f = Fixture()
    job = f.claimed()
    original = f.vertica.training_batch

    async def cancel_during_step_two(request_id: str, offset: int, limit: int) -> Batch:
        if offset == 400:
            f.row(job.id).request_cancel("changed my mind", T0)
        return await original(request_id, offset, limit)

    f.vertica.training_batch = cancel_during_step_two  # type: ignore[method-assign]
    await f.runner.run(job)
    assert f.events() == [("ModelProgressed", 1), ("JobCanceled", None)]
    job = f.row(job.id)
    assert (job.state, job.step, job.reason) == (State.CANCELED, 1, "changed my mind")


async def test_a_failing_step_sends_the_job_back_with_backoff_then_fails_it() -> None:
    f = Fixture(vertica=FakeVertica(failures=99))
    job = f.claimed()
    await f.runner.run(job)
    assert (job.state, job.attempts, job.last_error) == (State.QUEUED, 1, "vertica answered 503")
    assert job.lease_owner is None and job.available_at > T0

    for _ in range(2):
        job.claim("w/again", T0, 10)
        await f.runner.run(job)
    assert (job.state, job.attempts) == (State.FAILED, 3)
    assert job.reason == "vertica answered 503 (gave up after 3 attempts)"
    assert f.events() == [("ModelFailed", None)]


async def test_the_check_finding_the_request_cancelled_means_no_completion() -> None:
    f = Fixture(model=FakeModel(ModelUnavailable("model answered 503"), "requestCanceled"))
    job = f.claimed()
    await f.runner.run(job)
    assert f.events()[-1] == ("JobCanceled", None)
    assert "ModelCompleted" not in [name for name, _ in f.events()]
    job = f.row(job.id)
    assert (job.state, job.reason) == (State.CANCELED, "model request 15 was cancelled")


async def test_a_worker_that_lost_its_lease_writes_nothing_more() -> None:
    f = Fixture()
    job = f.claimed()
    original = f.vertica.training_batch

    async def taken_over(request_id: str, offset: int, limit: int) -> Batch:
        if offset == 400:
            f.row(job.id).lease_owner = "someone-else/1234"  # its lease ran out, claimed again
        return await original(request_id, offset, limit)

    f.vertica.training_batch = taken_over  # type: ignore[method-assign]
    await f.runner.run(job)
    assert f.events() == [("ModelProgressed", 1)]
    job = f.row(job.id)
    assert (job.state, job.step) == (State.RUNNING, 1)


async def test_a_completed_extraction_queues_its_lms_send_in_the_same_transaction() -> None:
    f = Fixture(midas=FakeMidas(MidasRefused("midas answered 503"), "send-1"))
    target = f.claimed(Kind.TARGET, steps=2)
    await f.runner.run(target)
    assert f.events() == [("TargetCompleted", None)]
    [lms] = [j for j in f.uow.jobs.rows.values() if j.kind == Kind.LMS]
    assert (lms.state, lms.request_id, lms.max_attempts) == (State.QUEUED, "15", 2)
    target = f.row(target.id)
    size = target.result["audienceSize"]
    assert lms.params == {
        "targetId": 15,
        "userId": "test",
        "audienceSize": size,
        "message": f"[nocode] m: a message for the {size} people of target {target.id}",
    }

    lms.claim("w/lms", T0, 10)
    await f.runner.run(lms)
    assert (lms.state, lms.last_error) == (State.QUEUED, "midas answered 503")
    lms.claim("w/lms2", T0, 10)
    await f.runner.run(lms)
    assert lms.state == State.COMPLETED and f.events()[-1] == ("LmsSent", None)
    assert [c[0] for c in f.midas.calls] == ["target-15", "target-15"]


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        ([MidasRefused("midas answered 503")] * 2, "midas answered 503 (gave up after 2 attempts)"),
        ([MidasRejected("midas rejected the send: 422")], "midas rejected the send: 422"),
    ],
)
async def test_midas_refusing_to_the_end_is_an_lms_failure(
    answers: list[Exception], reason: str
) -> None:
    f = Fixture(midas=FakeMidas(*answers))
    params = {"targetId": 15, "userId": "test", "audienceSize": 10, "message": "hi"}
    lms = f.claimed(Kind.LMS, steps=1, max_attempts=2, params=params)
    while lms.state != State.FAILED:
        await f.runner.run(lms)
        if lms.state == State.QUEUED:
            lms.claim("w/again", T0, 10)
    assert lms.reason == reason
    assert f.events() == [("LmsFailed", None)]


async def test_steps_name_their_vertica_batch_and_the_end_names_the_check() -> None:
    f = Fixture(vertica=FakeVertica(total=1000), model=FakeModel(ModelUnavailable("x"), "approved"))
    job = f.claimed()
    await f.runner.run(job)
    progressed = [e for e in f.uow.outbox if e.event_type() == "ModelProgressed"]
    assert [(e.batch, e.batch_offset, e.batch_rows, e.total_rows) for e in progressed] == [
        (1, 0, 400, 1000),
        (2, 400, 400, 1000),
        (3, 800, 200, 1000),
    ]
    [completed] = [e for e in f.uow.outbox if e.event_type() == "ModelCompleted"]
    assert completed.check == core_events.Check(outcome="complete", model_state="approved", tries=2)

    f = Fixture(model=FakeModel("requestCanceled"))
    await f.runner.run(f.claimed())
    canceled = f.uow.outbox[-1]
    assert canceled.event_type() == "JobCanceled"
    assert canceled.check == core_events.Check(outcome="canceled", model_state="requestCanceled")


def count_commits(f: Fixture) -> list[int]:
    commits = [0]
    original = f.uow.commit

    async def counted() -> None:
        commits[0] += 1
        await original()

    f.uow.commit = counted  # type: ignore[method-assign]
    return commits


async def test_a_lease_written_a_moment_ago_is_not_renewed_again() -> None:
    """Each step's write renews the lease: no renewal right after it (nor after the claim)."""
    f = Fixture()
    commits = count_commits(f)
    await f.runner.run(f.claimed())
    assert commits[0] == 4  # three steps and the end; no renewals
    assert f.events()[-1] == ("ModelCompleted", None)


async def test_a_lease_written_longer_ago_is_renewed_before_the_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("core.runner.FRESH_LEASE_S", 0.0)
    f = Fixture()
    commits = count_commits(f)
    await f.runner.run(f.claimed())
    assert commits[0] == 8  # a renewal before each of three steps and the check, and the writes
