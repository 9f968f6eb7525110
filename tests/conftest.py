"""Session fixtures: a real PostgreSQL and a real Kafka-protocol broker, over TCP.

PostgreSQL is the embedded one unless ``NOCODE_TEST_POSTGRES_URL`` names a server
(an admin URL, e.g. ``postgresql://postgres@db:5432/postgres``). Each test gets its
own database and its own embedded broker (Tansu starts in milliseconds), so no
test sees another's rows, topics or consumer offsets.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from contracts.topics import ALL_TOPICS
from nocode.embedded_broker import EmbeddedBroker
from nocode.embedded_postgres import EmbeddedPostgres
from servicekit.kafka import ensure_topics
from tests.support import free_port, migrated_database


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("NOCODE_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", free_port())
    server.start()
    try:
        yield server.url(driver="postgresql")
    finally:
        server.stop()


@pytest.fixture
async def model_db(postgres_admin_url: str) -> str:
    return await migrated_database(postgres_admin_url, "model")


@pytest.fixture
async def target_db(postgres_admin_url: str) -> str:
    return await migrated_database(postgres_admin_url, "target")


@pytest.fixture
async def core_db(postgres_admin_url: str) -> str:
    return await migrated_database(postgres_admin_url, "core")


@pytest.fixture
async def notice_db(postgres_admin_url: str) -> str:
    return await migrated_database(postgres_admin_url, "notice")


@pytest.fixture
async def mypage_db(postgres_admin_url: str) -> str:
    return await migrated_database(postgres_admin_url, "mypage_cqrs")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    server = EmbeddedBroker(free_port(), log_file=tmp_path / "broker.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def topics(broker: EmbeddedBroker) -> AsyncIterator[str]:
    await ensure_topics(broker.bootstrap_servers, ALL_TOPICS, 3, 1)
    yield broker.bootstrap_servers


@pytest.fixture(scope="session", autouse=True)
def core_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """core writes its model cards under ``CORE_DATA_DIR``: a temporary one in tests, never
    the repository's ``.nocode``."""
    path = tmp_path_factory.mktemp("core-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CORE_DATA_DIR", str(path))
        yield path
