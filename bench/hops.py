"""How long each event hop took, from the timestamps the platform stores.

For the ``Requested`` events of the given model requests: the model's outbox row
(``created_at``: the transaction that stored the request; ``published_at``: the relay's
acknowledged publish), each consumer's inbox row (``processed_at``: the transaction that
applied it) and notice's chat message (``sent_at``). All are the one PostgreSQL server's
``now()``, so they compare without clock skew. ``now()`` is a transaction's start: a hop
ends when its transaction began, a few statements before its commit.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from bench import procs

CONSUMER_DBS = ("model", "target", "core", "notice", "mypage_cqrs")


def _ms(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() * 1000


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _fetch(url: Callable[[str], str], db: str, query: str, *args: object) -> list:
    conn = await procs.client(url(db))
    return await conn.fetch(query, *args)


async def event_ids(url: Callable[[str], str], request_ids: list[int]) -> dict[str, tuple]:
    rows = await _fetch(
        url,
        "model",
        "SELECT event_id, created_at, published_at FROM outbox "
        "WHERE key = ANY($1::text[]) AND payload->>'eventType' = 'Requested'",
        [str(i) for i in request_ids],
    )
    return {r["event_id"]: (r["created_at"], r["published_at"]) for r in rows}


async def settle(url: Callable[[str], str], request_ids: list[int], timeout_s: float = 180) -> None:
    """Wait until the requests' events are published, applied everywhere and their chat sent:
    nothing pending and the inbox counts unchanged over a second."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        events = await event_ids(url, request_ids)
        ids = list(events)
        pending = sum(1 for _, published in events.values() if published is None)
        counts = []
        for db in CONSUMER_DBS:
            rows = await _fetch(url, db, "SELECT count(*) FROM inbox WHERE event_id = ANY($1)", ids)
            counts.append(rows[0][0])
        unsent = await _fetch(
            url, "notice", "SELECT count(*) FROM notifications WHERE status = 'pending'"
        )
        state = (len(ids), pending, tuple(counts), unsent[0][0])
        if pending == 0 and unsent[0][0] == 0 and len(ids) >= len(request_ids) and state == last:
            return
        last = state
        await asyncio.sleep(1.0)
    raise TimeoutError(f"not settled after {timeout_s}s: {last}")


async def hop_latencies(url: Callable[[str], str], request_ids: list[int]) -> dict[str, list]:
    """Hop name -> latencies in ms, one per event."""
    events = await event_ids(url, request_ids)
    ids = list(events)
    hops: dict[str, list[float]] = defaultdict(list)
    for created, published in events.values():
        if published:
            hops["commit -> on topic"].append(_ms(published, created))
    for db in CONSUMER_DBS:
        rows = await _fetch(
            url,
            db,
            "SELECT event_id, consumer, processed_at FROM inbox WHERE event_id = ANY($1)",
            ids,
        )
        for r in rows:
            created, published = events[r["event_id"]]
            hops[f"commit -> applied by {r['consumer']}"].append(_ms(r["processed_at"], created))
            if published:
                hops[f"  on topic -> applied by {r['consumer']}"].append(
                    _ms(r["processed_at"], published)
                )
    rows = await _fetch(
        url,
        "notice",
        "SELECT event_id, sent_at FROM notifications"
        " WHERE event_id = ANY($1) AND sent_at IS NOT NULL",
        ids,
    )
    for r in rows:
        hops["commit -> chat sent"].append(_ms(r["sent_at"], events[r["event_id"]][0]))
    return dict(hops)


def summary(hops: dict[str, list[float]]) -> dict[str, tuple[float, float, int]]:
    """Hop -> (p50, p99, count)."""
    return {
        name: (statistics.median(v), percentile(v, 0.99), len(v))
        for name, v in sorted(hops.items(), key=lambda kv: kv[0].strip())
        if v
    }
