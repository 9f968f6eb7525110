"""``nocode up`` keeps its promises when its parts die: one real platform for the module.

Each test breaks it in the middle of a few model -> target sagas driven through the
gateway (approvals included), lets every saga finish, then counts every effect so
far exactly (``chaos.Sagas.assert_exact``): chat messages, MIDAS sends, read-model
rows and core's jobs, none lost or doubled. In order: a second ``up`` is refused;
``kill -9`` of each service; ``kill -9`` of the embedded broker; a full stop and start
of ``up``, after which ``nocode replay mypage`` equals the live read model.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from contracts.topics import ALL_TOPICS
from nocode.services import SERVICE_NAMES, SERVICES
from tests.connected.chaos import RunningUp, Sagas, wait_http
from tests.support import free_port

pytestmark = pytest.mark.connected

SAGAS_PER_FAULT = 3


@pytest.fixture(scope="module")
def simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Vertica, MIDAS and the chat, outside the platform: they outlive its restarts."""
    port = free_port()
    log = tmp_path_factory.mktemp("simulators") / "simulators.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nocode", "serve", "simulators"],
        env={**os.environ, "SIMULATORS_PORT": str(port)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health/ready")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture(scope="module")
def up(simulators: str) -> Iterator[RunningUp]:
    # Not under pytest's tmp dir: pytest sessions running meanwhile (other worktrees) prune
    # and re-permission old base dirs, and this platform lives for minutes.
    where = Path(tempfile.mkdtemp(prefix="nocode-supervised-"))
    platform = RunningUp(where, simulators)
    platform.start()
    try:
        yield platform
    finally:
        if platform.proc is not None and platform.proc.poll() is None:
            platform.stop()
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture(scope="module")
async def sagas(up: RunningUp, simulators: str) -> AsyncIterator[Sagas]:
    driver = Sagas(up.url("gateway"), simulators)
    try:
        yield driver
    finally:
        await driver.close()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def all_ready(up: RunningUp) -> dict[str, int]:
    return {
        s.name: httpx.get(f"{up.url(s.name)}/health/ready", timeout=5).status_code for s in SERVICES
    }


def test_a_second_up_is_refused_and_the_first_keeps_running(up: RunningUp, tmp_path: Path) -> None:
    first = up.placement()
    # Same data directory: refused before it touches anything, naming the first.
    same = subprocess.run(
        [sys.executable, "-m", "nocode", "up"], env=up.env, capture_output=True, timeout=60
    )
    said = (same.stdout + same.stderr).decode()
    assert same.returncode != 0, said
    assert f"nocode up pid {up.proc.pid}" in said and "already running" in said
    assert f"gateway {up.env['GATEWAY_PORT']}" in said
    assert f"postgres {up.env['NOCODE_POSTGRES_PORT']}" in said
    # Another data directory on the same ports: refused too, naming who holds them.
    other = subprocess.run(
        [sys.executable, "-m", "nocode", "up"],
        env={**up.env, "NOCODE_DATA_DIR": str(tmp_path / "other")},
        capture_output=True,
        timeout=60,
    )
    said = (other.stdout + other.stderr).decode()
    assert other.returncode != 0, said
    assert f"gateway port {up.env['GATEWAY_PORT']}" in said
    assert f"of nocode up pid {up.proc.pid}" in said
    assert not (tmp_path / "other" / "postgres").exists()  # nothing started there

    # The first one kept running: same processes, every service ready (its database too).
    assert up.proc.poll() is None
    assert up.placement()["processes"] == first["processes"]
    assert all_ready(up) == dict.fromkeys(SERVICE_NAMES, 200)
    assert listening(int(up.env["NOCODE_POSTGRES_PORT"]))


async def nocode(*args: str, env: dict[str, str]) -> str:
    """Run a ``nocode`` command with only ``env`` (and PATH); its output, once it exits 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nocode",
        *args,
        env={"PATH": os.environ["PATH"], **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (out + err).decode()
    return out.decode()


async def wait_for_stage(sagas: Sagas, stage: str, timeout_s: float = 120.0) -> None:
    """Until the first saga of the batch reached ``stage``: the later ones are mid-way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not sagas.all[-SAGAS_PER_FAULT].reached(stage):
        assert loop.time() < deadline, [s.stage for s in sagas.all[-SAGAS_PER_FAULT:]]
        await asyncio.sleep(0.1)


async def restarted(up: RunningUp, name: str, old_pid: int, restarts: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while not (
        up.process(name)["restarts"] == restarts
        and up.process(name)["pid"] != old_pid
        and up.process(name)["state"] == "running"
    ):
        assert loop.time() < deadline, up.process(name)
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_kill_9_of_a_service_mid_saga(up: RunningUp, sagas: Sagas, service: str) -> None:
    batch = sagas.start(f"kill-{service}", SAGAS_PER_FAULT)
    await wait_for_stage(sagas, "target requested")
    pid = up.process(service)["pid"]
    os.kill(pid, signal.SIGKILL)
    stages = [s.stage for s in sagas.all[-SAGAS_PER_FAULT:]]

    # The others keep answering while it is down.
    others = [s.name for s in SERVICES if s.name != service]
    async with httpx.AsyncClient(timeout=5) as client:
        for name in others:
            assert (await client.get(f"{up.url(name)}/health/live")).status_code == 200, name

    await restarted(up, service, pid, restarts=1)
    await asyncio.gather(*batch)
    counts = await sagas.assert_exact()
    line = f"nocode: {service} (pid {pid}) killed by SIGKILL"
    assert any(line in text and "restart attempt 1" in text for text in up.supervisor_lines())
    assert up.proc.poll() is None
    print(f"kill -9 {service} (sagas at: {stages}): {len(sagas.all)} sagas so far, {counts}")


async def test_kill_9_of_the_broker_mid_saga(up: RunningUp, sagas: Sagas) -> None:
    before = up.placement()
    batch = sagas.start("kill-broker", SAGAS_PER_FAULT)
    await wait_for_stage(sagas, "target requested")
    pid = before["processes"]["broker"]["pid"]
    os.kill(pid, signal.SIGKILL)

    await restarted(up, "broker", pid, restarts=1)
    assert up.placement()["broker_cluster_id"] != before["broker_cluster_id"]
    assert await partitions(up.placement()["bootstrap_servers"]) == dict.fromkeys(ALL_TOPICS, 4)
    await asyncio.gather(*batch)
    counts = await sagas.assert_exact()
    assert any("topics created" in line for line in up.output().splitlines()[-400:])
    print(f"kill -9 broker: {len(sagas.all)} sagas so far, effects {counts}")


async def test_kill_9_of_postgres_mid_saga(up: RunningUp, sagas: Sagas) -> None:
    services_before = {n: up.process(n) for n in SERVICE_NAMES}
    batch = sagas.start("kill-postgres", SAGAS_PER_FAULT)
    await wait_for_stage(sagas, "target requested")
    pid = up.process("postgres")["pid"]
    os.kill(pid, signal.SIGKILL)

    await restarted(up, "postgres", pid, restarts=1)
    await asyncio.gather(*batch)
    counts = await sagas.assert_exact()
    # The services reconnected by themselves: none of them was restarted.
    assert {n: up.process(n) for n in SERVICE_NAMES} == services_before
    assert all_ready(up) == dict.fromkeys(SERVICE_NAMES, 200)
    print(f"kill -9 postgres: {len(sagas.all)} sagas so far, effects {counts}")

    # nocode status, given only the data directory, finds the moved ports and the restarts.
    status = await nocode("status", "--json", env={"NOCODE_DATA_DIR": str(up.data_dir)})
    snapshot = json.loads(status)
    assert {s["name"]: s["url"] for s in snapshot["services"]} == {
        n: up.url(n) for n in SERVICE_NAMES
    }
    assert {s["health"] for s in snapshot["services"]} == {"ok"}
    assert snapshot["processes"]["postgres"]["restarts"] == 1
    assert snapshot["processes"]["postgres"]["last_exit"] == "killed by SIGKILL"


async def partitions(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(ALL_TOPICS))
        return {t["topic"]: len(t["partitions"]) for t in described}
    finally:
        await admin.close()


async def test_a_full_stop_and_start_mid_saga_then_replay_equals_live(
    up: RunningUp, sagas: Sagas
) -> None:
    batch = sagas.start("restart", SAGAS_PER_FAULT)
    await wait_for_stage(sagas, "target requested")
    assert await asyncio.to_thread(up.stop) == 0
    assert "nocode: stopped." in up.output()
    assert not (up.data_dir / "platform.json").exists()
    await asyncio.to_thread(up.start)

    await asyncio.gather(*batch)
    counts = await sagas.assert_exact()
    print(f"full restart: {len(sagas.all)} sagas, effects {counts}")

    live = sorted(await sagas.listing("/myRequests"), key=lambda r: r["id"])
    # Only the data directory is given: the command finds the platform's moved ports.
    said = await nocode("replay", "mypage", env={"NOCODE_DATA_DIR": str(up.data_dir)})
    assert f"mypage rebuilt: {len(live)} rows" in said, said
    rebuilt = sorted(await sagas.listing("/myRequests"), key=lambda r: r["id"])
    assert rebuilt == live
