"""A database outage spends none of an event's attempts; a failing handler still does."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import NoOpTracer

from contracts.core import ModelProgressed
from servicekit.consumer import EventConsumer
from servicekit.envelope import Envelope


class Record:
    topic, partition, offset, key, value, headers = "core.events", 0, 7, b"1", b"{}", []


def consumer(failures: list[BaseException]) -> tuple[EventConsumer, list[str]]:
    outcomes: list[str] = []
    subject = EventConsumer(
        service="model",
        topics=("core.events",),
        bootstrap_servers="127.0.0.1:1",
        uow_factory=lambda: None,  # type: ignore[arg-type,return-value]
        handlers={},
        dead_letter_producer=None,  # type: ignore[arg-type]
        tracer=NoOpTracer(),
        max_attempts=3,
        backoff_initial_s=0.0,
        backoff_max_s=0.0,
    )

    async def apply(*_: Any) -> str:
        if failures:
            raise failures.pop(0)
        outcomes.append("applied")
        return "applied"

    async def dead_letter(_: Any, error: BaseException, attempts: int, span: Any) -> None:
        outcomes.append(f"dead-lettered after {attempts}: {error!r}")

    subject._apply = apply  # type: ignore[method-assign]
    subject._dead_letter = dead_letter  # type: ignore[method-assign]
    return subject, outcomes


def envelope() -> Envelope:
    return Envelope.wrap(ModelProgressed(id=1, request_id="1", step=1, total_steps=2), "/t")


@pytest.mark.parametrize(
    "outage",
    [ConnectionRefusedError(111, "Connection refused"), TimeoutError("connect timed out")],
)
async def test_an_outage_longer_than_the_attempts_is_waited_out(outage: BaseException) -> None:
    subject, outcomes = consumer([outage] * 10)
    await subject._apply_with_retries(Record(), envelope(), None, NoOpTracer().start_span("x"))  # type: ignore[arg-type]
    assert outcomes == ["applied"]


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_its_attempts() -> None:
    subject, outcomes = consumer([ValueError("bad")] * 10)
    await subject._apply_with_retries(Record(), envelope(), None, NoOpTracer().start_span("x"))  # type: ignore[arg-type]
    assert outcomes == ["dead-lettered after 3: ValueError('bad')"]
