"""Backoff and a circuit breaker: how a service treats a dependency that may be down.

:class:`Backoff` is the platform's one retry schedule (exponential, jittered by default):
every loop that retries something that failed takes its delays from it.

Pure (the clock is injected), so they are unit-tested without sleeping. The
breaker's state is exported as ``circuit_breaker_open`` so operators see it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from prometheus_client import Gauge

BREAKER_OPEN = Gauge(
    "circuit_breaker_open",
    "1 while a circuit breaker is open (calls to the dependency fail fast), else 0",
    ["service", "dependency"],
)


def backoff_delay(
    attempt: int,
    initial_s: float,
    max_s: float,
    *,
    jitter: bool = True,
    rand: Callable[[], float] = random.random,
) -> float:
    """Exponential backoff for the ``attempt``-th retry (1-based), capped at ``max_s``.

    With ``jitter`` (the default) the delay is drawn from [delay/2, delay], so that many
    clients retrying the same dependency do not retry in lockstep. The exponent is
    bounded, so a dependency down for days cannot overflow the float.
    """
    delay = min(initial_s * 2 ** min(max(attempt - 1, 0), 64), max_s)
    return delay * (0.5 + rand() / 2) if jitter else delay


@dataclass(frozen=True)
class Backoff:
    """The platform's one retry schedule: ``initial_s`` doubling up to ``max_s``, jittered.

    :meth:`delay` serves schedules kept elsewhere (a job's or a message's attempt count
    in its row); :meth:`retries` a loop in memory."""

    initial_s: float
    max_s: float
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.initial_s, self.max_s, jitter=self.jitter)

    def retries(self) -> Retries:
        return Retries(self)


class Retries:
    """One retry loop's state: each failure asks :meth:`next_delay`, a success
    :meth:`reset` s the schedule to its first delay."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.attempt = 0

    def next_delay(self) -> float:
        self.attempt += 1
        return self.backoff.delay(self.attempt)

    def reset(self) -> None:
        self.attempt = 0


class CircuitOpen(Exception):
    def __init__(self, dependency: str, retry_in_s: float) -> None:
        super().__init__(f"{dependency}: circuit open, next trial in {retry_in_s:.1f}s")
        self.dependency = dependency
        self.retry_in_s = retry_in_s


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed until ``failure_threshold`` consecutive failures; then open for
    ``reset_timeout_s`` (calls refused at once); then half-open: one trial call,
    whose success closes it and whose failure opens it again.
    """

    def __init__(
        self,
        dependency: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 10.0,
        service: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dependency = dependency
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_in_flight = False
        self._gauge = BREAKER_OPEN.labels(service, dependency)
        self._gauge.set(0)

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at < self.reset_timeout_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def before_call(self) -> None:
        """Raise :class:`CircuitOpen` if the call must not be made now."""
        state = self.state
        if state == BreakerState.OPEN or (state == BreakerState.HALF_OPEN and self.trial_in_flight):
            assert self.opened_at is not None
            remaining = max(self.reset_timeout_s - (self.clock() - self.opened_at), 0.0)
            raise CircuitOpen(self.dependency, remaining)
        if state == BreakerState.HALF_OPEN:
            self.trial_in_flight = True

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial_in_flight = False
        self._gauge.set(0)

    def record_failure(self) -> None:
        self.failures += 1
        if self.trial_in_flight or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()
            self._gauge.set(1)
        self.trial_in_flight = False
