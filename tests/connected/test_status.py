"""``nocode status`` against the whole platform: healthy, then notice down and the gateway's
breaker to it open.

The command runs as its own process (``python -m nocode status``), pointed at the
platform's ports the way it finds them on a developer's machine: ``NAME_PORT``.
"""

from __future__ import annotations

import asyncio
import os
import sys

import httpx
import orjson
import pytest

from nocode.launcher import REPO_ROOT
from nocode.services import SERVICE_NAMES
from nocode.status import Snapshot, gather, main, verdict
from servicekit import metrics
from servicekit.resilience import BREAKER_OPEN
from tests.connected.whole_platform import Platform, whole_platform
from tests.support import eventually

pytestmark = pytest.mark.connected


def forget_earlier_tests_series() -> None:
    """One registry serves the whole test session: drop the series earlier tests' services
    left in the metrics the verdict reads (their dead letters, backlogs, breakers)."""
    for metric in (
        metrics.OUTBOX_BACKLOG,
        metrics.EVENTS_DEAD_LETTERED,
        metrics.CONSUMER_LAG,
        BREAKER_OPEN,
    ):
        metric.clear()


def urls_of(platform: Platform, gateway: httpx.AsyncClient) -> dict[str, str]:
    urls = {name: platform.url(name) for name in SERVICE_NAMES if name != "gateway"}
    return {"gateway": str(gateway.base_url).rstrip("/"), **urls}


def port_env(urls: dict[str, str]) -> dict[str, str]:
    return {f"{name.upper()}_PORT": url.rsplit(":", 1)[1] for name, url in urls.items()}


async def nocode_status(urls: dict[str, str], *args: str) -> tuple[int, str]:
    """The real command in its own process, as an operator runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nocode",
        "status",
        *args,
        env={**os.environ, **port_env(urls)},
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, output.decode()


def table(screen: str) -> dict[str, list[str]]:
    """The rows of the screen's table by service: the lines after the header, up to a blank."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("SERVICE")) + 1
    rows = lines[start : lines.index("", start)]
    return {row.split()[0]: row.split() for row in rows}


async def status_json(urls: dict[str, str]) -> tuple[int, dict]:
    lines: list[str] = []
    code = await asyncio.to_thread(main, urls=urls, as_json=True, out=lines.append)
    return code, orjson.loads("".join(lines))


async def test_status_is_healthy_then_names_what_is_down_and_the_open_breaker(
    postgres_admin_url: str, topics: str
) -> None:
    forget_earlier_tests_series()
    async with whole_platform(postgres_admin_url, topics) as (platform, gateway):
        urls = urls_of(platform, gateway)

        # One request, so model's relay publishes and every consumer of model.events has
        # a lag to report.
        created = await gateway.post("/models", data={"userId": "test", "modelName": "M1"})
        assert created.status_code == 201, created.text
        consumers = ("target", "core", "notice", "mypage_cqrs")

        async def healthy_and_consumed() -> Snapshot | None:
            snapshot = await gather(urls)
            lags = {s.name: s.metrics and s.metrics.lag for s in snapshot.services}
            consumed = all(lags[name] and "model.events" in lags[name] for name in consumers)
            return snapshot if consumed and verdict(snapshot).healthy else None

        # Each service's producer connects in the background after it starts serving.
        await eventually(healthy_and_consumed, timeout_s=30, what="ready, request consumed")

        code, screen = await nocode_status(urls)
        print(f"\n$ nocode status   (exit {code})\n{screen}")
        assert code == 0, screen
        lines = screen.splitlines()
        assert lines[-1] == "healthy"
        rows = table(screen)
        assert list(rows) == list(SERVICE_NAMES)
        for name in SERVICE_NAMES:
            assert rows[name][1] == "ok", screen
        assert rows["core"][5:7] == ["0", "0"]  # queued, running
        assert [rows[name][3] for name in consumers] == ["0"] * 4  # lag
        assert rows["model"][2] == "0"  # outbox backlog: the request's event was published
        assert all(len(line) <= 100 for line in lines)

        await platform.stop("notice")

        async def notice_down_and_breaker_open() -> Snapshot | None:
            # Each GET through the gateway to the stopped upstream counts against its breaker.
            await gateway.get("/notices", params={"userId": "test"})
            snapshot = await gather(urls)
            gateway_row = next(s for s in snapshot.services if s.name == "gateway")
            opened = gateway_row.metrics and "notice" in gateway_row.metrics.open_breakers
            return snapshot if opened else None

        await eventually(notice_down_and_breaker_open, timeout_s=30, what="breaker to notice")

        code, screen = await nocode_status(urls)
        print(f"\n$ nocode status   (exit {code})\n{screen}")
        assert code == 1, screen
        rows = table(screen)
        assert rows["notice"][1] == "DOWN"
        assert rows["gateway"][1] == "ok" and rows["gateway"][-1] == "notice"
        assert f"notice down at {urls['notice']}: connection refused" in screen
        text = " ".join(screen.split())
        assert "DEGRADED: gateway circuit open to notice; notice down (connection refused)" in text

        code, data = await status_json(urls)
        assert code == 1
        assert data["healthy"] is False
        assert data["reasons"] == [
            "gateway circuit open to notice",
            "notice down (connection refused)",
        ]
        by_name = {s["name"]: s for s in data["services"]}
        assert by_name["notice"]["health"] == "down"
        assert by_name["model"]["health"] == "ok"
        assert by_name["core"]["metrics"]["queue_depth"] == 0
