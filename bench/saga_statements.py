"""The SQL statements a full saga sends, per database: what a saga costs in round trips.

Run on demand, never in the test suite::

    .venv/bin/python -m bench.saga_statements --sagas 20

Starts the platform as ``bench.platform`` does, with PostgreSQL's ``pg_stat_statements``
loaded, runs a few sagas to warm it, resets the counts, runs ``--sagas`` full sagas and
waits for their events to settle, then prints per database the statements per saga
(a data-modifying ``WITH`` counts as one; BEGIN and COMMIT count) and the most frequent
ones. The bench's own reads (the saga's state watch, the settle checks) are left out.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench import hops, load, procs
from bench.platform import Bench

DATABASES = ("model", "target", "core", "notice", "mypage_cqrs")
_MINE = ("pg_stat_statements", "FROM inbox WHERE event_id = ANY", "FROM outbox WHERE key = ANY")
_MINE += ("count(*) FROM notifications WHERE status", "SELECT id, state FROM model_requests")
_MINE += ("SELECT t.id, t.state, m.state",)


async def _statements(bench: Bench, reset: bool) -> dict[str, list[Any]]:
    found = {}
    for db in DATABASES:
        conn = await procs.client(bench.db_url(db))
        if reset:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
            continue
        rows = await conn.fetch(
            "SELECT calls, query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = $1 ORDER BY calls DESC",
            db,
        )
        found[db] = [r for r in rows if not any(m in r["query"] for m in _MINE)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=20)
    parser.add_argument("--top", type=int, default=8, help="statements shown per database")
    parser.add_argument("--base-port", type=int, default=31000)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE (repeatable)")
    args = parser.parse_args()
    args.data_dir = None
    bench = Bench(args)
    try:
        bench.start()  # creates the data directory; then again with the extension loaded
        bench.stop()
        bench.procs.clear()
        conf = bench.data_dir / "postgres" / "postgresql.auto.conf"
        conf.write_text(
            conf.read_text() + "\nshared_preload_libraries = 'pg_stat_statements'\n"
            "pg_stat_statements.track = all\n"
        )
        bench.start()
        warm = bench.run(load.sagas(bench.gateway, bench.user, bench.admin, 5, 20, bench.db_url))
        bench.run(hops.settle(bench.db_url, warm.ids))
        bench.run(_statements(bench, reset=True))
        done = bench.run(
            load.sagas(bench.gateway, bench.user, bench.admin, args.sagas, 20, bench.db_url)
        )
        bench.run(hops.settle(bench.db_url, done.ids))
        found = bench.run(_statements(bench, reset=False))
    finally:
        bench.stop()
    sagas = len(done.ids)
    print(f"\n{sagas} sagas, errors {done.errors}\n")
    print("| database | statements per saga | BEGIN | COMMIT |\n|---|---:|---:|---:|")
    total = 0.0
    for db, rows in found.items():
        per = sum(r["calls"] for r in rows) / sagas
        total += per
        count = {
            q: sum(r["calls"] for r in rows if r["query"] == q) / sagas for q in ("BEGIN", "COMMIT")
        }
        print(f"| {db} | {per:.1f} | {count['BEGIN']:.1f} | {count['COMMIT']:.1f} |")
    print(f"| **TOTAL** | **{total:.1f}** | | |")
    for db, rows in found.items():
        print(f"\n{db}:")
        for r in rows[: args.top]:
            print(f"  {r['calls'] / sagas:6.2f}  {' '.join(r['query'].split())[:110]}")


if __name__ == "__main__":
    main()
