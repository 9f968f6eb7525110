"""Prometheus metrics the kernel records for every service.

Names follow Prometheus conventions (base units, ``_total`` counters). Each
service process has its own registry (the default one) exposed on ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
