"""A tracer provider that records spans only while something reads them.

Recording a span (its attributes, its processors' start and end calls) is more than
half of what a span costs (``bench/tracing_cost.py``: ~24 µs of CPU recorded, ~9 µs not),
and a service without an exporter paid it for every request and event only to drop the
span. Here spans are recorded once a span processor is added; until then each is an
:class:`UnrecordedSpan` that still has a real context: log lines carry its trace id, and
``traceparent`` / B3 headers go on from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    NoOpTracer,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
)
from opentelemetry.util.types import Attributes


class UnrecordedSpan(NonRecordingSpan):
    """A span nothing records: only its context, and its service's resource, which log
    lines read to name the service (one process may run several, in tests)."""

    def __init__(self, context: SpanContext, resource: Resource) -> None:
        super().__init__(context)
        self.resource = resource


class ServiceTracerProvider(TracerProvider):
    """A tracer provider that records spans only while a span processor is there to read
    them, i.e. one was added: the OTLP exporter's, or a test's in-memory one.

    Until then its tracers make :class:`UnrecordedSpan` s with the context the recorded
    span would have had: the parent's trace id (or a new one), a new span id, and the
    sampler's decision as the sampled flag. So propagation is the same either way: a
    caller's sampled trace stays sampled for the services downstream that do export, and
    a mesh's ``X-B3-Sampled: 1`` is passed on, not turned off by a service that merely
    doesn't record. (The sampler's DROP would give a non-recording span too, but always
    unsampled.) Adding a processor turns recording on for every tracer already made.
    """

    recording = False

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.recording = True

    def get_tracer(self, *args: Any, **kwargs: Any) -> Tracer:
        tracer = super().get_tracer(*args, **kwargs)
        # OTEL_SDK_DISABLED: the SDK's no-op tracer, as any provider gives.
        return tracer if isinstance(tracer, NoOpTracer) else ServiceTracer(tracer, self)

    def unrecorded_span(
        self,
        name: str,
        context: otel_context.Context | None,
        kind: SpanKind,
        attributes: Attributes,
        links: Sequence[Link] | None,
    ) -> UnrecordedSpan:
        """The span the SDK's tracer would start, minus the recording (its ``start_span``)."""
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id, random_id = parent.trace_id, parent.trace_flags.random_trace_id
        else:
            trace_id = self.id_generator.generate_trace_id()
            random_id = self.id_generator.is_trace_id_random()
        result = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
        flags = TraceFlags.SAMPLED if result.decision.is_sampled() else TraceFlags.DEFAULT
        if random_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        span_context = SpanContext(
            trace_id,
            self.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=result.trace_state,
        )
        return UnrecordedSpan(span_context, self.resource)


class ServiceTracer(Tracer):
    """The SDK's tracer while its provider records; unrecorded spans until then."""

    def __init__(self, tracer: Tracer, provider: ServiceTracerProvider) -> None:
        self._tracer = tracer
        self._provider = provider

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        if self._provider.recording:
            return self._tracer.start_span(
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
            )
        return self._provider.unrecorded_span(name, context, kind, attributes, links)

    def start_as_current_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> AbstractContextManager[Span]:
        if self._provider.recording:
            return self._tracer.start_as_current_span(
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
                end_on_exit,
            )
        return trace.use_span(
            self._provider.unrecorded_span(name, context, kind, attributes, links),
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )
