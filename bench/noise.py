"""The saga measurement's noise floor: a window with no work, measured as the sagas are.

Run on demand, never in the test suite::

    .venv/bin/python -m bench.noise --window 18 --rounds 4

Starts the platform as ``bench.platform`` does, warms it with POSTs and a few sagas, then
measures ``--rounds`` windows of ``--window`` seconds (a full run's saga window) in which
nothing is asked of the platform, with the idle CPU subtracted the same way
(``Bench.measure``) and divided by 20, as for 20 sagas. What it prints is what a saga's
figure can be off by from the platform's idle CPU drifting between the samples.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from bench import hops, load, procs
from bench.platform import Bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=18.0, help="seconds per window")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per", type=int, default=20, help="divide by (sagas per round)")
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--base-port", type=int, default=32000)
    args = parser.parse_args()
    args.data_dir, args.env = None, []
    bench = Bench(args)

    async def nothing() -> load.Outcome:
        await asyncio.sleep(args.window)
        return load.Outcome()

    figures = []
    try:
        bench.start()
        warm = bench.run(load.post_models(bench.gateway, bench.user, 200, 20, "w"))
        bench.run(hops.settle(bench.db_url, warm.ids))
        bench.run(load.sagas(bench.gateway, bench.user, bench.admin, 5, 20, bench.db_url))
        for n in range(args.rounds):
            cpu, _, window = bench.measure(bench.up, nothing, args.per)
            platform = {k: v for k, v in cpu.items() if k not in ("pg:reference", procs.CLIENT)}
            figures.append(sum(platform.values()))
            print(f"round {n + 1}: an empty {window:.1f}-s window, per {args.per}: "
                  f"TOTAL {figures[-1]:.1f} CPU-ms (broker {platform.get('broker', 0):.1f})",
                  flush=True)  # fmt: skip
    finally:
        bench.stop()
    print(f"spread: {min(figures):.1f} to {max(figures):.1f} CPU-ms 'per saga' of no work; "
          f"median {statistics.median(figures):.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
