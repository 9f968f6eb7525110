"""Starts the whole platform on one machine: what ``nocode up`` does.

Embedded PostgreSQL (one database per service) and the embedded broker start
unless real endpoints are configured; topics are created, every database is
migrated, then each service runs as its own process, the way its container would.
Once up, :meth:`Platform.supervise` restarts any of these processes that exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from contracts.topics import ALL_TOPICS
from nocode.embedded_broker import EmbeddedBroker
from nocode.embedded_postgres import EmbeddedPostgres
from nocode.errors import CliError
from nocode.keys import local_admin_password, local_identity_env
from nocode.progress import Progress
from nocode.services import EXTERNAL_ENDPOINTS, GATEWAY_ROUTES, SERVICES, SIMULATORS, ServiceSpec
from nocode.supervisor import Process, RestartPolicy, Supervisor, dies_with_parent
from servicekit import migrations
from servicekit.kafka import ensure_topics, wait_for_broker

REPO_ROOT = Path(__file__).resolve().parent.parent
SIGNERS = ("gateway", "core")  # users' tokens; core's own calls to model


class LauncherSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    data_dir: Path = Field(REPO_ROOT / ".nocode", validation_alias="NOCODE_DATA_DIR")
    postgres_port: int = Field(55432, validation_alias="NOCODE_POSTGRES_PORT")
    broker_port: int = Field(9092, validation_alias="NOCODE_BROKER_PORT")
    kafka_bootstrap_servers: str | None = Field(None, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    # 4: what the embedded broker (Tansu) gives a topic a client's metadata request creates.
    # After a broker restart a client may reach it before `up` re-creates the topics; with
    # the same count, the topics come back the same whoever creates them first.
    kafka_partitions: int = Field(4, validation_alias="KAFKA_PARTITIONS")
    kafka_replication_factor: int = Field(1, validation_alias="KAFKA_REPLICATION_FACTOR")
    ready_timeout_s: float = Field(60.0, validation_alias="NOCODE_READY_TIMEOUT_S")
    restart_initial_s: float = Field(1.0, gt=0, validation_alias="NOCODE_RESTART_INITIAL_S")
    restart_max_s: float = Field(30.0, gt=0, validation_alias="NOCODE_RESTART_MAX_S")
    restart_reset_s: float = Field(60.0, gt=0, validation_alias="NOCODE_RESTART_RESET_S")


@dataclass
class Platform:
    settings: LauncherSettings = field(default_factory=LauncherSettings)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    broker: EmbeddedBroker | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    postgres_started: bool = False
    supervisor: Supervisor | None = None

    def __post_init__(self) -> None:
        s = self.settings
        self.postgres = EmbeddedPostgres(
            s.data_dir / "postgres", s.postgres_port, stop_with_parent=True
        )

    def port(self, spec: ServiceSpec) -> int:
        return int(self.env.get(f"{spec.env_prefix}_PORT", spec.default_port))

    def database_url(self, spec: ServiceSpec) -> str:
        return self.env.get(f"{spec.env_prefix}_DATABASE_URL") or self.postgres.url(spec.name)

    @property
    def simulated(self) -> list[str]:
        """The external endpoints not configured, which the simulators stand in for."""
        return [var for var in EXTERNAL_ENDPOINTS if not self.env.get(var)]

    @property
    def processes_to_run(self) -> list[ServiceSpec]:
        return [*SERVICES, SIMULATORS] if self.simulated else list(SERVICES)

    @property
    def bootstrap_servers(self) -> str:
        if self.settings.kafka_bootstrap_servers:
            return self.settings.kafka_bootstrap_servers
        if self.broker is not None:
            return self.broker.bootstrap_servers
        return f"127.0.0.1:{self.settings.broker_port}"  # where the embedded one will listen

    @property
    def embedded_databases(self) -> list[str]:
        return [
            sp.name
            for sp in SERVICES
            if sp.database and not self.env.get(f"{sp.env_prefix}_DATABASE_URL")
        ]

    def ports(self) -> dict[str, int]:
        """Every port this platform listens on: its processes', the embedded servers'."""
        ports = {spec.name: self.port(spec) for spec in self.processes_to_run}
        if self.embedded_databases:
            ports["postgres"] = self.settings.postgres_port
        if not self.settings.kafka_bootstrap_servers:
            ports["broker"] = self.settings.broker_port
        return ports

    def placement(self) -> dict[str, object]:
        """Where this platform is (or would be): what ``nocode.placement`` records."""
        return {
            "data_dir": str(self.settings.data_dir),
            "services": {
                spec.name: f"http://127.0.0.1:{self.port(spec)}" for spec in self.processes_to_run
            },
            "ports": self.ports(),
            "bootstrap_servers": self.bootstrap_servers,
            "broker_cluster_id": self.broker.cluster_id if self.broker else None,
            "databases": {
                spec.name: _no_password(self.database_url(spec))
                for spec in SERVICES
                if spec.database
            },
            "processes": self.supervisor.states() if self.supervisor else {},
        }

    def start_infrastructure(self, progress: Progress | None = None) -> None:
        """PostgreSQL, the broker, the topics, the migrations: each a step of ``progress``."""
        s, progress = self.settings, progress or Progress()
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if self.embedded_databases:
            self.postgres_started = True
            pg_log = self.postgres.data_dir / "server.log"
            with progress.step("PostgreSQL", hint=f"see {pg_log}"):
                self.postgres.start()
                asyncio.run(self.postgres.create_databases(self.embedded_databases))
        if not s.kafka_bootstrap_servers:
            self.broker = EmbeddedBroker(
                s.broker_port, log_file=s.data_dir / "broker.log", stop_with_parent=True
            )
            with progress.step("broker", hint=f"see {s.data_dir / 'broker.log'}"):
                self.broker.start()
        hint = f"is the broker at {self.bootstrap_servers} reachable? (KAFKA_BOOTSTRAP_SERVERS)"
        with progress.step(f"topics ({len(ALL_TOPICS)})", done="created", hint=hint):
            self.prepare_topics()
        self.migrate(progress)

    def prepare_topics(self) -> None:
        """Create the topics the broker lacks (all of them after an embedded broker's restart)."""
        asyncio.run(self._prepare_topics())

    async def _prepare_topics(self) -> None:
        await wait_for_broker(self.bootstrap_servers)
        await ensure_topics(
            self.bootstrap_servers,
            ALL_TOPICS,
            self.settings.kafka_partitions,
            self.settings.kafka_replication_factor,
        )
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            described = await admin.describe_topics(list(ALL_TOPICS))
        finally:
            await admin.close()
        for topic in described:
            if len(topic["partitions"]) != self.settings.kafka_partitions:
                print(
                    f"nocode: topic {topic['topic']} has {len(topic['partitions'])} partitions, "
                    f"not KAFKA_PARTITIONS={self.settings.kafka_partitions}: a client created "
                    "it first",
                    flush=True,
                )

    def migrate(self, progress: Progress | None = None) -> dict[str, bool]:
        progress, done = progress or Progress(), {}
        for spec in SERVICES:
            if spec.database:
                with progress.step(f"{spec.name} migrations", done="applied"):
                    done[spec.name] = migrations.upgrade(spec.name, self.database_url(spec))
        return done

    @property
    def identity_env(self) -> dict[str, str]:
        """Signing keys: the configured ones, else the data directory's own pair."""
        if self.env.get("JWT_PUBLIC_KEYS"):
            return {}
        return local_identity_env(self.settings.data_dir)

    def service_env(self, spec: ServiceSpec) -> dict[str, str]:
        env = {
            **self.env,
            **self.identity_env,
            f"{spec.env_prefix}_PORT": str(self.port(spec)),
            f"{spec.env_prefix}_DATABASE_URL": self.database_url(spec),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "PYTHONUNBUFFERED": "1",
        }
        simulators = f"http://127.0.0.1:{self.port(SIMULATORS)}"
        env |= {var: simulators + EXTERNAL_ENDPOINTS[var] for var in self.simulated}
        by_name = {sp.name: sp for sp in SERVICES}
        env.setdefault("MODEL_SERVICE_URL", f"http://127.0.0.1:{self.port(by_name['model'])}")
        if spec.name == "gateway" and not self.env.get("GATEWAY_ADMIN_PASSWORD"):
            env["GATEWAY_ADMIN_PASSWORD"] = local_admin_password(self.settings.data_dir)
        if spec.name not in SIGNERS:
            env.pop("JWT_PRIVATE_KEY", None)  # only the signers hold the private key
        if spec.name == "core" and "SERVICE_JWT_PRIVATE_KEY" in env:
            env.pop("JWT_PRIVATE_KEY", None)  # core has its own key, for service tokens only
        if spec.name != "core":
            env.pop("SERVICE_JWT_PRIVATE_KEY", None)
        if spec.name == "gateway" and "GATEWAY_ROUTES" not in self.env:
            routes = {
                p: f"http://127.0.0.1:{self.port(by_name[n])}" for p, n in GATEWAY_ROUTES.items()
            }
            env["GATEWAY_ROUTES"] = json.dumps(routes)
        return env

    def start_services(self, stdout: int | None = None) -> None:
        for spec in self.processes_to_run:
            self.start_service(spec, stdout)

    def start_service(self, spec: ServiceSpec, stdout: int | None = None) -> Process:
        self.processes[spec.name] = subprocess.Popen(
            [sys.executable, "-m", "nocode", "serve", spec.name],
            env=self.service_env(spec),
            cwd=REPO_ROOT,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            preexec_fn=dies_with_parent(),
        )
        return self.processes[spec.name]

    def supervise(self, log: Callable[[str], None], on_change: Callable[[], None]) -> Supervisor:
        """Watch every process started so far; :meth:`Supervisor.run` restarts one that exits."""
        s = self.settings
        policy = RestartPolicy(s.restart_initial_s, s.restart_max_s, s.restart_reset_s)
        sup = Supervisor([], policy, log=log, on_change=on_change)
        if self.postgres_started and self.postgres.process is not None:
            sup.adopt("postgres", self.postgres.process, self.postgres.start)
        if self.broker is not None and self.broker.process is not None:
            sup.adopt("broker", self.broker.process, self._start_broker, self.prepare_topics)
        for spec in self.processes_to_run:
            sup.adopt(spec.name, self.processes[spec.name], partial(self.start_service, spec))
        self.supervisor = sup
        return sup

    def _start_broker(self) -> Process:
        assert self.broker is not None
        self.broker.start()
        assert self.broker.process is not None
        return self.broker.process

    def wait_ready(self, progress: Progress | None = None) -> None:
        """Until every process answers ``/health/ready``; each one said as it does."""
        progress, started = progress or Progress(), time.monotonic()
        deadline = started + self.settings.ready_timeout_s
        pending = {spec.name: spec for spec in self.processes_to_run}
        while pending:
            for name, spec in list(pending.items()):
                proc = self.processes[name]
                if proc.poll() is not None:
                    raise CliError(
                        f"{name} exited with code {proc.returncode} while starting",
                        f"its own error is above; {name} listens on port {self.port(spec)}",
                    )
                if _ready(self.port(spec)):
                    del pending[name]
                    progress.done(f"{name} ready on port {self.port(spec)}", started)
            if pending and time.monotonic() > deadline:
                raise CliError(
                    f"not ready after {self.settings.ready_timeout_s:g} s: {', '.join(pending)}",
                    "their output is above; a slow machine may need NOCODE_READY_TIMEOUT_S",
                )
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        if self.broker:
            self.broker.stop()
        if self.postgres_started:
            self.postgres.stop()

    def listing(self) -> list[tuple[str, str]]:
        rows = [(spec.name, f"http://127.0.0.1:{self.port(spec)}") for spec in SERVICES]
        if self.simulated:
            where = f"http://127.0.0.1:{self.port(SIMULATORS)}"
            rows.append(("simulators", f"{where} (stand-ins for {', '.join(self.simulated)})"))
        rows.append(
            ("kafka", self.bootstrap_servers + ("" if self.broker is None else " (embedded)"))
        )
        if not self.env.get("GATEWAY_ADMIN_PASSWORD"):
            password = self.settings.data_dir / "admin-password"
            rows.append(("admin", f"user admin, password in {password}"))
        if self.postgres_started:
            rows.append(
                (
                    "postgres",
                    f"{self.postgres.url('<service>', 'postgresql')} (embedded, data in "
                    f"{self.postgres.data_dir})",
                )
            )
        return rows


def _no_password(url: str) -> str:
    """A database URL fit for a file others may read: the password left out."""
    return make_url(url).set(password=None).render_as_string(hide_password=False)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False
