"""Composition root: settings in, a runnable core service out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

import aiohttp
from fastapi import FastAPI

from contracts.topics import MODEL_EVENTS, TARGET_EVENTS
from core.adapters.midas import Midas
from core.adapters.model_client import ModelService, ModelUnavailable
from core.adapters.vertica import Vertica
from core.api import router
from core.artifact import Artifacts
from core.handlers import JobPolicy, event_handlers
from core.jobs import JobTypes
from core.jobs.cancellation_check import CancellationCheck
from core.ops import FailedJobs
from core.repository import CoreUnitOfWork
from core.runner import JobRunner
from core.settings import CoreSettings
from core.worker import Worker
from servicekit.app import create_app
from servicekit.auth import SERVICE, TokenIssuer
from servicekit.ops import mount_ops
from servicekit.resilience import Backoff, CircuitBreaker
from servicekit.runtime import ServiceRuntime

UowFactory = Callable[[], CoreUnitOfWork]


def build(settings: CoreSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    s = settings or CoreSettings()
    runtime = ServiceRuntime(s)
    wake = asyncio.Event()  # set by a commit that enqueued a job: the worker claims at once
    uow_factory = partial(CoreUnitOfWork, runtime.sessionmaker, runtime.outbox, wake.set)
    artifacts = Artifacts(
        s.data_dir / "models",
        {"verticaBatchSize": s.vertica_batch_size, "stepDurationS": s.step_duration_s},
    )
    breaker = CircuitBreaker(
        "model",
        failure_threshold=s.breaker_failures,
        reset_timeout_s=s.breaker_reset_s,
        service=s.service_name,
    )
    worker = Worker(
        uow_factory,
        partial(job_runner, s, runtime, uow_factory, breaker, artifacts),
        make_http=partial(http_client, runtime),
        concurrency=s.worker_concurrency,
        poll_interval_s=s.poll_interval_s,
        lease_s=s.lease_s,
        wake=wake,
    )
    policy = JobPolicy(
        training_steps=s.training_steps,
        extraction_steps=s.extraction_steps,
        max_attempts=s.job_max_attempts,
        lms_max_attempts=s.lms_max_attempts,
    )
    runtime.publish_from_outbox()
    runtime.consume((MODEL_EVENTS, TARGET_EVENTS), event_handlers(policy), uow_factory)
    runtime.run_worker("jobs", worker.run)
    app = create_app(runtime, router)
    mount_ops(app, runtime, "/cores", FailedJobs(uow_factory, policy))
    app.state.uow_factory = uow_factory
    app.state.artifacts = artifacts
    app.state.worker = worker
    return app, runtime


def job_runner(
    s: CoreSettings,
    runtime: ServiceRuntime,
    uow_factory: UowFactory,
    breaker: CircuitBreaker,
    artifacts: Artifacts,
    http: aiohttp.ClientSession,
) -> JobRunner:
    """The runner of the worker's jobs, its adapters sharing the worker's ``http``."""
    token = partial(service_token, s.service_token_issuer())  # core's own key
    model = ModelService(http, s.model_service_url, s.check_timeout_s, token)
    check = CancellationCheck(
        model, breaker, Backoff(s.check_backoff_initial_s, s.check_backoff_max_s)
    )
    types = JobTypes(
        vertica=Vertica(http, s.vertica_url, s.vertica_timeout_s),
        midas=Midas(http, s.midas_url, s.midas_timeout_s),
        check=check,
        batch_size=s.vertica_batch_size,
        step_duration_s=s.step_duration_s,
        artifacts=artifacts,
    )
    return JobRunner(
        uow_factory,
        types,
        lease_s=s.lease_s,
        backoff=Backoff(s.job_backoff_initial_s, s.job_backoff_max_s),
        lms_max_attempts=s.lms_max_attempts,
        tracer=runtime.tracing.tracer,
    )


def service_token(issuer: TokenIssuer | None) -> str:
    """A short-lived service token for core's call to model."""
    if issuer is None:
        raise ModelUnavailable("core has no JWT_PRIVATE_KEY to call model with")
    return issuer.issue("service:core", [SERVICE], ttl_s=60)


def http_client(runtime: ServiceRuntime) -> aiohttp.ClientSession:
    """Vertica's, MIDAS's and model's check's client: aiohttp's, not httpx's (a call costs
    about a fifth of the CPU), traced."""
    return aiohttp.ClientSession(trace_configs=[runtime.tracing.aiohttp_trace_config()])
