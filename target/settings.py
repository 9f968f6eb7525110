from __future__ import annotations

from pydantic import Field

from servicekit.settings import ServiceSettings


class TargetSettings(ServiceSettings):
    service_name: str = "target"
    port: int = Field(8085, validation_alias="TARGET_PORT")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:55432/target",
        validation_alias="TARGET_DATABASE_URL",
    )
