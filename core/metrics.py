"""Prometheus metrics of the job queue and its workers (base units, ``_total`` counters)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# core's compensations (job_canceled, job_compensated) count in the saga's metric too.
from servicekit.metrics import SAGA_COMPENSATIONS as SAGA_COMPENSATIONS

JOBS = Counter(
    "core_jobs_total",
    "Jobs by kind and outcome (enqueued, completed, canceled, failed, retried, compensated)",
    ["kind", "outcome"],
)
JOB_DURATION = Histogram(
    "core_job_duration_seconds",
    "Time from a job's first claim to its end",
    ["kind", "outcome"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
QUEUE_DEPTH = Gauge("core_queue_depth", "Jobs queued, waiting for a worker")
RUNNING = Gauge("core_jobs_running", "Jobs running in this worker process")
CLAIMS = Counter(
    "core_job_claims_total",
    "Jobs claimed by this process (how: queued, or takeover when a lease ran out)",
    ["how"],
)
COMPENSATION_CHECKS = Counter(
    "core_compensation_checks_total",
    "Compensation checks against the model service by outcome",
    ["outcome"],
)
TRAINING_ROWS = Counter("core_training_rows_total", "Training rows pulled from Vertica")
LMS_SENDS = Counter(
    "core_lms_sends_total", "LMS bulk send attempts to MIDAS by outcome", ["outcome"]
)
