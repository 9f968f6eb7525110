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
