"""Settings every service shares, read from the environment by pydantic-settings.

Each service subclasses :class:`ServiceSettings` and gives its own name, port and
database URL variable (``MODEL_DATABASE_URL``, ``TARGET_DATABASE_URL``, ...).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service_name: str = "service"
    host: str = Field("127.0.0.1", validation_alias="SERVICE_HOST")
    port: int = 8000
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:55432/postgres"

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    kafka_request_timeout_ms: int = Field(10_000, validation_alias="KAFKA_REQUEST_TIMEOUT_MS")

    kafka_session_timeout_ms: int = Field(6_000, validation_alias="KAFKA_SESSION_TIMEOUT_MS")
    kafka_heartbeat_interval_ms: int = Field(2_000, validation_alias="KAFKA_HEARTBEAT_INTERVAL_MS")

    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")

    outbox_batch_size: int = Field(200, validation_alias="OUTBOX_BATCH_SIZE")
    outbox_poll_interval_s: float = Field(1.0, validation_alias="OUTBOX_POLL_INTERVAL_S")
    outbox_retention_hours: float | None = Field(None, validation_alias="OUTBOX_RETENTION_HOURS")

    consumer_max_attempts: int = Field(5, validation_alias="CONSUMER_MAX_ATTEMPTS")
    consumer_backoff_initial_s: float = Field(0.2, validation_alias="CONSUMER_BACKOFF_INITIAL_S")
    consumer_backoff_max_s: float = Field(5.0, validation_alias="CONSUMER_BACKOFF_MAX_S")

    db_pool_size: int = Field(10, validation_alias="DB_POOL_SIZE")

    @property
    def source(self) -> str:
        """The CloudEvents ``source`` of the events this service publishes."""
        return f"/nocode/{self.service_name}"
