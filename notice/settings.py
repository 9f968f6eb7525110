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

    chat_webhook_url: str = Field(
        "http://127.0.0.1:8090/chat/webhook", validation_alias="CHAT_WEBHOOK_URL"
    )
    chat_timeout_s: float = Field(5.0, validation_alias="CHAT_TIMEOUT_S")
    # Attempts per notification the chat rejects (a 4xx), the first included; then it is
    # ``failed`` (an admin can re-drive it). A chat that is down is retried until it is up.
    notice_max_attempts: int = Field(8, validation_alias="NOTICE_MAX_ATTEMPTS")
    notice_backoff_initial_s: float = Field(1.0, validation_alias="NOTICE_BACKOFF_INITIAL_S")
    notice_backoff_max_s: float = Field(60.0, validation_alias="NOTICE_BACKOFF_MAX_S")
    # The sender is woken by each notification queued in this process; the poll finds the
    # ones due after a backoff and those another replica queued.
    notice_poll_interval_s: float = Field(0.5, validation_alias="NOTICE_POLL_INTERVAL_S")
    # Chat messages posted at once, each of another request (a request's messages go out
    # one after another, in order). Each holds a database connection while it is posted.
    notice_send_concurrency: int = Field(8, ge=1, le=64, validation_alias="NOTICE_SEND_CONCURRENCY")
    # Sent notifications are deleted after this long (0 keeps them all); the pending and
    # failed ones are kept whatever their age.
    notice_sent_retention_hours: float = Field(
        168.0, ge=0, validation_alias="NOTICE_SENT_RETENTION_HOURS"
    )
