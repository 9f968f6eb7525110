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
    # Asked by an approval whose record of the model lags model's events (target.model_view).
    model_service_url: str = Field("http://127.0.0.1:8082", validation_alias="MODEL_SERVICE_URL")
    model_check_timeout_s: float = Field(2.0, gt=0, validation_alias="MODEL_CHECK_TIMEOUT_S")
