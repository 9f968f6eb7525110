"""Settings every service shares, read from the environment by pydantic-settings.

Each service subclasses :class:`ServiceSettings` and gives its own name, port and
database URL variable (``MODEL_DATABASE_URL``, ``TARGET_DATABASE_URL``, ...).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.auth import TokenIssuer, TokenVerifier
from servicekit.tracing import Tracing


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
    # Signing in to Kafka (servicekit.kafka.client_security): PLAINTEXT for the embedded
    # broker; SASL_PLAINTEXT or SASL_SSL with SCRAM where Kafka has users (k8s: KafkaUsers).
    kafka_security_protocol: str = Field("PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL")
    kafka_sasl_mechanism: str | None = Field(None, validation_alias="KAFKA_SASL_MECHANISM")
    kafka_sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD")

    kafka_session_timeout_ms: int = Field(6_000, validation_alias="KAFKA_SESSION_TIMEOUT_MS")
    kafka_heartbeat_interval_ms: int = Field(2_000, validation_alias="KAFKA_HEARTBEAT_INTERVAL_MS")

    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    log_file: Path | None = Field(None, validation_alias="LOG_FILE")  # JSON logs here too
    service_version: str | None = Field(None, validation_alias="SERVICE_VERSION")

    # Tracing (servicekit.tracing): spans are recorded and exported over OTLP/HTTP only when
    # this is set; unset, spans keep their trace context (logs, propagation) unrecorded.
    otel_exporter_otlp_endpoint: str | None = Field(
        None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    tracing_sample_ratio: float = Field(
        1.0, ge=0.0, le=1.0, validation_alias="TRACING_SAMPLE_RATIO"
    )  # of new traces; work continuing a trace follows its caller's decision

    outbox_batch_size: int = Field(200, validation_alias="OUTBOX_BATCH_SIZE")
    outbox_poll_interval_s: float = Field(1.0, validation_alias="OUTBOX_POLL_INTERVAL_S")
    outbox_retention_hours: float | None = Field(None, validation_alias="OUTBOX_RETENTION_HOURS")

    consumer_max_attempts: int = Field(5, validation_alias="CONSUMER_MAX_ATTEMPTS")
    consumer_backoff_initial_s: float = Field(0.2, validation_alias="CONSUMER_BACKOFF_INITIAL_S")
    consumer_backoff_max_s: float = Field(5.0, validation_alias="CONSUMER_BACKOFF_MAX_S")
    # Records a consumer fetches at most at once and applies in one transaction (1: one
    # transaction per record).
    consumer_batch_size: int = Field(100, ge=1, validation_alias="CONSUMER_BATCH_SIZE")

    # Connections per service process, opened as needed and kept (no overflow to open and
    # close under load); a pooled connection is not pinged before use unless asked for.
    db_pool_size: int = Field(20, ge=1, validation_alias="DB_POOL_SIZE")
    db_pool_pre_ping: bool = Field(False, validation_alias="DB_POOL_PRE_PING")
    # A span per SQL statement (under the request's or event's span); off: a span per
    # request and per event only, which is most of what tracing costs.
    trace_sql: bool = Field(False, validation_alias="TRACE_SQL")
    # How long the broker may hold a consumer's fetch when there is nothing new: an idle
    # event hop waits about this long (aiokafka's default is 500 ms).
    kafka_fetch_max_wait_ms: int = Field(10, ge=0, validation_alias="KAFKA_FETCH_MAX_WAIT_MS")
    # How often a consumer commits the offsets of what it applied (a broker round trip per
    # consumer while events flow). A restart redelivers up to this much, which the inbox
    # skips; a rebalance or a stop commits first. Kafka's own auto-commit default is 5 s.
    kafka_commit_interval_s: float = Field(
        2.0, gt=0, le=60, validation_alias="KAFKA_COMMIT_INTERVAL_S"
    )

    # Worker processes serving this service (uvicorn's, each a whole service process like one
    # replica: its relay waits for the database's relay lock, its consumers join the group,
    # job and sender workers claim rows with SKIP LOCKED). 1: the service's one process.
    workers: int = Field(1, ge=1, le=64, validation_alias="WORKERS")

    # A request body past this is a 413 (servicekit.edge); ours are a few hundred bytes.
    max_body_bytes: int = Field(1024 * 1024, ge=1, validation_alias="MAX_BODY_BYTES")

    # Identity (servicekit.auth): every service verifies tokens; the gateway (users' tokens)
    # and core (its own calls to model) also sign them.
    jwt_issuer: str = Field("nocode-gateway", validation_alias="JWT_ISSUER")
    jwt_audience: str = Field("nocode", validation_alias="JWT_AUDIENCE")
    jwt_public_keys: dict[str, str] = Field(
        default_factory=dict, validation_alias="JWT_PUBLIC_KEYS"
    )  # JSON: key id -> Ed25519 public key (PEM); several while keys rotate
    jwt_private_key: SecretStr | None = Field(None, validation_alias="JWT_PRIVATE_KEY")
    jwt_key_id: str = Field("k1", validation_alias="JWT_KEY_ID")
    jwt_ttl_s: int = Field(3600, gt=0, validation_alias="JWT_TTL_S")
    # Keys with one job each: the key ids in JWT_SERVICE_KEY_IDS sign only the platform's
    # own calls (role ``service``, audience JWT_SERVICE_AUDIENCE); core signs with its own
    # SERVICE_JWT_PRIVATE_KEY, never with the users' key. No token may outlive JWT_MAX_TTL_S.
    jwt_service_key_ids: list[str] = Field(
        default_factory=list, validation_alias="JWT_SERVICE_KEY_IDS"
    )
    jwt_service_audience: str = Field("nocode-internal", validation_alias="JWT_SERVICE_AUDIENCE")
    service_jwt_private_key: SecretStr | None = Field(
        None, validation_alias="SERVICE_JWT_PRIVATE_KEY"
    )
    service_jwt_key_id: str = Field("service", validation_alias="SERVICE_JWT_KEY_ID")
    jwt_max_ttl_s: int = Field(24 * 3600, gt=0, validation_alias="JWT_MAX_TTL_S")

    def tracing(self) -> Tracing:
        return Tracing(
            self.service_name,
            otlp_endpoint=self.otel_exporter_otlp_endpoint,
            sample_ratio=self.tracing_sample_ratio,
            service_version=self.service_version,
        )

    def token_verifier(self) -> TokenVerifier:
        return TokenVerifier(
            self.jwt_public_keys,
            self.jwt_issuer,
            self.jwt_audience,
            self.jwt_max_ttl_s,
            service_keys=frozenset(self.jwt_service_key_ids),
            service_audience=self.jwt_service_audience,
        )

    def service_token_issuer(self) -> TokenIssuer | None:
        """The signer of the platform's own calls: the service key where one is given
        (SERVICE_JWT_PRIVATE_KEY, internal audience), else JWT_PRIVATE_KEY as before."""
        if self.service_jwt_private_key is None:
            return self.token_issuer()
        return TokenIssuer(
            self.service_jwt_private_key.get_secret_value(),
            self.service_jwt_key_id,
            self.jwt_issuer,
            self.jwt_service_audience,
            self.jwt_ttl_s,
        )

    def token_issuer(self) -> TokenIssuer | None:
        """The signer, where this service has a private key; ``None`` elsewhere."""
        if self.jwt_private_key is None:
            return None
        return TokenIssuer(
            self.jwt_private_key.get_secret_value(),
            self.jwt_key_id,
            self.jwt_issuer,
            self.jwt_audience,
            self.jwt_ttl_s,
        )

    @property
    def source(self) -> str:
        """The CloudEvents ``source`` of the events this service publishes."""
        return f"/nocode/{self.service_name}"
