"""One app serving the three simulators: ``/vertica``, ``/midas``, ``/chat``."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from simulators.chat import chat_router
from simulators.midas import midas_router
from simulators.settings import SimulatorSettings
from simulators.vertica import vertica_router


def build_app() -> FastAPI:
    app = FastAPI(title="nocode external-system simulators")
    app.include_router(vertica_router())
    app.include_router(midas_router())
    app.include_router(chat_router())

    @app.get("/health/live")
    @app.get("/health/ready")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    s = SimulatorSettings()
    uvicorn.run(  # workers=1: not uvicorn's WEB_CONCURRENCY, which an app object can't honour
        build_app(), host=s.host, port=s.port, workers=1, access_log=False, log_level="warning"
    )
