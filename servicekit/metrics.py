"""Prometheus metrics the kernel records for every service.

Names follow Prometheus conventions (base units, ``_total`` counters). Each
service process has its own registry (the default one) exposed on ``/metrics``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from contracts.model import ModelState
from contracts.target import TargetState

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests served", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"]
)

OUTBOX_PUBLISHED = Counter(
    "outbox_events_published_total", "Outbox events published to Kafka", ["service", "topic"]
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "outbox_publish_failures_total", "Outbox publish attempts that failed", ["service"]
)
OUTBOX_BACKLOG = Gauge(
    "outbox_backlog_events", "Outbox events committed but not yet published", ["service"]
)
OUTBOX_LAG = Histogram(
    "outbox_publish_lag_seconds",
    "Time from an event's commit to its publication",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
OUTBOX_REPUBLISHED = Counter(
    "outbox_events_republished_total",
    "Retained outbox events published again because the broker was another cluster (lost them)",
    ["service"],
)
OUTBOX_REPUBLISH_MISSING = Gauge(
    "outbox_republish_missing_events",
    "Events the last re-publish could not send again: pruned by OUTBOX_RETENTION_HOURS (0: none)",
    ["service"],
)

CONSUMER_LABELS = ["service", "group", "topic"]
EVENTS_CONSUMED = Counter(
    "events_consumed_total",
    "Events taken from a topic, by outcome (applied, duplicate, ignored, dead_lettered)",
    [*CONSUMER_LABELS, "type", "outcome"],
)
EVENTS_FAILED = Counter(
    "events_failed_total", "Event processing attempts that raised", CONSUMER_LABELS
)
EVENTS_RETRIED = Counter(
    "events_retried_total",
    "Event processing attempts that failed and were retried",
    CONSUMER_LABELS,
)
EVENTS_DEAD_LETTERED = Counter(
    "events_dead_lettered_total", "Events parked on the dead-letter topic", CONSUMER_LABELS
)
EVENT_PROCESSING = Histogram(
    "event_processing_duration_seconds",
    "Time to apply one event, retries included",
    CONSUMER_LABELS,
)
CONSUMER_LAG = Gauge(
    "kafka_consumer_lag_messages",
    "Records on a partition not yet processed by the group (high-water mark minus position)",
    [*CONSUMER_LABELS, "partition"],
)


class ConsumerSeries:
    """One consumer's children of :data:`EVENT_PROCESSING` and :data:`EVENTS_CONSUMED`,
    looked up once per (topic) and (topic, type, outcome): ``labels()`` per event took a
    lock and built its key each time. The series are the same."""

    def __init__(self, service: str, group: str) -> None:
        self.service = service
        self.group = group
        self._processing: dict[str, Any] = {}
        self._consumed: dict[tuple[str, str, str], Any] = {}

    def processing(self, topic: str) -> Any:
        child = self._processing.get(topic)
        if child is None:
            child = EVENT_PROCESSING.labels(self.service, self.group, topic)
            self._processing[topic] = child
        return child

    def consumed(self, topic: str, type_: str, outcome: str) -> Any:
        key = (topic, type_, outcome)
        child = self._consumed.get(key)
        if child is None:
            child = EVENTS_CONSUMED.labels(self.service, self.group, topic, type_, outcome)
            self._consumed[key] = child
        return child


# The saga, recorded by the service where each transition happens (model for the model
# flow, target for the target flow), once its transaction committed (UnitOfWork.after_commit).
# No ``service`` label on the flow metrics: one service owns each flow, so ``flow`` says it.
SAGA_STAGE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 43200, 86400)
SAGA_STAGE_DURATION = Histogram(
    "saga_stage_duration_seconds",
    "Time from a request's creation to a stage of its saga (stage: approved, completed)",
    ["flow", "stage"],
    buckets=SAGA_STAGE_BUCKETS,
)
SAGA_OUTCOMES = Counter(
    "saga_outcomes_total",
    "Requests that reached an end state (outcome: completed, failed, rejected, canceled)",
    ["flow", "outcome"],
)
SAGA_CANCELLATIONS = Counter(
    "saga_cancellations_total",
    "Requests cancelled (by their user or by compensation), by the state they left",
    ["flow", "from_state"],
)
# Three services compensate, each in its own way: ``service`` says which one acted.
SAGA_COMPENSATIONS = Counter(
    "saga_compensations_total",
    "Compensating actions (kind: targets_canceled, completion_refused, job_canceled, "
    "job_compensated)",
    ["service", "kind"],
)

# End states as the flows name them (model's and target's states on the wire).
SAGA_END_STATES: dict[str, str] = {
    ModelState.COMPLETED: "completed",  # target's end states are spelled the same,
    ModelState.FAILED: "failed",  # but for its cancel
    ModelState.REJECTED: "rejected",
    TargetState.CANCELED: "canceled",
    ModelState.CANCELED: "canceled",
}


def record_saga_transition(
    flow: str, previous: str, state: str, created_at: datetime, now: datetime | None = None
) -> None:
    """Count one committed transition of a ``flow`` request from ``previous`` to ``state``."""
    if state == previous:
        return
    age = max(0.0, ((now or datetime.now(UTC)) - created_at).total_seconds())
    if state == ModelState.APPROVED:  # target's word too
        SAGA_STAGE_DURATION.labels(flow, "approved").observe(age)
    outcome = SAGA_END_STATES.get(state)
    if outcome is None:
        return
    SAGA_OUTCOMES.labels(flow, outcome).inc()
    if outcome == "completed":
        SAGA_STAGE_DURATION.labels(flow, "completed").observe(age)
    elif outcome == "canceled":
        SAGA_CANCELLATIONS.labels(flow, previous).inc()
