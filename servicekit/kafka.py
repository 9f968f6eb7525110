"""aiokafka clients configured the one way the platform uses them."""

from __future__ import annotations

import asyncio
import time
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


class BrokerCheck:
    """The relay's last metadata answer (:func:`broker_view`), and whether it still speaks
    for what the client sends.

    A broker that is replaced (killed, restarted, another cluster) closes its connections.
    While the client's connections are exactly those it had open when the answer came
    (the same objects, none closed, none opened), everything sent over them reached the
    brokers that answered: the cluster id holds, and the topics listed exist (short of an
    admin deleting one, which a failed send then shows). So a batch needs no Metadata
    request of its own: about two per batch, a third of a millisecond of CPU each. The
    answer is asked for again once ``max_age_s`` has passed, whatever the connections.
    The connections are aiokafka's (``AIOKafkaClient._conns``: pinned;
    tests/connected/test_relay_checks.py fails if they change)."""

    def __init__(self, client: AIOKafkaClient, max_age_s: float) -> None:
        self.client = client
        self.max_age_s = max_age_s
        self._view: BrokerView | None = None
        self._conns: dict[Any, Any] = {}
        self._asked_at = 0.0

    async def ask(self, topics: Iterable[str] = ()) -> BrokerView:
        """A fresh answer (see :func:`broker_view`), remembered with the connections."""
        view = await broker_view(self.client, topics)
        self._view, self._conns, self._asked_at = view, self._open(), time.monotonic()
        return view

    def holds(self, topics: Iterable[str] = ()) -> BrokerView | None:
        """The last answer, if it is young enough, the connections are those it came over,
        and it lists every one of ``topics``; else None."""
        view = self._view
        if view is None or time.monotonic() - self._asked_at >= self.max_age_s:
            return None
        if not self.same_connections() or not set(topics) <= view.topics:
            return None
        return view

    def same_connections(self) -> bool:
        """Whether the client's connections are still those the last answer came over
        (held here, so no new one can take a closed one's ``id``)."""
        now = self._open()
        return (
            bool(now)
            and now.keys() == self._conns.keys()
            and all(now[key] is conn for key, conn in self._conns.items())
        )

    def forget(self) -> None:
        self._view, self._conns = None, {}

    def _open(self) -> dict[Any, Any]:
        conns: dict[Any, Any] = self.client._conns
        return {key: conn for key, conn in conns.items() if conn.connected()}


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
