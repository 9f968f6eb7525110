"""The embedded PostgreSQL trusts no connection (issue 12, item 9): the superuser has a
generated password, kept 0600 in the data directory, which its URLs carry; a connection
without it is refused. A data directory from before passwords gets one on its next start
and keeps its data."""

from __future__ import annotations

import asyncio
import stat
import subprocess
from pathlib import Path

import asyncpg
import pytest

from nocode.embedded_postgres import PASSWORD_FILE, EmbeddedPostgres, pg
from nocode.launcher import LauncherSettings, Platform
from tests.support import free_port

pytestmark = pytest.mark.connected


async def select_one(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    pg_server = EmbeddedPostgres(tmp_path_factory.mktemp("pw") / "data", free_port())
    pg_server.start()
    try:
        yield pg_server
    finally:
        pg_server.stop()


def test_the_password_is_generated_and_kept_0600_in_the_data_dir(server: EmbeddedPostgres) -> None:
    path = server.data_dir / PASSWORD_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 24 and server.password() == password
    assert f"postgres:{password}@" in server.url("model")
    assert password not in server.url("model", with_password=False)
    hba = [
        line.split()
        for line in (server.data_dir / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert hba and {rule[-1] for rule in hba} == {"scram-sha-256"}  # no trust anywhere
    assert {rule[0] for rule in hba} == {"local", "host"}


async def test_a_connection_without_the_password_is_refused(server: EmbeddedPostgres) -> None:
    assert await select_one(server.url(driver="postgresql")) == 1
    without = server.url(driver="postgresql", with_password=False)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await select_one(without)
    wrong = without.replace("postgres@", "postgres:not-the-password@")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await select_one(wrong)


def test_a_data_dir_from_before_passwords_gets_one_and_keeps_its_data(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    old = EmbeddedPostgres(tmp_path / "data", free_port())
    old.data_dir.mkdir()
    if old.run_as:
        old._grant_system_user()
    # What every data directory was before: every connection trusted, no password file.
    trusting = ["--auth=trust", "--encoding=utf8", "--locale=C", "-U", "postgres"]
    pg.initdb(trusting, pgdata=old.data_dir, user=old.run_as)
    single = [str(pg.POSTGRES_BIN_PATH / "postgres"), "--single", "-D", str(old.data_dir)]
    subprocess.run(
        [*single, "postgres"], input="CREATE DATABASE kept;\n", user=old.run_as, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    old.start()
    try:
        said = capfd.readouterr().err
        assert said.count("\n") == 1 and "trusted every connection" in said
        assert str(old.password_file) in said and old.password() not in said
        assert stat.S_IMODE(old.password_file.stat().st_mode) == 0o600
        assert asyncio.run(select_one(old.url("kept", "postgresql"))) == 1
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(select_one(old.url("kept", "postgresql", with_password=False)))
        old.stop()
        old.start()  # the next start: nothing more to do, nothing said
        assert capfd.readouterr().err == ""
        assert asyncio.run(select_one(old.url("kept", "postgresql"))) == 1
    finally:
        old.stop()


def test_the_placement_file_holds_no_database_password(tmp_path: Path) -> None:
    env = {"MODEL_DATABASE_URL": "postgresql+asyncpg://app:s3cret-pw@db:5432/model"}
    platform = Platform(LauncherSettings(data_dir=tmp_path), env=env)
    platform.postgres.data_dir.mkdir(parents=True)
    platform.postgres._keep_password("embedded-pw-123")
    databases = platform.placement()["databases"]
    assert databases["model"] == "postgresql+asyncpg://app@db:5432/model"
    assert databases["core"].startswith("postgresql+asyncpg://postgres@127.0.0.1:")
    assert "s3cret-pw" not in str(databases) and "embedded-pw-123" not in str(databases)
