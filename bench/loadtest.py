"""The seed's siege run through the gateway, with pass/fail thresholds. Run on demand::

    make load                                   # or: .venv/bin/python -m bench.loadtest
    .venv/bin/python -m bench.loadtest --concurrency 20 --time 30S \
        --min-success 99.9 --max-p99-ms 2000
    .venv/bin/python -m bench.loadtest --gateway http://127.0.0.1:8080 --token "$(nocode token)"

It runs the seed's command, ``siege -c20 -t30S -v "<gateway>/models POST
userId=test&state=request&modelName=TestModel1"``, with a real token for the user ``test``
(``Authorization: Bearer``), against a running gateway (``--gateway``, ``--token``) or a
platform it starts as ``nocode up`` does (its own data directory and ports from
``--base-port``, the gateway's default rate limit left as it is). From siege's line per
request it takes the success rate (201s among every request, socket failures included) and
the p99 latency, prints them with siege's own summary, and exits 1 when the success rate is
below ``--min-success`` (percent), the p99 above ``--max-p99-ms``, or no request was
made; 2 when siege is not installed. Thresholds default from ``LOADTEST_MIN_SUCCESS`` and
``LOADTEST_MAX_P99_MS``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SEED_BODY = "userId={user}&state=request&modelName=TestModel1"
# siege -v: "HTTP/1.1 201     0.04 secs:     121 bytes ==> POST http://gateway:8080/models"
LINE = re.compile(r"^HTTP/\d(?:\.\d)?\s+(\d{3})\s+([\d.]+)\s+secs:", re.MULTILINE)
# siege's summary (it prints verbose lines only without json_output): "Failed transactions: 0"
SUMMARY = re.compile(r"^([A-Z][A-Za-z ]+):\s+([\d.]+)", re.MULTILINE)
SIEGERC = """\
verbose = true
color = off
quiet = false
json_output = false
show-logfile = false
logging = false
parser = false
delay = 0.0
"""


class Thresholds(BaseSettings):
    """What a passing run is: at least ``min_success`` % of requests answered 201, and a
    p99 latency of at most ``max_p99_ms``."""

    model_config = SettingsConfigDict(populate_by_name=True)

    min_success: float = Field(99.9, ge=0, le=100, validation_alias="LOADTEST_MIN_SUCCESS")
    max_p99_ms: float = Field(2000.0, gt=0, validation_alias="LOADTEST_MAX_P99_MS")


@dataclass
class SiegeRun:
    statuses: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    socket_failures: int = 0  # siege's failed_transactions: no HTTP answer at all
    summary: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.statuses) + self.socket_failures

    @property
    def success_rate(self) -> float:
        """Percent of requests answered 201 (0 when there were none)."""
        ok = sum(1 for s in self.statuses if s == 201)
        return 100.0 * ok / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]

    def by_status(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for s in self.statuses:
            counts[s] = counts.get(s, 0) + 1
        return dict(sorted(counts.items()))


def parse_siege(output: str) -> SiegeRun:
    """siege's verbose lines (status and seconds per request) and its summary."""
    run = SiegeRun()
    for status, secs in LINE.findall(output):
        run.statuses.append(int(status))
        run.latencies_ms.append(float(secs) * 1000)
    run.summary = {key.strip(): float(value) for key, value in SUMMARY.findall(output)}
    run.socket_failures = int(run.summary.get("Failed transactions", 0))
    return run


def verdict(run: SiegeRun, thresholds: Thresholds) -> list[str]:
    """Why the run fails its thresholds; empty when it passes."""
    if run.requests == 0:
        return ["siege made no request"]
    failures = []
    if run.success_rate < thresholds.min_success:
        failures.append(
            f"success rate {run.success_rate:.2f} % < {thresholds.min_success} % "
            f"(answers by status: {run.by_status()}, socket failures: {run.socket_failures})"
        )
    if run.p99_ms > thresholds.max_p99_ms:
        failures.append(f"p99 {run.p99_ms:.0f} ms > {thresholds.max_p99_ms:.0f} ms")
    return failures


def siege_command(
    gateway: str, token: str, user: str, concurrency: int, duration: str, rc: Path
) -> list[str]:
    """The seed's command line, with the token and our siegerc (no colours)."""
    url = f"{gateway.rstrip('/')}/models POST {SEED_BODY.format(user=user)}"
    return [
        "siege", f"--rc={rc}", f"-c{concurrency}", f"-t{duration}", "-v",
        f"--header=Authorization: Bearer {token}", url,
    ]  # fmt: skip


def run_siege(gateway: str, token: str, args: argparse.Namespace) -> SiegeRun:
    with tempfile.TemporaryDirectory(prefix="nocode-siege-") as tmp:
        rc = Path(tmp) / "siegerc"
        rc.write_text(SIEGERC)
        cmd = siege_command(gateway, token, args.user, args.concurrency, args.time, rc)
        shown = [
            c if not c.startswith("--header") else "--header=Authorization: Bearer …" for c in cmd
        ]
        print("$", " ".join(shown[:-1]), f'"{shown[-1]}"', flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return parse_siege(done.stdout + "\n" + done.stderr)


def main(argv: list[str] | None = None) -> int:
    defaults = Thresholds()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=20, help="siege -c (the seed's: 20)")
    parser.add_argument("--time", default="30S", help="siege -t, e.g. 30S, 2M")
    parser.add_argument("--user", default="test", help="the seed's userId, the token's subject")
    parser.add_argument("--min-success", type=float, default=defaults.min_success)
    parser.add_argument("--max-p99-ms", type=float, default=defaults.max_p99_ms)
    parser.add_argument("--gateway", help="a running gateway (default: start the platform)")
    parser.add_argument("--token", help="with --gateway: a token for --user")
    parser.add_argument(
        "--base-port", type=int, default=31000, help="the platform's ports (13 from it)"
    )
    parser.add_argument("--data-dir", help="the platform's (default: a new temp directory)")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the platform (repeatable)"
    )
    args = parser.parse_args(argv)
    thresholds = Thresholds(min_success=args.min_success, max_p99_ms=args.max_p99_ms)
    if shutil.which("siege") is None:
        print("siege is not installed (Debian: apt-get install siege; `make load` does)")
        return 2
    if args.gateway:
        if not args.token:
            parser.error("--gateway needs --token (e.g. $(nocode token --user test))")
        run = run_siege(args.gateway, args.token, args)
    else:
        run = run_on_a_new_platform(args)
    return report(run, thresholds)


def run_on_a_new_platform(args: argparse.Namespace) -> SiegeRun:
    from bench.platform import Bench

    bench_args = argparse.Namespace(
        base_port=args.base_port, data_dir=args.data_dir, env=args.env, idle_s=1.0
    )
    bench = Bench(bench_args, rate_limit_off=False)  # the gateway's default limit
    try:
        bench.start()
        token = bench.signer.issue(args.user, ["user"], 3600)
        return run_siege(bench.gateway, token, args)
    finally:
        bench.stop()


def report(run: SiegeRun, thresholds: Thresholds) -> int:
    print("siege's summary:", json.dumps(run.summary))
    print(
        f"requests {run.requests}, by status {run.by_status()}, socket failures "
        f"{run.socket_failures}; success {run.success_rate:.2f} % (threshold "
        f"{thresholds.min_success} %), p99 {run.p99_ms:.0f} ms (threshold "
        f"{thresholds.max_p99_ms:.0f} ms)"
    )
    failures = verdict(run, thresholds)
    for failure in failures:
        print("FAIL:", failure)
    if not failures:
        print("PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
