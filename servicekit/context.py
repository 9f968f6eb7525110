"""Per-request and per-event context carried in contextvars."""

from __future__ import annotations

from contextvars import ContextVar

# The W3C trace context of whatever caused the current work (an HTTP request or a
# consumed event); the outbox stores it so downstream work joins the same trace.
current_traceparent: ContextVar[str | None] = ContextVar("current_traceparent", default=None)
