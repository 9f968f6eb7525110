"""Signing in to Kafka (issue 12, item 9): what every client is given from the settings."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

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
