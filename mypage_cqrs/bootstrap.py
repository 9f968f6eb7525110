"""Composition root: settings in, a runnable service out (health and metrics for now)."""

from __future__ import annotations

from fastapi import FastAPI

from mypage_cqrs.settings import MypageCqrsSettings
from servicekit.app import create_app
from servicekit.runtime import ServiceRuntime


def build(settings: MypageCqrsSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    runtime = ServiceRuntime(settings or MypageCqrsSettings())
    return create_app(runtime), runtime
