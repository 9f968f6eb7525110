"""Composition root: settings in, a runnable service out (health and metrics for now)."""

from __future__ import annotations

from fastapi import FastAPI

from servicekit.app import create_app
from servicekit.runtime import ServiceRuntime
from target.settings import TargetSettings


def build(settings: TargetSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    runtime = ServiceRuntime(settings or TargetSettings())
    return create_app(runtime), runtime
