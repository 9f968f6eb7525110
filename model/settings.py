from __future__ import annotations

from pydantic import Field

from servicekit.settings import ServiceSettings


class ModelSettings(ServiceSettings):
    service_name: str = "model"
    port: int = Field(8082, validation_alias="MODEL_PORT")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:55432/model", validation_alias="MODEL_DATABASE_URL"
    )
