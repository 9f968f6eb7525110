"""``LOG_FILE``: a service started as its container starts it also writes its JSON logs
to that file (core's ``/data`` volume in compose and k8s), not only to stdout."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import AUTH_ENV, free_port

pytestmark = pytest.mark.connected


def test_a_service_writes_its_json_logs_to_log_file(
    mypage_db: str, topics: str, tmp_path: Path
) -> None:
    port = free_port()
    log_file = tmp_path / "logs" / f"mypage-{socket.gethostname()}.log"
    env = {
        **os.environ,
        **AUTH_ENV,
        "MYPAGE_CQRS_DATABASE_URL": mypage_db,
        "MYPAGE_CQRS_PORT": str(port),
        "KAFKA_BOOTSTRAP_SERVERS": topics,
        "LOG_FILE": str(tmp_path / "logs" / "mypage-{host}.log"),
    }
    nocode = Path(sys.executable).parent / "nocode"
    process = subprocess.Popen(
        [str(nocode), "serve", "mypage_cqrs"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("mypage_cqrs did not become ready")
        assert httpx.get(f"http://127.0.0.1:{port}/myRequests").status_code == 401
    finally:
        process.terminate()
        stdout, _ = process.communicate(timeout=30)
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines, "nothing in LOG_FILE"
    assert all(line["service"] == "mypage_cqrs" for line in lines)
    assert all({"level", "timestamp", "event"} <= set(line) for line in lines)
    # the same lines as on stdout
    printed = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
    assert [p["event"] for p in printed] == [line["event"] for line in lines]
