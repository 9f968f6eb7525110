"""Composition root: settings in, a runnable core service out."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from contracts.topics import MODEL_EVENTS, TARGET_EVENTS
from core.adapters.midas import Midas
from core.adapters.model_client import ModelService, ModelUnavailable
from core.adapters.vertica import Vertica
from core.api import router
from core.artifact import Artifacts
from core.compensation import CompensationCheck
from core.domain import Backoff
from core.handlers import JobPolicy, event_handlers
from core.ops import FailedJobs
from core.queue import CoreUnitOfWork
from core.runner import JobRunner
from core.settings import CoreSettings
from core.work import Work
from core.worker import Worker
from servicekit.app import create_app
from servicekit.auth import SERVICE
from servicekit.ops import mount_ops
from servicekit.resilience import CircuitBreaker
from servicekit.runtime import ServiceRuntime


def build(settings: CoreSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    s = settings or CoreSettings()
    runtime = ServiceRuntime(s)
    breaker = CircuitBreaker(
        "model",
        failure_threshold=s.breaker_failures,
        reset_timeout_s=s.breaker_reset_s,
        service=s.service_name,
    )

    def uow_factory() -> CoreUnitOfWork:
        # ``worker`` is bound below; a commit that enqueued a job wakes it.
        return CoreUnitOfWork(runtime.sessionmaker, runtime.outbox, worker.notify)

    issuer = s.service_token_issuer()  # core's own key: service tokens only

    def service_token() -> str:
        if issuer is None:
            raise ModelUnavailable("core has no JWT_PRIVATE_KEY to call model with")
        return issuer.issue("service:core", [SERVICE], ttl_s=60)

    artifacts = Artifacts(
        s.data_dir / "models",
        {"verticaBatchSize": s.vertica_batch_size, "stepDurationS": s.step_duration_s},
    )

    def make_runner(http: httpx.AsyncClient) -> JobRunner:
        check = CompensationCheck(
            ModelService(http, s.model_service_url, s.check_timeout_s, service_token),
            breaker,
            Backoff(s.check_backoff_initial_s, s.check_backoff_max_s),
        )
        work = Work(
            vertica=Vertica(http, s.vertica_url, s.vertica_timeout_s),
            midas=Midas(http, s.midas_url, s.midas_timeout_s),
            check=check,
            batch_size=s.vertica_batch_size,
            step_duration_s=s.step_duration_s,
        )
        return JobRunner(
            uow_factory,
            work,
            lease_s=s.lease_s,
            backoff=Backoff(s.job_backoff_initial_s, s.job_backoff_max_s),
            lms_max_attempts=s.lms_max_attempts,
            tracer=runtime.tracing.tracer,
            artifacts=artifacts,
        )

    def make_http() -> httpx.AsyncClient:
        client = httpx.AsyncClient()
        runtime.tracing.instrument_httpx(client)  # Vertica, MIDAS and model's check
        return client

    worker = Worker(
        uow_factory,
        make_runner,
        make_http=make_http,
        concurrency=s.worker_concurrency,
        poll_interval_s=s.poll_interval_s,
        lease_s=s.lease_s,
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
