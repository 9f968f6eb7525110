"""The cancellation check (the saga's "compensation check"): before announcing a model's
completion, ask model whether the request was cancelled meanwhile. Never answered
blindly: while model cannot be asked, keep trying.

What model's answer means:
- ``approved`` / ``inProgress`` (or ``completed``, a repeat): go on and complete.
- ``requestCanceled``: the job ends cancelled; no ModelCompleted goes out.
- any other state (``rejected``, ``failed``, ...): model would refuse the completion, so the
  job ends cancelled, saying which state it found.
- 404: model, the owner of model requests, does not know the request (it was never there,
  or model's data was lost or reset). There is nobody to complete it for and model would
  refuse the event, so the job ends cancelled with that reason. It is a definite answer, not
  an outage, so it does not count against the circuit breaker.
- timeout, connection error, any other status, or the breaker open: no answer; retry with
  backoff (the caller renews the job's lease before every try) until there is one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import structlog
from pydantic.alias_generators import to_camel

from contracts.core import Check
from contracts.model import ModelState
from core import metrics
from core.adapters.model_client import ModelUnavailable
from servicekit.resilience import Backoff, CircuitBreaker, CircuitOpen

log = structlog.get_logger(__name__)

COMPLETABLE = frozenset({ModelState.APPROVED, ModelState.IN_PROGRESS, ModelState.COMPLETED})
# Shortest pause while the breaker is open, so a half-open trial in flight is not spun on.
MIN_PAUSE_S = 0.05


class ModelStates(Protocol):
    async def request_state(self, request_id: str) -> str | None: ...


@dataclass(frozen=True)
class Verdict:
    complete: bool
    reason: str | None = None
    # What model answered, announced with the job's end; not part of the decision itself.
    check: Check | None = field(default=None, compare=False)


def judge(request_id: str, state: str | None) -> tuple[Verdict, str]:
    """Model's answer → what to do, and the outcome label for metrics and logs."""
    if state is None:
        reason = f"model request {request_id} is unknown to the model service"
        return Verdict(False, reason), "not_found"
    if state in COMPLETABLE:
        return Verdict(True), "complete"
    if state == ModelState.CANCELED:
        return Verdict(False, f"model request {request_id} was cancelled"), "canceled"
    return Verdict(False, f"model request {request_id} is {state}"), "refused"


class CancellationCheck:
    def __init__(
        self,
        model: ModelStates,
        breaker: CircuitBreaker,
        backoff: Backoff,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.model = model
        self.breaker = breaker
        self.backoff = backoff
        self.sleep = sleep

    async def verdict(
        self, request_id: str, before_try: Callable[[], Awaitable[None]], job_id: int = 0
    ) -> Verdict:
        """Ask until model answers. ``before_try`` runs before each try (it renews the
        job's lease, and raises to stop when the job was cancelled meanwhile)."""
        log_ = log.bind(job_id=job_id, request_id=request_id)
        failures = 0
        while True:
            await before_try()
            try:
                self.breaker.before_call()
            except CircuitOpen as exc:
                failures += 1
                metrics.COMPENSATION_CHECKS.labels("breaker_open").inc()
                pause = max(min(self.backoff.delay(failures), exc.retry_in_s), MIN_PAUSE_S)
                log_.warning("compensation check: breaker open", retry_in_s=pause)
                await self.sleep(pause)
                continue
            try:
                state = await self.model.request_state(request_id)
            except ModelUnavailable as exc:
                self.breaker.record_failure()
                failures += 1
                metrics.COMPENSATION_CHECKS.labels("unavailable").inc()
                pause = self.backoff.delay(failures)
                log_.warning(
                    "compensation check: model unavailable",
                    error=str(exc),
                    attempt=failures,
                    retry_in_s=pause,
                    breaker=self.breaker.state.value,
                )
                await self.sleep(pause)
                continue
            except BaseException:
                # Cancelled mid-call: do not leave a half-open trial marked in flight forever.
                if self.breaker.trial_in_flight:
                    self.breaker.record_failure()
                raise
            self.breaker.record_success()
            verdict, outcome = judge(request_id, state)
            metrics.COMPENSATION_CHECKS.labels(outcome).inc()
            log_.info("compensation check", model_state=state, outcome=outcome, tries=failures + 1)
            check = Check(outcome=to_camel(outcome), model_state=state, tries=failures + 1)
            return replace(verdict, check=check)
