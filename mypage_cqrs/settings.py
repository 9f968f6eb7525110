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
