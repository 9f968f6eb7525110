"""OpenTelemetry tracing for one service: its tracer provider and how work joins a trace.

Each service owns a :class:`Tracing` (not the global provider: tests run every service
in one process, and each must report under its own name). Spans leave the process only
over OTLP, and only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; with nothing to read them
(no span processor: how ``nocode up`` runs by default) they are not recorded at all, but
each still has a real span context (:class:`ServiceTracerProvider`), so logs carry trace
ids and ``traceparent`` goes on across services and through events.

Work that outlives the request or event that caused it (an outbox row, a queued job,
a chat message waiting to be sent) stores :func:`current_traceparent` beside it; the
code that later does the work opens its span with :func:`span_from` on that value,
so the whole saga is one trace.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import aiohttp
from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.propagators.b3 import B3MultiFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.sql import trace_statements
from servicekit.tracer_provider import ServiceTracerProvider

W3C = TraceContextTextMapPropagator()
# HTTP carries W3C trace context and B3 (what Istio's Envoy and Zipkin read) both ways;
# Kafka records carry the envelope's W3C ``traceparent`` only.
propagate.set_global_textmap(CompositePropagator([W3C, W3CBaggagePropagator(), B3MultiFormat()]))

# Requests, events and publishes may start a trace; a database poll or an idle
# background loop with nothing upstream may not (it would bury the real traces).
ENTRY_KINDS = frozenset({SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.PRODUCER})
UNTRACED_PATHS = ("/health/", "/metrics")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def package_version() -> str:
    try:
        return version("nocode")
    except PackageNotFoundError:
        return "0.0.0"


class EntrySpans(Sampler):
    """Samples root spans of the entry kinds (at ``ratio``); drops other root spans."""

    def __init__(self, ratio: float = 1.0) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind not in ENTRY_KINDS:
            return SamplingResult(Decision.DROP)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"EntrySpans({self._ratio.get_description()})"


class Tracing:
    def __init__(
        self,
        service: str,
        *,
        otlp_endpoint: str | None = None,
        sample_ratio: float = 1.0,
        service_version: str | None = None,
    ) -> None:
        self.service = service
        resource = Resource.create(
            {
                "service.name": service,
                "service.namespace": "nocode",
                "service.version": service_version or package_version(),
                "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
            }
        )
        self.provider = ServiceTracerProvider(
            resource=resource, sampler=ParentBased(EntrySpans(sample_ratio))
        )
        if otlp_endpoint:
            exporter = OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer: Tracer = self.provider.get_tracer(f"nocode.{service}")

    def add_span_processor(self, processor: SpanProcessor) -> None:
        """Record every span from now on, and hand it to ``processor`` when it ends."""
        self.provider.add_span_processor(processor)

    def instrument_fastapi(self, app: FastAPI) -> None:
        """A server span per request (not health or metrics), outermost."""
        app.add_middleware(ServerSpans, tracer=self.tracer)

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """A span per SQL statement, under whatever span is current."""
        # The instrumentor's instrument() is process-wide (one provider for every engine);
        # its EngineTracer instruments just this engine with this service's provider.
        meter = NoOpMeterProvider().get_meter(__name__)
        tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
        EngineTracer(
            tracer, engine.sync_engine, meter.create_up_down_counter("db.client.connections.usage")
        )
        trace_statements(engine, tracer)  # the hot paths' statements, run on asyncpg

    def aiohttp_trace_config(self) -> aiohttp.TraceConfig:
        return create_trace_config(
            tracer_provider=self.provider, meter_provider=NoOpMeterProvider()
        )

    async def flush(self) -> None:
        """Hand every finished span to the exporter (off the event loop: it blocks)."""
        await asyncio.to_thread(self.provider.force_flush, 5_000)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to store beside deferred work."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def context_of(traceparent: str | None) -> otel_context.Context:
    """The context a stored ``traceparent`` names; an empty one (a new trace) if none."""
    if not traceparent:
        return otel_context.Context()
    return W3C.extract({"traceparent": traceparent})


@contextmanager
def span_from(
    tracer: Tracer,
    name: str,
    traceparent: str | None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A current span continuing the trace of ``traceparent`` (work deferred from it)."""
    with tracer.start_as_current_span(
        name, context=context_of(traceparent), kind=kind, attributes=attributes
    ) as span:
        yield span


class ServerSpans:
    """One SERVER span per HTTP request, continuing the caller's trace (W3C or B3 headers),
    named ``METHOD route`` once routing has matched: what the gateway's spans are
    (``gateway.tracing``), for a FastAPI service. OpenTelemetry's ASGI instrumentation made
    three middlewares, matched every route a second time to name the span and wrapped every
    ``send``; this does one span and reads what routing left in the scope."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNTRACED_PATHS):
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in HTTP_METHODS else "HTTP"
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.tracer.start_as_current_span(
            method,
            context=propagate.extract(headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
