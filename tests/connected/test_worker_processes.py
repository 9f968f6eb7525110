"""``WORKERS=2``: one service served by two worker processes on one port, as safe as two
replicas: both workers start, requests are answered, and each event goes out once (one relay
publishes at a time: the database's relay lock).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from contracts.topics import MODEL_EVENTS
from tests.support import AUTH_ENV, bearer, eventually, free_port, migrated_database, topic_values

pytestmark = pytest.mark.connected

REPO = Path(__file__).resolve().parents[2]
POSTS = 30


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (from /proc; Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


async def test_two_worker_processes_serve_one_port_and_publish_each_event_once(
    postgres_admin_url: str, topics: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **AUTH_ENV,
        "MODEL_DATABASE_URL": await migrated_database(postgres_admin_url, "model"),
        "KAFKA_BOOTSTRAP_SERVERS": topics,
        "MODEL_PORT": str(port),
        "WORKERS": "2",
        "OUTBOX_POLL_INTERVAL_S": "0.2",
    }
    log = (tmp_path / "model.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nocode", "serve", "model", env=env, cwd=REPO, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=bearer(), timeout=10
        ) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/health/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, timeout_s=90, what="model's workers")
            workers = [p for p in children(proc.pid) if p != proc.pid]
            # uvicorn's supervisor, and its two workers (plus multiprocessing's tracker)
            assert len(workers) >= 2, workers

            async def post(n: int) -> int:
                body = {"userId": "test", "modelName": f"W{n}"}
                created = await client.post("/models", data=body)
                assert created.status_code == 201, created.text
                return int(created.json()["id"])

            ids = await asyncio.gather(*(post(n) for n in range(POSTS)))
            assert len(set(ids)) == POSTS

            async def all_published() -> list[dict] | None:
                values = await topic_values(topics, MODEL_EVENTS)
                return values if len(values) >= POSTS else None

            values = await eventually(all_published, timeout_s=60, what="the relay")
            await asyncio.sleep(1.0)  # a second relay, if there were one, would publish again
            values = await topic_values(topics, MODEL_EVENTS)
            assert Counter(v["id"] for v in values) == Counter({i: 1 for i in ids})
            assert {v["eventType"] for v in values} == {"Requested"}
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        log.close()
    text = (tmp_path / "model.log").read_text()
    started = [line for line in text.splitlines() if "Started server process" in line]
    assert len(started) == 2, text[-2000:]
