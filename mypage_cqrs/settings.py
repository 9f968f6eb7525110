from __future__ import annotations

from pydantic import Field

from servicekit.settings import ServiceSettings


class MypageCqrsSettings(ServiceSettings):
    service_name: str = "mypage_cqrs"
    port: int = Field(8086, validation_alias="MYPAGE_CQRS_PORT")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:55432/mypage_cqrs",
        validation_alias="MYPAGE_CQRS_DATABASE_URL",
    )

    # A saga that has not moved for this long where it should move by itself is stalled
    # (mypage_cqrs.stalls): counted, alerted on, listed by `nocode status`.
    saga_stall_after_s: float = Field(600.0, gt=0, validation_alias="SAGA_STALL_AFTER_S")
    stall_check_interval_s: float = Field(15.0, gt=0, validation_alias="STALL_CHECK_INTERVAL_S")

    # The publishing services a replay asks how many events they published (their
    # GET /health/outbox); unset: `nocode replay` uses the local platform's.
    model_service_url: str | None = Field(None, validation_alias="MODEL_SERVICE_URL")
    target_service_url: str | None = Field(None, validation_alias="TARGET_SERVICE_URL")
    core_service_url: str | None = Field(None, validation_alias="CORE_SERVICE_URL")

    def producer_urls(self) -> dict[str, str]:
        urls = {
            "model": self.model_service_url,
            "target": self.target_service_url,
            "core": self.core_service_url,
        }
        return {name: url for name, url in urls.items() if url}
