"""``nocode up`` as a user runs it: starts everything, stops cleanly on SIGTERM, keeps data."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nocode.embedded_postgres import PASSWORD_FILE
from nocode.placement import locate
from nocode.services import SERVICES, SIMULATORS
from tests.support import AUTH_ENV, bearer, free_port

pytestmark = pytest.mark.connected


def start_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nocode", "up"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while "nocode is up" not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "nocode up did not come up in 90 s"
        time.sleep(0.2)
    return proc


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_serves_stops_on_sigterm_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    ports = {s.env_prefix: free_port() for s in (*SERVICES, SIMULATORS)}
    # Only embedded infrastructure: drop any endpoints the caller's environment names.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_DATABASE_URL", "_PORT")) and k != "KAFKA_BOOTSTRAP_SERVERS"
    }
    env = {
        **AUTH_ENV,
        **inherited,
        "NOCODE_DATA_DIR": str(tmp_path / "data"),
        "NOCODE_POSTGRES_PORT": str(free_port()),
        "NOCODE_BROKER_PORT": str(free_port()),
        **{f"{prefix}_PORT": str(port) for prefix, port in ports.items()},
    }
    gateway = f"http://127.0.0.1:{ports['GATEWAY']}"

    up = start_up(env, tmp_path / "first.log")
    banner = (tmp_path / "first.log").read_text()
    for spec in (*SERVICES, SIMULATORS):
        assert f"http://127.0.0.1:{ports[spec.env_prefix]}" in banner
    created = httpx.post(
        f"{gateway}/models", data={"userId": "test", "modelName": "Kept"}, headers=bearer()
    )
    assert created.status_code == 201
    password = the_password_stays_in_its_file(env, tmp_path / "data")
    up.send_signal(signal.SIGTERM)
    assert up.wait(60) == 0
    assert "nocode: stopped." in (tmp_path / "first.log").read_text()
    assert not any(listening(p) for p in ports.values())
    assert not listening(int(env["NOCODE_POSTGRES_PORT"]))

    again = start_up(env, tmp_path / "second.log")
    try:
        kept = httpx.get(f"{gateway}/models/{created.json()['id']}", headers=bearer())
        assert kept.status_code == 200 and kept.json()["modelName"] == "Kept"
    finally:
        again.send_signal(signal.SIGINT)
        assert again.wait(60) == 0
    for log in ("first.log", "second.log"):  # every service's log lines, up's own too
        assert password not in (tmp_path / log).read_text(errors="replace")


def the_password_stays_in_its_file(env: dict[str, str], data_dir: Path) -> str:
    """The embedded PostgreSQL's superuser password (issue 12, item 9): 0600 in the data
    directory, found there by every command, in neither platform.json nor `nocode status`."""
    password_file = data_dir / "postgres" / PASSWORD_FILE
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 24
    placed = (data_dir / "platform.json").read_text()
    assert "postgresql+asyncpg://postgres@127.0.0.1:" in placed and password not in placed
    assert all(password in url for url in locate(env).databases.values())
    # Given only the data directory, a command finds the moved port and the password too.
    only_the_dir = locate({"NOCODE_DATA_DIR": str(data_dir)}).databases.values()
    assert all(password in url for url in only_the_dir)
    status = subprocess.run(
        [sys.executable, "-m", "nocode", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "gateway" in status.stdout, status.stdout + status.stderr
    assert password not in status.stdout + status.stderr
    return password
