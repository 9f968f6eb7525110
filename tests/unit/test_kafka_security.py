"""Signing in to Kafka (issue 12, item 9): what every client is given from the settings."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from servicekit import kafka
from servicekit.kafka import client_security, make_producer
from servicekit.settings import ServiceSettings


def test_plaintext_adds_nothing() -> None:
    assert client_security(ServiceSettings()) == {}


def test_scram_over_sasl_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "model")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-kafkauser-secret")
    settings = ServiceSettings()
    options = client_security(settings)
    assert options == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "model",
        "sasl_plain_password": "from-the-kafkauser-secret",
    }
    assert "from-the-kafka" not in repr(settings)

    async def build() -> None:  # aiokafka checks the options when a client is made
        producer = make_producer(settings)
        assert producer.client._security_protocol == "SASL_PLAINTEXT"
        assert producer.client._sasl_mechanism == "SCRAM-SHA-512"
        AIOKafkaConsumer("model.events", group_id="model", **options)

    asyncio.run(build())


def test_sasl_ssl_gets_a_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    options = client_security(ServiceSettings())
    assert options["ssl_context"] is not None
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"


def test_the_admin_clients_sign_in_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """``nocode up`` on a Kafka given by KAFKA_BOOTSTRAP_SERVERS waits for it and makes the
    topics as a signed-in client (servicekit.kafka.ensure_topics / wait_for_broker)."""
    made: list[dict] = []

    class Refused(Exception):
        pass

    class RecordingAdmin:
        def __init__(self, **options: object) -> None:
            made.append(options)

        async def start(self) -> None:
            raise Refused  # what we want to see is how it was made

        async def close(self) -> None:
            pass

    monkeypatch.setattr(kafka, "AIOKafkaAdminClient", RecordingAdmin)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "admin")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "admin-secret")
    security = client_security(ServiceSettings())
    with pytest.raises(Refused):
        asyncio.run(kafka.ensure_topics("kafka:9092", ["model.events"], 3, 1, security))
    with pytest.raises(Refused):
        asyncio.run(kafka.wait_for_broker("kafka:9092", security=security))
    for options in made:
        assert options["security_protocol"] == "SASL_PLAINTEXT"
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert options["sasl_plain_username"] == "admin"
        assert options["sasl_plain_password"] == "admin-secret"
    assert len(made) == 2
