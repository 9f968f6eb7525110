"""The compensation check: what model's answers mean, retries and the circuit breaker."""

from __future__ import annotations

import pytest

from core.adapters.model_client import ModelUnavailable
from core.compensation import CompensationCheck, Verdict, judge
from core.domain import Backoff
from servicekit.resilience import BreakerState, CircuitBreaker


@pytest.mark.parametrize(
    ("state", "verdict", "outcome"),
    [
        ("approved", Verdict(True), "complete"),
        ("inProgress", Verdict(True), "complete"),
        ("completed", Verdict(True), "complete"),
        ("requestCanceled", Verdict(False, "model request 7 was cancelled"), "canceled"),
        ("rejected", Verdict(False, "model request 7 is rejected"), "refused"),
        ("failed", Verdict(False, "model request 7 is failed"), "refused"),
        (None, Verdict(False, "model request 7 is unknown to the model service"), "not_found"),
    ],
)
def test_what_models_answer_means(state: str | None, verdict: Verdict, outcome: str) -> None:
    assert judge("7", state) == (verdict, outcome)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FlakyModel:
    """Answers from a script: an exception is raised, a state is answered."""

    def __init__(self, clock: Clock, *script: str | Exception) -> None:
        self.clock = clock
        self.script = list(script)
        self.calls: list[float] = []

    async def request_state(self, request_id: str) -> str | None:
        self.calls.append(self.clock.now)
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_model_down_is_retried_through_the_breaker_until_it_answers() -> None:
    clock = Clock()
    down = ModelUnavailable("model unreachable: ConnectError")
    model = FlakyModel(clock, down, down, down, "inProgress")
    breaker = CircuitBreaker("model", failure_threshold=2, reset_timeout_s=3.0, clock=clock)
    check = CompensationCheck(model, breaker, Backoff(0.5, 2.0, False), sleep=clock.sleep)
    renewals = []

    async def renew() -> None:
        renewals.append(clock.now)

    assert await check.verdict("7", renew) == Verdict(True)
    # Two failures open the breaker; while open, core waits instead of calling; the
    # half-open trial fails and opens it again; the next trial succeeds and closes it.
    assert model.calls == [0.0, 0.5, 3.5, 6.5]
    assert breaker.state == BreakerState.CLOSED
    assert clock.sleeps == [0.5, 1.0, 2.0, 2.0, 1.0]
    assert len(renewals) == len(clock.sleeps) + 1  # the lease is renewed before every try


async def test_a_cancel_found_by_the_check_is_the_verdict() -> None:
    clock = Clock()
    model = FlakyModel(clock, ModelUnavailable("model answered 503"), "requestCanceled")
    breaker = CircuitBreaker("model", failure_threshold=5, clock=clock)
    check = CompensationCheck(model, breaker, Backoff(0.1, 1.0), sleep=clock.sleep)

    async def renew() -> None:
        pass

    assert await check.verdict("7", renew) == Verdict(False, "model request 7 was cancelled")
    assert breaker.failures == 0


async def test_the_check_stops_when_renewing_the_lease_says_so() -> None:
    clock = Clock()
    model = FlakyModel(clock, *[ModelUnavailable("down")] * 5)
    check = CompensationCheck(
        model, CircuitBreaker("model", clock=clock), Backoff(0.1, 1.0), sleep=clock.sleep
    )
    tries = 0

    async def renew() -> None:
        nonlocal tries
        tries += 1
        if tries == 3:
            raise LookupError("the job was cancelled meanwhile")

    with pytest.raises(LookupError):
        await check.verdict("7", renew)
    assert len(model.calls) == 2
