"""Alembic, one migration history per service database.

Each service keeps ``<service>/migrations/`` with a three-line ``env.py`` that calls
:func:`run_env`; :func:`upgrade` is what ``nocode up``, ``nocode migrate`` and
the container prestart run.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def migrations_dir(service: str) -> Path | None:
    spec = importlib.util.find_spec(service)
    if spec is None or spec.origin is None:
        raise ValueError(f"no service package {service}")
    path = Path(spec.origin).parent / "migrations"
    return path if (path / "env.py").exists() else None


def alembic_config(service: str, database_url: str) -> Config:
    path = migrations_dir(service)
    if path is None:
        raise ValueError(f"{service} has no migrations")
    cfg = Config()
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("script_location", str(path))
    cfg.set_main_option("version_locations", str(path / "versions"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(service: str, database_url: str, revision: str = "head") -> bool:
    """Migrate ``service``'s database; False when the service has no migrations."""
    if migrations_dir(service) is None:
        return False
    command.upgrade(alembic_config(service, database_url), revision)
    return True


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's ``migrations/env.py`` (online mode, asyncpg)."""
    url = context.config.attributes["database_url"]

    def migrate(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
        await engine.dispose()

    asyncio.run(main())
