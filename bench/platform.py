"""The whole platform's cost per request, per process, beside a minimal reference service.

Run on demand, never in the test suite::

    .venv/bin/python -m bench.platform --concurrency 20 --requests 2000 --rounds 3 --sagas 20

It starts the platform with ``nocode up`` (its own data directory, ports from
``--base-port`` on), with the gateway's rate limit off (``GATEWAY_RATE_LIMIT_PER_S=0``),
and the reference (``bench/reference.py``: FastAPI + asyncpg, the same two INSERTs) on the
same PostgreSQL. Each round: the idle CPU of every process over ``--idle-s`` before and
after each measurement (their mean is subtracted); ``POST /models`` through the gateway
at ``--concurrency`` until ``--requests`` are answered, then until every consumer has
applied the events and every chat message is sent (the window's CPU, idle subtracted,
divided by the requests); the same load on the reference; spaced
POSTs (one at a time) for the idle hop latencies; ``--sagas`` full sagas, whose waits for a
state read the databases (one query per database every 0.2 s for all sagas in flight,
``bench.load.StateWatch``), so the CPU per saga is the saga's own, not a polling client's,
measured ``--saga-windows`` times (the round's figure is their median). A saga window
subtracts the platform's idle polling over its length, and that rate drifts by more than
a saga costs (``bench.noise``): so core's simulated steps sleep ``--step-s`` (0.05 s, not
the platform's 0.4 s), which shortens the window about sixfold and changes no work (the
same statements per saga, ``bench.saga_statements``); and ``--status-gets`` status
GETs through the gateway of those sagas (``GET /models/{id}``, ``GET /targets/{id}``):
what one poll of a client costs, printed beside it. The tables
give each round's figures and the medians of the rounds. The machine's load average is
printed with each measurement: on a shared machine, read the figures as taken under it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

from bench import hops, load, procs

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
PORTS = ("GATEWAY", "MODEL", "NOTICE", "CORE", "TARGET", "MYPAGE_CQRS", "CONSOLE", "SIMULATORS")


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health/ready", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait(what: str, check: Callable[[], bool], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.3)


class Bench:
    def __init__(self, args: argparse.Namespace, rate_limit_off: bool = True) -> None:
        self.args = args
        self.rate_limit_off = rate_limit_off
        self.data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="nocode-bench-"))
        base = args.base_port
        self.ports = {name: base + i for i, name in enumerate(PORTS)}
        self.pg_port, self.broker_port, self.ref_port = base + 10, base + 11, base + 12
        self.gateway = f"http://127.0.0.1:{self.ports['GATEWAY']}"
        self.reference = f"http://127.0.0.1:{self.ref_port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        # One event loop for the whole run: the bench's own database connections
        # (procs.client) are opened once and live on it.
        self.runner = asyncio.Runner()

    def run(self, work: Awaitable[T]) -> T:
        return self.runner.run(work)  # type: ignore[arg-type]

    def db_url(self, db: str) -> str:
        from nocode.embedded_postgres import EmbeddedPostgres  # its password, from its file

        return EmbeddedPostgres(self.data_dir / "postgres", self.pg_port).url(db, "postgresql")

    def start(self) -> None:
        env = {**os.environ, "NOCODE_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"}
        env |= {f"{name}_PORT": str(port) for name, port in self.ports.items()}
        env |= {
            "NOCODE_POSTGRES_PORT": str(self.pg_port),
            "NOCODE_BROKER_PORT": str(self.broker_port),
        }
        if self.rate_limit_off:
            env |= {"GATEWAY_RATE_LIMIT_PER_S": "0"}
        env |= dict(item.split("=", 1) for item in self.args.env)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "up.log", "wb")  # noqa: SIM115
        self.up = subprocess.Popen(
            [sys.executable, "-m", "nocode", "up"], env=env, cwd=REPO_ROOT, stdout=log, stderr=log
        )
        self.procs.append(self.up)
        wait("nocode up", lambda: b"nocode is up" in (self.data_dir / "up.log").read_bytes())
        self.run(self._create_reference_db())
        ref_env = {**env, "REFERENCE_DATABASE_URL": self.db_url("reference")}
        self.ref = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.reference:app", "--port", str(self.ref_port),
             "--no-access-log", "--log-level", "warning"],
            env=ref_env, cwd=REPO_ROOT, stdout=log, stderr=log,
        )  # fmt: skip
        self.procs.append(self.ref)
        wait("reference", lambda: ready(self.reference))
        from nocode.keys import issuer

        self.signer = signer = issuer(self.data_dir, {})
        self.user = signer.issue("bench", ["user"], 24 * 3600)
        self.admin = signer.issue("bench-admin", ["admin"], 24 * 3600)
        self.postmaster = procs.postmaster_pid(self.data_dir / "postgres")

    async def _create_reference_db(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.db_url("postgres"))
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'reference'"):
                await conn.execute("CREATE DATABASE reference")
        finally:
            await conn.close()

    def stop(self) -> None:
        try:
            self.run(procs.close_clients())
        finally:
            self.runner.close()
            self.runner = asyncio.Runner()  # a bench may start again
            for proc in reversed(self.procs):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        proc.kill()

    def snapshot(self, root: subprocess.Popen[bytes]) -> procs.Snapshot:
        return procs.Snapshot.take([root.pid], self.postmaster)

    def measure(
        self, root: subprocess.Popen[bytes], work: Callable[[], Awaitable[Any]], per: int | None
    ) -> tuple[dict[str, float], Any, float]:
        """CPU-ms per unit of ``work`` by label, idle subtracted; what work returned; seconds.
        The idle CPU (ms per second, by label) is kept in ``self.idle``: the mean of a
        sample before the work and one after it (the platform polls when idle, so a long
        window such as the sagas' subtracts several seconds of it: one sample is noisy)."""
        idle_s = self.args.idle_s
        before = self.snapshot(root)
        time.sleep(idle_s)
        idle = self.snapshot(root).minus(before)
        start = self.snapshot(root)
        began = time.perf_counter()
        result = self.run(work())
        window = time.perf_counter() - began
        spent = self.snapshot(root).minus(start)
        after = self.snapshot(root)
        time.sleep(idle_s)
        for label, ms in self.snapshot(root).minus(after).items():
            idle[label] = idle.get(label, 0.0) + ms
        self.idle = {label: ms / (2 * idle_s) for label, ms in idle.items()}
        units = per if per is not None else len(result.ids)
        cpu = {
            label: (ms - self.idle.get(label, 0.0) * window) / max(units, 1)
            for label, ms in spent.items()
        }
        return cpu, result, window

    def round(self, n: int) -> dict[str, Any]:
        a, url = self.args, self.db_url
        out: dict[str, Any] = {"load_average": {}}

        async def platform_load() -> load.Outcome:
            res = await load.post_models(
                self.gateway, self.user, a.requests, a.concurrency, f"r{n}"
            )
            await hops.settle(url, res.ids)
            return res

        out["load_average"]["posts"] = procs.load_average()
        cpu, res, window = self.measure(self.up, platform_load, None)
        out["posts"] = self.figures(cpu, res, window)
        idle = {
            k: round(v, 2) for k, v in self.idle.items() if k not in ("pg:reference", procs.CLIENT)
        }
        out["idle_ms_per_s"] = idle | {"TOTAL": round(sum(idle.values()), 2)}
        out["hops_load"] = hops.summary(self.run(hops.hop_latencies(url, res.ids)))

        async def reference_load() -> load.Outcome:
            return await load.post_models(self.reference, None, a.requests, a.concurrency, f"r{n}")

        out["load_average"]["reference"] = procs.load_average()
        cpu, res, window = self.measure(self.ref, reference_load, None)
        keep = {"reference", "pg:reference"}
        out["reference"] = self.figures(
            {k: v for k, v in cpu.items() if k in keep}, res, window, exclude=()
        )

        out["load_average"]["idle_hops"] = procs.load_average()
        ids = self.run(load.spaced_posts(self.gateway, self.user, a.idle_posts, 0.5))
        self.run(hops.settle(url, ids))
        out["hops_idle"] = hops.summary(self.run(hops.hop_latencies(url, ids)))

        if a.sagas:

            async def run_sagas() -> load.Outcome:
                res = await load.sagas(
                    self.gateway, self.user, self.admin, a.sagas, a.concurrency, url
                )
                await hops.settle(url, res.ids)
                return res

            out["load_average"]["sagas"] = procs.load_average()
            windows = []
            for _ in range(a.saga_windows):
                cpu, res, window = self.measure(self.up, run_sagas, a.sagas)
                windows.append(self.figures(cpu, res, window) | {"state_polls": res.polls})
            out["sagas"] = median_of_parts(windows)
            out["sagas"]["windows"] = [w["cpu_ms"]["TOTAL"] for w in windows]
            out["sagas"]["client_cpu_ms"] = statistics.median(w["client_cpu_ms"] for w in windows)
            models, targets = res.ids, res.targets

            async def run_gets() -> load.Outcome:
                return await load.status_gets(
                    self.gateway, self.user, models, targets, a.status_gets, a.concurrency
                )

            if a.status_gets and models:
                out["load_average"]["status_gets"] = procs.load_average()
                cpu, res, window = self.measure(self.up, run_gets, a.status_gets)
                out["status_get"] = self.figures(cpu, res, window)
        return out

    @staticmethod
    def figures(
        cpu: dict[str, float],
        res: load.Outcome,
        window: float,
        exclude: Collection[str] = ("pg:reference",),
    ) -> dict[str, Any]:
        """The figures of one measurement; ``exclude``'s labels and the bench's own database
        reads (``procs.CLIENT``, reported as ``client_cpu_ms``) are in no TOTAL."""
        client = round(cpu.get(procs.CLIENT, 0.0), 2)
        cpu = {
            k: round(v, 2) for k, v in sorted(cpu.items()) if k not in exclude and k != procs.CLIENT
        }
        return {
            "cpu_ms": cpu | {"TOTAL": round(sum(cpu.values()), 2)},
            "client_cpu_ms": client,
            "ok": len(res.ids),
            "errors": res.errors,
            "per_s": round(len(res.ids) / res.duration_s, 1) if res.duration_s else 0.0,
            "p50_ms": round(hops.percentile(res.latencies_ms, 0.5), 1),
            "p99_ms": round(hops.percentile(res.latencies_ms, 0.99), 1),
            "window_s": round(window, 1),
        }


def median_of(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return median_of_parts([r[key] for r in rounds if key in r])


def median_of_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Each label's median over ``parts`` (measurements' figures), and the medians of the
    throughput and latency figures; a TOTAL's median is not the sum of the labels'."""
    if not parts:
        return {}
    labels = sorted(
        {label for p in parts for label in p["cpu_ms"]},
        key=lambda s: (s == "TOTAL", s.startswith("pg:"), s),
    )
    med = lambda xs: round(statistics.median(xs), 2)  # noqa: E731
    return {
        "cpu_ms": {lb: med([p["cpu_ms"].get(lb, 0.0) for p in parts]) for lb in labels},
        **{k: med([p[k] for p in parts]) for k in ("per_s", "p50_ms", "p99_ms", "ok")},
    }


def print_report(rounds: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n## medians of {len(rounds)} rounds  (concurrency {args.concurrency}, "
          f"{args.requests} POST /models per round, {args.sagas} sagas)")  # fmt: skip
    for r in rounds:
        print("load average (1/5/15 min) per measurement:", r["load_average"])
    posts, ref, sagas, gets = (
        median_of(rounds, k) for k in ("posts", "reference", "sagas", "status_get")
    )
    idle = {
        lb: round(statistics.median(r["idle_ms_per_s"].get(lb, 0.0) for r in rounds), 1)
        for lb in posts["cpu_ms"]
    }
    print("\n| process | CPU-ms per POST /models | CPU-ms per saga | CPU-ms per status GET "
          "| idle CPU-ms per s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for label in posts["cpu_ms"]:
        saga = sagas.get("cpu_ms", {}).get(label, "")
        get = gets.get("cpu_ms", {}).get(label, "")
        print(f"| {label} | {posts['cpu_ms'][label]} | {saga} | {get} | {idle[label]} |")
    if sagas:
        print(
            "\nCPU per saga: the saga's own (requests and approvals through the gateway, its "
            "states waited for in the databases); a client polling a status through the "
            "gateway adds the CPU per status GET for each poll."
        )
        windows = [r["sagas"].get("windows", []) for r in rounds if "sagas" in r]
        print(f"TOTAL per saga of each window, by round (each round's is their median): {windows}")
    client = [
        f"{statistics.median(r[k].get('client_cpu_ms', 0.0) for r in rounds if k in r):.2f} {what}"
        for k, what in (("posts", "per POST"), ("sagas", "per saga"))
        if any(k in r for r in rounds)
    ]
    print(
        "Not in the TOTAL: the bench's own database reads (waiting for the events to settle "
        f"and for the sagas' states), {', '.join(client)} CPU-ms."
    )
    print("\n| reference process | CPU-ms per POST |\n|---|---:|")
    for label, ms in ref["cpu_ms"].items():
        print(f"| {label} | {ms} |")
    print("\n| what | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|")
    for name, fig in (("platform, through the gateway", posts), ("reference", ref),
                      ("full sagas (whole saga)", sagas),
                      ("status GET through the gateway", gets)):  # fmt: skip
        if fig:
            print(f"| {name} | {fig['per_s']} | {fig['p50_ms']} | {fig['p99_ms']} |")
    for key, title in (("hops_idle", "idle (one POST at a time)"), ("hops_load", "under the load")):
        print(f"\n| event hop, {title} | p50 ms | p99 ms | events |\n|---|---:|---:|---:|")
        names = sorted({h for r in rounds for h in r[key]}, key=lambda s: s.strip())
        for h in names:
            p50 = statistics.median(r[key][h][0] for r in rounds if h in r[key])
            p99 = statistics.median(r[key][h][1] for r in rounds if h in r[key])
            count = sum(r[key][h][2] for r in rounds if h in r[key])
            print(f"| {h} | {p50:.1f} | {p99:.1f} | {count} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000, help="POST /models per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sagas", type=int, default=20, help="full sagas per round (0: none)")
    parser.add_argument(
        "--status-gets", type=int, default=400, help="status GETs after the sagas (0: none)"
    )
    parser.add_argument(
        "--saga-windows",
        type=int,
        default=3,
        help="saga measurements per round; the round's figures are their medians",
    )
    parser.add_argument(
        "--step-s",
        type=float,
        default=0.05,
        help="CORE_STEP_DURATION_S: how long a simulated training or extraction step sleeps "
        "(the platform's default 0.4); the work of a step is the same at any pace",
    )
    parser.add_argument("--idle-posts", type=int, default=20, help="spaced POSTs for idle hops")
    parser.add_argument("--idle-s", type=float, default=5.0, help="idle CPU sample per measure")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--base-port", type=int, default=30000)
    parser.add_argument("--data-dir", help="default: a new temp directory")
    parser.add_argument("--json", help="also write every round's figures here")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the platform (repeatable)"
    )
    args = parser.parse_args()
    args.env = [f"CORE_STEP_DURATION_S={args.step_s}", *args.env]  # an --env of it wins
    bench = Bench(args)
    rounds: list[dict[str, Any]] = []
    try:
        bench.start()
        print(
            f"platform up (data {bench.data_dir}); load average {procs.load_average()}", flush=True
        )
        warm = bench.run(
            load.post_models(bench.gateway, bench.user, args.warmup, args.concurrency, "w")
        )
        bench.run(hops.settle(bench.db_url, warm.ids))  # the idle sample must be idle
        bench.run(load.post_models(bench.reference, None, args.warmup, args.concurrency, "w"))
        for n in range(args.rounds):
            rounds.append(bench.round(n))
            figures = {k: rounds[-1].get(k) for k in ("posts", "reference", "sagas", "status_get")}
            print(f"round {n + 1}:", json.dumps(figures), flush=True)
    finally:
        bench.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=1, default=str))
    print_report(rounds, args)


if __name__ == "__main__":
    main()
