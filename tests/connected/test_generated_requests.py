"""Schemathesis against every service's OpenAPI (issue 12 item 4): requests generated from
the documented operations, positive and negative, with a user's and an admin's token. No
answer may be a 5xx or break the documented schema.

Bounded for CI: a few examples per operation, one worker, a fixed seed. The platform runs
in this test's event loop; schemathesis runs as a subprocess, so the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from contracts.topics import ALL_TOPICS
from nocode.embedded_broker import EmbeddedBroker
from servicekit.kafka import ensure_topics
from tests.connected.whole_platform import SERVICES, Platform, whole_platform
from tests.support import bearer, free_port

pytestmark = pytest.mark.connected

MAX_EXAMPLES = int(os.environ.get("NOCODE_SCHEMATHESIS_EXAMPLES", "6"))
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)
CALLERS = {"user": bearer("alice", "user"), "admin": bearer()}
ST = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module")
async def platform(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    log = Path(tmp_path_factory.mktemp("broker")) / "broker.log"
    broker = EmbeddedBroker(free_port(), log_file=log)
    broker.start()
    try:
        await ensure_topics(broker.bootstrap_servers, ALL_TOPICS, 3, 1)
        async with whole_platform(postgres_admin_url, broker.bootstrap_servers) as running:
            yield running
    finally:
        broker.stop()


async def run_schemathesis(url: str, token: dict[str, str], report: Path) -> tuple[int, str]:
    """One run; its caches (.schemathesis, .hypothesis) stay in the report's folder."""
    process = await asyncio.create_subprocess_exec(
        str(ST),
        "run",
        f"{url}/openapi.json",
        "--url",
        url,
        "--header",
        f"Authorization:{token['Authorization']}",
        "--checks",
        CHECKS,
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--seed",
        "12",
        "--no-shrink",
        "--request-timeout",
        "20",
        "--suppress-health-check",
        "all",
        "--report",
        "har",
        "--report-har-path",
        str(report),
        cwd=report.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"},
    )
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", "replace")


def statuses(har: Path) -> list[int]:
    entries = json.loads(har.read_text())["log"]["entries"]
    return [entry["response"]["status"] for entry in entries]


async def test_generated_requests_get_no_5xx_and_match_the_schema(
    platform: tuple[Platform, httpx.AsyncClient], tmp_path: Path
) -> None:
    running, gateway = platform
    # Something to read and act on: a model of alice's and one of the admin's.
    for who in CALLERS.values():
        owner = "alice" if who is CALLERS["user"] else "admin"
        created = await gateway.post(
            "/models", json={"userId": owner, "modelName": "m"}, headers=who
        )
        assert created.status_code == 201, created.text
    failures, counts = [], {}
    for name in SERVICES:
        for caller, token in CALLERS.items():
            report = tmp_path / f"{name}-{caller}.har"
            code, output = await run_schemathesis(running.url(name), token, report)
            seen = statuses(report) if report.exists() else []
            server_errors = [s for s in seen if s >= 500]
            counts[f"{name}/{caller}"] = {"requests": len(seen), "5xx": len(server_errors)}
            if os.environ.get("NOCODE_SCHEMATHESIS_VERBOSE"):
                print(output)
            if code != 0 or server_errors or not seen:
                failures.append(f"{name} as {caller} (exit {code}):\n{output[-4000:]}")
    total = sum(c["requests"] for c in counts.values())
    total_5xx = sum(c["5xx"] for c in counts.values())
    print(f"\nschemathesis: {total} generated requests, {total_5xx} 5xx; {json.dumps(counts)}")
    assert not failures, "\n\n".join(failures)
    assert total_5xx == 0
