from __future__ import annotations

from pydantic import Field

from servicekit.settings import ServiceSettings


class CoreSettings(ServiceSettings):
    service_name: str = "core"
    port: int = Field(8084, validation_alias="CORE_PORT")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:55432/core", validation_alias="CORE_DATABASE_URL"
    )
