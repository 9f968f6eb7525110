"""structlog JSON logs on stdout: service, level, time, trace and span ids, bound context.

Requests bind ``request_id`` and consumed events bind ``event_id`` (structlog
contextvars), and every line written inside a span carries its ``trace_id`` and
``span_id``, so one grep by trace id finds a request's story across services.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import TextIO

import structlog
from opentelemetry import trace


def add_trace_ids(
    _: object, __: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
        # The span knows which service made it (one process may run several, in tests).
        resource = getattr(span, "resource", None)
        if resource is not None and "service.name" in resource.attributes:
            event_dict["service"] = resource.attributes["service.name"]
    return event_dict


class _Tee:
    """Writes each line to every stream: stdout, and the ``LOG_FILE`` when one is set."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def configure_logging(
    service: str, level: str = "INFO", stream: TextIO | None = None, log_file: Path | None = None
) -> None:
    """Route stdlib and structlog output through one JSON renderer on ``stream`` (stdout),
    and also append it to ``log_file`` (``LOG_FILE``, e.g. on core's ``/data``) if given.
    ``{host}`` in its name becomes the host name (the pod's), so replicas sharing a volume
    write a file each."""
    stream = stream or sys.stdout
    if log_file is not None:
        log_file = Path(str(log_file).replace("{host}", socket.gethostname()))
        log_file.parent.mkdir(parents=True, exist_ok=True)
        stream = _Tee(stream, log_file.open("a", buffering=1, encoding="utf-8"))  # type: ignore[assignment]
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_trace_ids,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(),
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiokafka logs every reconnect attempt at ERROR; the relay and consumer report outages.
    logging.getLogger("aiokafka").setLevel(max(numeric, logging.WARNING))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO (a line per chat message, per compensation check).
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))
