"""``nocode up`` as a user runs it: starts everything, stops cleanly on SIGTERM, keeps data."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import psutil
import pytest

from nocode.launcher import REPO_ROOT
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


def progress_lines(output: str) -> list[str]:
    """``up``'s own lines, up to its banner (the services' JSON logs are interleaved)."""
    lines = output.split("nocode is up", 1)[0].splitlines()
    return [line for line in lines if line.startswith("nocode: ")]


TIMED = r" \((\d+\.\d) s\)$"


def assert_steps_in_order(lines: list[str], env: dict[str, str]) -> None:
    """PostgreSQL, broker, topics, each database's migrations, then each process ready,
    every step with its time; nothing else in between."""
    assert lines[0].startswith("nocode: starting (data in ")
    infra = ["PostgreSQL ready", "broker ready", "topics (8) created"]
    infra += [f"{s.name} migrations applied" for s in SERVICES if s.database]
    for line, step in zip(lines[1 : 1 + len(infra)], infra, strict=True):
        assert re.fullmatch(f"nocode: {re.escape(step)}{TIMED}", line), (line, lines)
    ready = lines[1 + len(infra) :]
    matches = [re.fullmatch(r"nocode: (\w+) ready on port (\d+)" + TIMED, line) for line in ready]
    assert all(matches), ready
    ports = {m[1]: m[2] for m in matches if m}
    assert len(ports) == len(ready) == len(SERVICES) + 1  # every service and the simulators
    assert ports == {s.name: env[f"{s.env_prefix}_PORT"] for s in (*SERVICES, SIMULATORS)}
    # Each process's time counts from when they all started: they arrive in that order.
    times = [float(re.search(TIMED, line)[1]) for line in ready]
    assert times == sorted(times)


def run_banner_example(banner: str) -> str:
    """The banner's token line and its first curl, run by a shell exactly as printed."""
    token = next(line for line in banner.splitlines() if line.startswith("  TOKEN="))
    curl = next(line for line in banner.splitlines() if line.startswith("  curl -s http"))
    done = subprocess.run(
        ["bash", "-ec", f"{token.strip()}\n{curl.strip()}"], capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


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
    output = (tmp_path / "first.log").read_text()
    assert_steps_in_order(progress_lines(output), env)
    banner = output.split("nocode is up", 1)[1]
    for spec in (*SERVICES, SIMULATORS):
        assert f"http://127.0.0.1:{ports[spec.env_prefix]}" in banner
    # The banner's example, run as printed: the moved gateway port, a token it takes.
    answer = run_banner_example(banner)
    assert f"{gateway}/models " in banner and "localhost:8080" not in banner
    assert '"modelName":"TestModel10"' in answer and "unauthorized" not in answer, answer
    token = re.search(r"^  TOKEN=(\S+)$", banner, re.M)[1]
    example = httpx.get(
        f"{gateway}/models/{json.loads(answer)['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert example.status_code == 200 and example.json()["userId"] == "test"
    created = httpx.post(
        f"{gateway}/models", data={"userId": "test", "modelName": "Kept"}, headers=bearer()
    )
    assert created.status_code == 201
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


def nocode(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nocode", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version_is_the_installed_packages() -> None:
    done = nocode("--version")
    assert done.returncode == 0 and done.stdout == f"nocode {version('nocode')}\n"


def test_a_taken_gateway_port_is_one_line_and_a_hint_and_debug_adds_the_traceback(
    tmp_path: Path,
) -> None:
    ports = {f"{s.env_prefix}_PORT": str(free_port()) for s in (*SERVICES, SIMULATORS)}
    env = {
        **os.environ,
        **ports,
        "NOCODE_DATA_DIR": str(tmp_path / "data"),
        "NOCODE_POSTGRES_PORT": str(free_port()),
        "NOCODE_BROKER_PORT": str(free_port()),
    }
    with socket.socket() as held:
        held.bind(("127.0.0.1", int(ports["GATEWAY_PORT"])))
        held.listen()
        plain = nocode("up", env=env)
        debug = nocode("--debug", "up", env=env)
    gateway = ports["GATEWAY_PORT"]
    assert plain.returncode == 1
    assert plain.stderr.splitlines() == [
        f"nocode: error: ports in use, not starting: gateway port {gateway} held by pid "
        f"{os.getpid()} ({psutil.Process().name()})",
        "  hint: stop what holds them, or move them: GATEWAY_PORT=<another port>",
    ]
    assert "Traceback" not in plain.stdout + plain.stderr
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert "nocode.errors.CliError: ports in use" in debug.stderr
    assert debug.stderr.splitlines()[-2:] == plain.stderr.splitlines()
    assert not (tmp_path / "data" / "postgres").exists()  # refused before touching anything
