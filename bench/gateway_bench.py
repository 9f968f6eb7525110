"""What the gateway costs: ``POST /models`` direct, through the gateway, through nginx.

Run on demand, never in CI::

    .venv/bin/python bench/gateway_bench.py                 # 3 rounds, 20 connections, 10 s
    .venv/bin/python bench/gateway_bench.py --rounds 5 --connections 50 --duration 15

It starts everything it needs on free loopback ports and stops it at the end: an embedded
PostgreSQL (databases ``model`` and ``gateway``, migrated), the embedded broker, the model
service and the gateway as processes (``nocode serve``, as their containers run them), and
nginx (found on PATH: ``apt-get install -y nginx``) as a foreground process with its own
minimal config in a temp dir, proxying to the model service over pooled keep-alive
connections. nginx runs one worker: the gateway is one process too.

Every request is a form post of the seed's (``userId=test&modelName=...``) with an admin
token minted here (a fresh Ed25519 key pair, given to the services as ``JWT_PUBLIC_KEYS``).
The load comes from ``wrk`` (``apt-get install -y wrk``) when it is on PATH, else from the
asyncio load generator below (aiohttp); one tool for all three targets, the same
connections and duration. Each round measures the three targets one after the other, after
a warm-up each, and prints throughput, p50/p99 latency, errors, and the ratios
gateway/direct and nginx/direct of that round; the medians over the rounds come last.
Anything but a 201 counts as an error.

``--upstream stub`` puts a minimal aiohttp app answering 201 (a canned body of the model's
size) in the model's place, and starts no database or broker: the proxies' own capacity,
with an upstream that costs next to nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from contracts.topics import ALL_TOPICS  # noqa: E402
from nocode.embedded_broker import EmbeddedBroker  # noqa: E402
from nocode.embedded_postgres import EmbeddedPostgres  # noqa: E402
from servicekit import migrations  # noqa: E402
from servicekit.auth import TokenIssuer, generate_keypair  # noqa: E402
from servicekit.kafka import ensure_topics, wait_for_broker  # noqa: E402

KEY_ID = "bench"
FORM = "application/x-www-form-urlencoded"
TARGETS = ("direct", "gateway", "nginx")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Result:
    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    """Responses other than 201, plus connection errors and timeouts."""
    requests: int


def measured(
    target: str, requests: int, duration_s: float, p50_ms: float, p99_ms: float, errors: int
) -> Result:
    return Result(
        target, requests / duration_s if duration_s else 0.0, p50_ms, p99_ms, errors, requests
    )


# --- what is measured ---------------------------------------------------------------


@contextmanager
def infrastructure(workdir: Path) -> Iterator[tuple[EmbeddedPostgres, EmbeddedBroker]]:
    postgres = EmbeddedPostgres(workdir / "postgres", free_port())
    broker = EmbeddedBroker(free_port(), log_file=workdir / "broker.log")
    postgres.start()
    try:
        broker.start()
        try:
            asyncio.run(_prepare(postgres, broker))
            for service in ("model", "gateway"):
                migrations.upgrade(service, postgres.url(service))
            yield postgres, broker
        finally:
            broker.stop()
    finally:
        postgres.stop()


async def _prepare(postgres: EmbeddedPostgres, broker: EmbeddedBroker) -> None:
    await postgres.create_databases(["model", "gateway"])
    await wait_for_broker(broker.bootstrap_servers)
    await ensure_topics(broker.bootstrap_servers, ALL_TOPICS, 3, 1)


@contextmanager
def service(name: str, port: int, env: dict[str, str], workdir: Path) -> Iterator[str]:
    """``nocode serve NAME`` on ``port`` until the block ends; yields its base URL."""
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "nocode", "serve", name],
        env={**os.environ, **env, f"{name.upper()}_PORT": str(port), "PYTHONUNBUFFERED": "1"},
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is None and ok(url + "/health/ready"), f"{name} ready")
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited; see {workdir / (name + '.log')}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


STUB_BODY = json.dumps(
    {
        "id": 1,
        "userId": "test",
        "modelName": "bench",
        "state": "requested",
        "reason": None,
        "progress": 0,
        "step": 0,
        "totalSteps": 5,
        "createdAt": "2026-11-22T00:00:00Z",
        "updatedAt": "2026-11-22T00:00:00Z",
    }
).encode()


def serve_stub(port: int) -> None:
    """The stub upstream (``--serve-stub PORT``): 201 to POST /models, 200 to health."""
    from aiohttp import web

    async def created(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=201, body=STUB_BODY, content_type="application/json")

    async def healthy(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/models", created)
    app.router.add_get("/health/{probe}", healthy)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


@contextmanager
def stub(workdir: Path) -> Iterator[str]:
    port = free_port()
    log = open(workdir / "stub.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-stub", str(port)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is None and ok(url + "/health/ready"), "stub ready")
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/nginx-access.log combined buffer=64k flush=1s;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream model {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


@contextmanager
def nginx(upstream_url: str, workdir: Path) -> Iterator[str]:
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if binary is None:
        raise SystemExit("nginx not found on PATH: apt-get install -y nginx")
    port = free_port()
    conf_dir = workdir / "nginx"
    conf_dir.mkdir()
    conf = conf_dir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user="user root;\n" if os.geteuid() == 0 else "",
            dir=conf_dir,
            upstream=upstream_url.removeprefix("http://"),
            port=port,
        )
    )
    process = subprocess.Popen(
        [binary, "-p", str(conf_dir), "-c", str(conf), "-e", str(conf_dir / "nginx-error.log")],
        stdout=subprocess.DEVNULL,
        stderr=open(conf_dir / "nginx-stderr.log", "wb"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is None and ok(url + "/health/live"), "nginx ready")
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited; see {conf_dir}")
        yield url
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful stop
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_until(condition: object, what: str, timeout_s: float = 60) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.1)


def check_post(url: str, token: str) -> None:
    """One request before the load: a 201, or the reason the benchmark cannot run."""
    request = urllib.request.Request(
        url + "/models",
        data=b"userId=test&modelName=bench-check",
        headers={"Content-Type": FORM, "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    if status != 201:
        raise SystemExit(f"POST {url}/models answered {status}: {body[:300]!r}")


# --- load generators ----------------------------------------------------------------

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "{form}"
wrk.headers["Authorization"] = "Bearer {token}"
local n = 0
request = function()
    n = n + 1
    return wrk.format(nil, "/models", nil, "userId=test&modelName=bench-" .. n)
end
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH {{"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}}\\n',
        summary.requests, summary.duration,
        e.connect + e.read + e.write + e.status + e.timeout,
        latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(
    target: str, url: str, token: str, connections: int, duration_s: float, workdir: Path
) -> Result:
    script = workdir / "post_models.lua"
    script.write_text(WRK_SCRIPT.format(form=FORM, token=token))
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH "))
    data = json.loads(line.removeprefix("BENCH "))
    return measured(
        target,
        data["requests"],
        data["duration_us"] / 1e6,
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        data["errors"],
    )


async def _aiohttp_load(
    target: str, url: str, token: str, connections: int, duration_s: float
) -> Result:
    import aiohttp

    headers = {"Content-Type": FORM, "Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    errors = 0
    counter = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:
        started = time.perf_counter()
        deadline = started + duration_s

        async def worker() -> None:
            nonlocal errors, counter
            while time.perf_counter() < deadline:
                counter += 1
                body = f"userId=test&modelName=bench-{counter}"
                sent = time.perf_counter()
                try:
                    async with session.post("/models", data=body) as response:
                        await response.read()
                        if response.status != 201:
                            errors += 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return measured(
        target, len(latencies), elapsed, quantiles[49] * 1000, quantiles[98] * 1000, errors
    )


def run_aiohttp(
    target: str, url: str, token: str, connections: int, duration_s: float, workdir: Path
) -> Result:
    return asyncio.run(_aiohttp_load(target, url, token, connections, duration_s))


# --- the run ------------------------------------------------------------------------


def print_round(results: dict[str, Result], title: str) -> None:
    print(f"\n{title}")
    print(f"  {'target':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'requests':>9}")
    for r in results.values():
        print(
            f"  {r.target:<8} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
            f"{r.errors:>7} {r.requests:>9}"
        )
    direct = results["direct"].rps
    if direct:
        print(
            f"  gateway/direct = {results['gateway'].rps / direct:.2f}   "
            f"nginx/direct = {results['nginx'].rps / direct:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", "-c", type=int, default=20)
    parser.add_argument("--duration", "-d", type=float, default=10.0, help="seconds per target")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per target, unmeasured")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tool", choices=("auto", "wrk", "aiohttp"), default="auto")
    parser.add_argument(
        "--log-level", default="INFO", help="LOG_LEVEL of the services (INFO is their default)"
    )
    parser.add_argument(
        "--upstream",
        choices=("model", "stub"),
        default="model",
        help="what the proxies front: the model service, or a stub that costs next to nothing",
    )
    parser.add_argument("--serve-stub", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stub:
        serve_stub(args.serve_stub)
        return

    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "aiohttp"
    elif tool == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk not found on PATH: apt-get install -y wrk")
    load = run_wrk if tool == "wrk" else run_aiohttp

    private_key, public_key = generate_keypair()
    token = TokenIssuer(private_key, KEY_ID, "nocode-gateway", "nocode", ttl_s=24 * 3600).issue(
        "bench-admin", ["admin"]
    )

    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        common = {
            "JWT_PUBLIC_KEYS": json.dumps({KEY_ID: public_key}),
            "LOG_LEVEL": args.log_level,
        }
        if args.upstream == "model":
            print(f"starting PostgreSQL, the broker, model, the gateway and nginx (in {workdir})")
            postgres, broker = stack.enter_context(infrastructure(workdir))
            common["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
            gateway_db = {"GATEWAY_DATABASE_URL": postgres.url("gateway")}
            model_url = stack.enter_context(
                service(
                    "model",
                    free_port(),
                    {**common, "MODEL_DATABASE_URL": postgres.url("model")},
                    workdir,
                )
            )
        else:
            print(f"starting the stub upstream, the gateway and nginx (in {workdir})")
            gateway_db = {"GATEWAY_DATABASE_URL": f"postgresql+asyncpg://127.0.0.1:{free_port()}/x"}
            model_url = stack.enter_context(stub(workdir))
        gateway_url = stack.enter_context(
            service(
                "gateway",
                free_port(),
                {
                    **common,
                    **gateway_db,
                    "GATEWAY_ROUTES": json.dumps({"/models": model_url}),
                    # One token makes every request: the limiter runs, and lets all through.
                    "GATEWAY_RATE_LIMIT_PER_S": "1000000000",
                    "GATEWAY_RATE_LIMIT_BURST": "1000000000",
                },
                workdir,
            )
        )
        nginx_url = stack.enter_context(nginx(model_url, workdir))
        urls = {"direct": model_url, "gateway": gateway_url, "nginx": nginx_url}
        for url in urls.values():
            check_post(url, token)

        print(
            f"load: {tool}, {args.connections} connections, {args.duration:g} s per target "
            f"after {args.warmup:g} s of warm-up, {args.rounds} rounds; "
            f"POST /models (form) to {args.upstream}, LOG_LEVEL={args.log_level}; "
            f"{os.cpu_count()} CPUs"
        )
        rounds: list[dict[str, Result]] = []
        for number in range(1, args.rounds + 1):
            results: dict[str, Result] = {}
            for target in TARGETS:
                if args.warmup > 0:
                    load(target, urls[target], token, args.connections, args.warmup, workdir)
                results[target] = load(
                    target, urls[target], token, args.connections, args.duration, workdir
                )
            rounds.append(results)
            print_round(results, f"round {number}")

        medians = {
            target: Result(
                target,
                statistics.median(r[target].rps for r in rounds),
                statistics.median(r[target].p50_ms for r in rounds),
                statistics.median(r[target].p99_ms for r in rounds),
                round(statistics.median(r[target].errors for r in rounds)),
                round(statistics.median(r[target].requests for r in rounds)),
            )
            for target in TARGETS
        }
        print_round(medians, f"median of {len(rounds)} rounds")
        for name in ("gateway", "nginx"):
            ratios = [r[name].rps / r["direct"].rps for r in rounds if r["direct"].rps]
            if ratios:
                listed = ", ".join(f"{x:.2f}" for x in ratios)
                print(
                    f"  {name}/direct per round: {listed} (median {statistics.median(ratios):.2f})"
                )
        print("stopping ...")


if __name__ == "__main__":
    main()
