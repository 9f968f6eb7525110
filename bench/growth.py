"""No growth: the whole platform's CPU per ``POST /models`` for the first requests, and again
after many. Run on demand (about a quarter of an hour at the defaults on 2 cores)::

    .venv/bin/python -m bench.growth --window 5000 --after 50000 --concurrency 20

It starts the platform as ``bench.platform`` does (rate limit off), measures the CPU per
POST (every process, idle subtracted, until every consumer has applied the events and every
chat message is sent) over the first ``--window`` POSTs, sends POSTs until ``--after`` have
been made, measures the next ``--window`` the same way, and prints both per process with
their ratio. The issue's goal: the later TOTAL within 10 % of the first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import hops, load, procs
from bench.platform import Bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=int, default=5000, help="POSTs per measurement")
    parser.add_argument("--after", type=int, default=50000, help="POSTs before the second")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--base-port", type=int, default=30000)
    parser.add_argument("--data-dir", help="default: a new temp directory")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE (repeatable)")
    args = parser.parse_args()
    bench = Bench(args)
    figures: dict[str, Any] = {}
    try:
        bench.start()
        print(f"platform up (data {bench.data_dir})", flush=True)

        def window(tag: str) -> dict[str, Any]:
            async def posts() -> load.Outcome:
                res = await load.post_models(
                    bench.gateway, bench.user, args.window, args.concurrency, tag
                )
                await hops.settle(bench.db_url, res.ids)
                return res

            average = procs.load_average()
            cpu, res, took = bench.measure(bench.up, posts, None)
            out = Bench.figures(cpu, res, took)
            out["load_average"] = average
            print(tag, json.dumps(out), flush=True)
            return out

        figures["first"] = window("first")
        filler = args.after - args.window
        if filler > 0:
            res = bench.run(
                load.post_models(bench.gateway, bench.user, filler, args.concurrency, "fill")
            )
            # the consumers and the chat sender work off the backlog before the next window
            bench.run(hops.settle(bench.db_url, res.ids, timeout_s=3600))
            print(f"filler: {len(res.ids)} POSTs, errors {res.errors}", flush=True)
        figures["later"] = window("later")
    finally:
        bench.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    first, later = figures["first"]["cpu_ms"], figures["later"]["cpu_ms"]
    print(f"\n| process | CPU-ms per POST, first {args.window} | after {args.after} | ratio |")
    print("|---|---:|---:|---:|")
    for label in first:
        ratio = later.get(label, 0.0) / first[label] if first[label] > 0.05 else float("nan")
        print(f"| {label} | {first[label]} | {later.get(label, '')} | {ratio:.2f} |")
    for key in ("per_s", "p50_ms", "p99_ms", "load_average"):
        print(f"{key}: first {figures['first'][key]}, later {figures['later'][key]}")


if __name__ == "__main__":
    main()
