"""The Job aggregate: its transition table, attempts and backoff, and what it announces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

from core.domain import LIFECYCLE, Action, Backoff, Job, Kind, State
from servicekit.statemachine import IllegalTransition

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BACKOFF = Backoff(initial_s=1.0, max_s=5.0, jitter=False)

LEGAL = {
    (State.QUEUED, Action.CLAIM): State.RUNNING,
    (State.RUNNING, Action.CLAIM): State.RUNNING,
    (State.RUNNING, Action.RENEW): State.RUNNING,
    (State.RUNNING, Action.STEP): State.RUNNING,
    (State.RUNNING, Action.COMPLETE): State.COMPLETED,
    (State.RUNNING, Action.RETRY): State.QUEUED,
    (State.RUNNING, Action.FAIL): State.FAILED,
    (State.QUEUED, Action.CANCEL): State.CANCELED,
    (State.RUNNING, Action.CANCEL): State.CANCELED,
    (State.COMPLETED, Action.COMPENSATE): State.CANCELED,
    (State.FAILED, Action.REDRIVE): State.QUEUED,
}


@pytest.mark.parametrize(("state", "action"), list(product(State, Action)))
def test_every_state_and_action_is_legal_exactly_as_the_table_says(
    state: State, action: Action
) -> None:
    if (state, action) in LEGAL:
        assert LIFECYCLE.next(7, state, action) == LEGAL[(state, action)]
    else:
        with pytest.raises(IllegalTransition, match=f"cannot {action} job 7: it is {state}"):
            LIFECYCLE.next(7, state, action)


def test_finished_jobs_allow_nothing_but_compensating_a_completion_or_redriving_a_failure() -> None:
    assert LIFECYCLE.actions_from(State.FAILED) == [Action.REDRIVE]
    assert LIFECYCLE.actions_from(State.CANCELED) == []
    assert LIFECYCLE.actions_from(State.COMPLETED) == [Action.COMPENSATE]


def job(kind: Kind = Kind.MODEL, *, steps: int = 3, max_attempts: int = 3) -> Job:
    return Job.new(1, kind, "15", "test", "TestModel5", steps, max_attempts, now=T0)


def types(job: Job) -> list[str]:
    return [e.event_type() for e in job.pull_events()]


def test_each_claim_counts_an_attempt_and_takes_a_lease() -> None:
    j = job()
    assert j.claim("w1/a", T0, lease_s=10)
    assert (j.state, j.attempts, j.lease_owner) == (State.RUNNING, 1, "w1/a")
    assert j.lease_expires_at == T0 + timedelta(seconds=10)
    assert j.started_at == T0

    later = T0 + timedelta(seconds=30)  # the lease ran out: another worker takes over
    assert j.claim("w2/b", later, lease_s=10)
    assert (j.attempts, j.lease_owner, j.started_at) == (2, "w2/b", T0)
    assert types(j) == []


def test_a_step_persists_progress_renews_the_lease_and_reports_it() -> None:
    j = job()
    j.claim("w", T0, 10)
    j.advance(T0 + timedelta(seconds=4), 10, data_offset=200)
    assert (j.step, j.data_offset) == (1, 200)
    assert j.lease_expires_at == T0 + timedelta(seconds=14)
    [progressed] = j.pull_events()
    assert progressed.to_value() | {"timestamp": 0} == {
        "eventType": "ModelProgressed",
        "timestamp": 0,
        "id": 1,
        "type": "model",
        "state": "inProgress",
        "requestId": "15",
        "step": 1,
        "totalSteps": 3,
    }


def test_extraction_steps_report_nothing_until_the_target_is_complete() -> None:
    j = job(Kind.TARGET)
    j.claim("w", T0, 10)
    j.advance(T0, 10)
    j.complete(T0, audienceSize=1234)
    assert types(j) == ["TargetCompleted"]
    assert (j.step, j.finished_at, j.lease_owner) == (3, T0, None)


def test_a_failed_attempt_goes_back_to_the_queue_with_growing_backoff() -> None:
    j = job(max_attempts=4)
    delays = []
    now = T0
    for _ in range(3):
        assert j.claim("w", now, 10)
        delay = j.fail_attempt("vertica answered 503", now, BACKOFF)
        assert delay is not None
        assert j.state == State.QUEUED and j.lease_owner is None
        assert j.available_at == now + timedelta(seconds=delay)
        delays.append(delay)
        now = j.available_at
    assert delays == [1.0, 2.0, 4.0]
    assert j.last_error == "vertica answered 503" and types(j) == []


def test_the_last_attempt_failing_fails_the_job_with_the_reason() -> None:
    j = job(max_attempts=2)
    for _ in range(2):
        j.claim("w", T0, 10)
        delay = j.fail_attempt("vertica timed out after 1.0s", T0, BACKOFF)
    assert delay is None
    assert (j.state, j.attempts, j.max_attempts) == (State.FAILED, 2, 2)
    assert j.reason == "vertica timed out after 1.0s (gave up after 2 attempts)"
    [failed] = j.pull_events()
    assert failed.event_type() == "ModelFailed" and failed.reason == j.reason


def test_a_redriven_job_is_queued_again_with_a_fresh_round_of_attempts_once() -> None:
    j = job(max_attempts=2)
    for _ in range(2):
        j.claim("w", T0, 10)
        j.step = 2
        j.fail_attempt("vertica answered 503", T0, BACKOFF)
    j.pull_events()
    later = T0 + timedelta(minutes=5)
    j.redrive(later, attempts=2)
    assert (j.state, j.attempts, j.max_attempts, j.redrives) == (State.QUEUED, 2, 4, 1)
    assert (j.available_at, j.finished_at, j.reason, j.step) == (later, None, None, 2)
    assert j.pull_events() == []  # nothing announced until it runs
    with pytest.raises(IllegalTransition, match="cannot redrive job 1: it is queued"):
        j.redrive(later, attempts=2)
    assert j.claim("w", later, 10)
    assert j.attempts == 3


def test_a_final_failure_does_not_wait_for_the_attempts() -> None:
    j = job(Kind.LMS, max_attempts=5)
    j.claim("w", T0, 10)
    assert j.fail_attempt("midas rejected the send: 400", T0, BACKOFF, final=True) is None
    assert j.state == State.FAILED and j.attempts == 1
    assert types(j) == ["LmsFailed"]


def test_a_worker_lost_on_the_last_attempt_ends_the_job_instead_of_a_new_claim() -> None:
    j = job(max_attempts=1)
    j.claim("w1", T0, 10)
    assert not j.claim("w2", T0 + timedelta(seconds=60), 10)
    assert (j.state, j.attempts) == (State.FAILED, 1)
    assert j.reason == "worker lost during attempt 1 of 1"
    assert types(j) == ["ModelFailed"]


def test_cancel_ends_a_queued_job_at_once() -> None:
    j = job()
    assert j.request_cancel("changed my mind", T0) == "canceled"
    assert (j.state, j.reason, j.finished_at) == (State.CANCELED, "changed my mind", T0)
    [canceled] = j.pull_events()
    assert canceled.to_value() | {"timestamp": 0} == {
        "eventType": "JobCanceled",
        "timestamp": 0,
        "id": 1,
        "type": "model",
        "state": "canceled",
        "requestId": "15",
        "reason": "changed my mind",
    }


def test_cancel_of_a_running_job_is_requested_and_finished_jobs_ignore_it() -> None:
    j = job()
    j.claim("w", T0, 10)
    assert j.request_cancel("stop", T0) == "cancel_requested"
    assert (j.state, j.cancel_requested) == (State.RUNNING, True)
    assert types(j) == []

    done = job()
    done.claim("w", T0, 10)
    done.complete(T0)
    done.pull_events()
    assert done.request_cancel("too late", T0) == "ignored"
    assert done.state == State.COMPLETED and types(done) == []


def test_a_refused_completion_is_compensated_once() -> None:
    j = job()
    j.claim("w", T0, 10)
    j.complete(T0)
    assert types(j) == ["ModelCompleted"]
    assert j.compensate("completion refused: model request 15 is requestCanceled", T0)
    assert j.state == State.CANCELED
    assert types(j) == ["JobCanceled"]
    assert not j.compensate("again", T0)  # a redelivered refusal changes nothing
    assert types(j) == []


def test_the_lms_job_announces_the_midas_send_as_a_target_event() -> None:
    j = job(Kind.LMS)
    j.claim("w", T0, 10)
    j.complete(T0, midas_send_id="abc123")
    [sent] = j.pull_events()
    assert (sent.event_type(), sent.type, sent.midas_send_id) == ("LmsSent", "target", "abc123")
    assert j.result == {"midas_send_id": "abc123"}
    assert j.work_steps == 0 and j.step == j.total_steps


def test_a_job_whose_worker_stopped_before_seeing_its_cancel_ends_at_the_next_claim() -> None:
    j = job()
    j.claim("w1", T0, 10)
    j.request_cancel("changed my mind", T0)
    assert not j.claim("w2", T0 + timedelta(seconds=60), 10)
    assert (j.state, j.attempts, j.reason) == (State.CANCELED, 1, "changed my mind")
    assert types(j) == ["JobCanceled"]
