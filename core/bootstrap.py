"""Composition root: settings in, a runnable service out (health and metrics for now)."""

from __future__ import annotations

from fastapi import FastAPI

from core.settings import CoreSettings
from servicekit.app import create_app
from servicekit.runtime import ServiceRuntime


def build(settings: CoreSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    runtime = ServiceRuntime(settings or CoreSettings())
    return create_app(runtime), runtime
