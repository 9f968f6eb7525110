"""Backoff and a circuit breaker: how a service treats a dependency that may be down.

Pure (the clock is injected), so they are unit-tested without sleeping. The
breaker's state is exported as ``circuit_breaker_open`` so operators see it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from enum import StrEnum

from prometheus_client import Gauge

BREAKER_OPEN = Gauge(
    "circuit_breaker_open",
    "1 while a circuit breaker is open (calls to the dependency fail fast), else 0",
    ["service", "dependency"],
)


def backoff_delay(attempt: int, initial_s: float, max_s: float, *, jitter: bool = False) -> float:
    """Exponential backoff for the ``attempt``-th retry (1-based), capped at ``max_s``.

    With ``jitter`` the delay is drawn from [delay/2, delay] so that many clients
    retrying the same dependency do not retry in lockstep.
    """
    delay = min(initial_s * 2 ** max(attempt - 1, 0), max_s)
    return random.uniform(delay / 2, delay) if jitter else delay


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
