from __future__ import annotations

from pydantic import Field

from servicekit.settings import ServiceSettings


class NoticeSettings(ServiceSettings):
    service_name: str = "notice"
    port: int = Field(8083, validation_alias="NOTICE_PORT")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:55432/notice",
        validation_alias="NOTICE_DATABASE_URL",
    )
