"""A ``WEB_CONCURRENCY`` in the environment (set by some platforms) does not stop the
processes that run one uvicorn worker: uvicorn would read it as a worker count it cannot
honour for an app object, and exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.support import free_port

pytestmark = pytest.mark.connected


@pytest.mark.parametrize("name", ["simulators", "console"])
def test_a_single_worker_process_serves_despite_web_concurrency(name: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "WEB_CONCURRENCY": "2",
        "SIMULATORS_PORT": str(port),
        "CONSOLE_PORT": str(port),
        "CONSOLE_GATEWAY_URL": f"http://127.0.0.1:{free_port()}",  # not needed to be live
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "nocode", "serve", name],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline, status = time.monotonic() + 30, None
        while time.monotonic() < deadline and proc.poll() is None and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code
            except httpx.HTTPError:
                time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert status == 200
    finally:
        proc.terminate()
        proc.wait(15)
