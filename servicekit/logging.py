"""structlog JSON logs on stdout: service, level, time, trace and span ids, bound context.

Requests bind ``request_id`` and consumed events bind ``event_id`` (structlog
contextvars), and every line written inside a span carries its ``trace_id`` and
``span_id``, so one grep by trace id finds a request's story across services.

No line carries a secret: :func:`redact` takes out ``Authorization`` values, anything
shaped like a JWT, passwords and tokens given as ``name=value`` or ``"name": value``, the
secret part of chat webhook URLs and any secret registered with :func:`add_secret` (the
configured webhook URL), in every value of a structlog line (a formatted traceback
included) and in every stdlib record (:class:`RedactingFilter`).
"""

from __future__ import annotations

import logging
import re
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from pydantic import SecretStr


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


REDACTED = "[REDACTED]"
_SECRET_NAMES = (
    r"password|passwd|pwd|secret|client_secret|access_token|refresh_token|id_token|token|"
    r"api_key|apikey"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A JWT (header.payload.signature; the header always starts {" = eyJ), however quoted.
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"), REDACTED),
    # Authorization / Proxy-Authorization header values, with or without a scheme.
    (
        re.compile(r"(?i)((?:proxy-)?authorization['\"]?\s*[:=,]\s*['\"]?)[^'\"\r\n,}]+"),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{12,}"), rf"\1 {REDACTED}"),
    # password=..., "password": "...", 'token': '...'
    (
        re.compile(
            rf"(?i)((?:{_SECRET_NAMES})['\"]?[ \t]*[:=][ \t]*)"
            rf"(?:\"[^\"]*\"|'[^']*'|[^'\"&\s,}}]+)"
        ),
        rf"\1{REDACTED}",
    ),
    # Slack-style webhook URLs: the path after /services/ (or /hooks/) is the credential.
    (re.compile(r"(?i)(/(?:services|hooks)/)[^\s'\"?#]+"), rf"\1{REDACTED}"),
)
_SECRETS: set[str] = set()


def add_secret(value: str | None) -> None:
    """Redact this exact value from every line from now on (e.g. the chat webhook URL)."""
    if value and len(value) >= 8:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redacted(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    if depth > 8:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if _is_secret_name(k) else _redacted(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redacted(v, depth + 1) for v in value]
    return value


def _is_secret_name(name: object) -> bool:
    return isinstance(name, str) and bool(
        re.fullmatch(rf"(?i)(?:{_SECRET_NAMES}|authorization|proxy-authorization)", name)
    )


def redact_secrets(
    _: object, __: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """structlog processor: every value redacted (run after exceptions are formatted)."""
    return _redacted(event_dict)


class RedactingFilter(logging.Filter):
    """stdlib filter: a record's message (with its arguments) and exception redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            # What a stdlib Formatter prints for the exception (it prints a set exc_text).
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def register_secrets(settings: object) -> None:
    """Redact a service's secrets from its logs: every ``SecretStr`` setting and any
    ``*webhook_url`` (a chat webhook URL is its own credential)."""
    for name, value in vars(settings).items():
        if isinstance(value, SecretStr):
            add_secret(value.get_secret_value())
        elif name.endswith("webhook_url") and isinstance(value, str):
            add_secret(value)


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
            redact_secrets,
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
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_secrets,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiokafka logs every reconnect attempt at ERROR; the relay and consumer report outages.
    logging.getLogger("aiokafka").setLevel(max(numeric, logging.WARNING))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO (a line per chat message, per compensation check).
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))
