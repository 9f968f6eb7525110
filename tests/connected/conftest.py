"""Fixtures of the connected tests beyond the session's database and broker."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from servicekit.logging import configure_logging


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The services' logs as ``nocode serve`` writes them (JSON, DEBUG), into a buffer."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("tests", "DEBUG", stream)
    # Loggers cached with this configuration would keep writing here after the test.
    structlog.configure(cache_logger_on_first_use=False)
    try:
        yield stream
    finally:
        structlog.configure(**saved)
        structlog.contextvars.unbind_contextvars("service")
        root.handlers[:], root.level = handlers, level
