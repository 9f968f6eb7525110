"""aiokafka clients configured the one way the platform uses them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from servicekit.resilience import Backoff
from servicekit.settings import ServiceSettings

log = structlog.get_logger(__name__)

TOPIC_ALREADY_EXISTS = 36


def client_security(settings: ServiceSettings) -> dict[str, Any]:
    """The aiokafka options that sign a client in (none for a PLAINTEXT broker)."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context()
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism or "SCRAM-SHA-512",
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password.get_secret_value() if password else None,
        }
    return options


def make_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    # acks="all" without idempotence: Tansu refuses InitProducerId, and consumers
    # deduplicate by event id anyway.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=settings.service_name,
        acks="all",
        enable_idempotence=False,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        linger_ms=0,  # the relay sends a batch at once and waits for its acks: never linger
        **client_security(settings),
    )


async def ensure_topics(
    bootstrap_servers: str,
    topics: tuple[str, ...] | list[str],
    partitions: int,
    replication: int,
    security: dict[str, Any] | None = None,  # client_security(settings), for a real Kafka
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="nocode-admin", **(security or {})
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, partitions, replication) for t in topics if t not in existing]
        if missing:
            response = await admin.create_topics(missing)
            for topic, code, message in _topic_errors(response):
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise KafkaError(f"cannot create topic {topic}: {message}")
            log.info("topics created", topics=[t.name for t in missing])
    finally:
        await admin.close()


@dataclass(frozen=True)
class BrokerView:
    """What one metadata answer says: which cluster this is and which of the topics asked
    about exist."""

    cluster_id: str | None  # None from brokers too old to say (Metadata v0/v1)
    topics: frozenset[str]  # of those asked about, the ones with at least one partition


async def broker_view(
    client: AIOKafkaClient, topics: Iterable[str] = (), timeout_s: float = 5.0
) -> BrokerView:
    """Ask the broker, in one Metadata request that never creates a topic, for its cluster
    id (what ``AIOKafkaAdminClient.describe_cluster`` asks) and whether ``topics`` exist;
    sent on an existing client's connection. No topics: the cluster id only."""
    node_id = client.get_random_node()
    if node_id is None:
        await asyncio.wait_for(client.force_metadata_update(), timeout_s)
        node_id = client.get_random_node()
        if node_id is None:
            raise KafkaConnectionError("no broker known")
    request = MetadataRequest(sorted(set(topics)), allow_auto_topic_creation=False)
    response = await asyncio.wait_for(client.send(node_id, request), timeout_s)
    existing = frozenset(
        name
        for error, name, *_, partitions in (tuple(t) for t in response.topics)
        if error == 0 and partitions
    )
    return BrokerView(getattr(response, "cluster_id", None), existing)


async def wait_for_broker(
    bootstrap_servers: str, timeout_s: float = 30.0, security: dict[str, Any] | None = None
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    retries = Backoff(0.1, 1.0).retries()
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(security or {}))
        try:
            await admin.start()
            await admin.list_topics()
            return
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(retries.next_delay())
        finally:
            await admin.close()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = getattr(response, "topic_errors", [])
    return [(e[0], e[1], e[2] if len(e) > 2 else None) for e in errors]
