"""``nocode status``: a one-screen answer to "is it healthy?" on a running platform.

Gathering (every service's ``/health/ready`` and ``/metrics``, concurrently, over httpx)
is separate from the pure parts (``parse_metrics``, ``verdict``, ``render``), which are
tested without a network. When services share a Prometheus registry (the in-process
test platform), each ``/metrics`` shows every service's series, so series are always
filtered by their ``service`` label, and core's and notice's unlabelled metrics are read
from their own scrape only.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from nocode.services import SERVICES

TIMEOUT_S = 2.0
WIDTH = 100


@dataclass(frozen=True)
class Thresholds:
    backlog: int = 100  # outbox events not yet published, per service
    lag: int = 1000  # records not yet processed, per service and topic


@dataclass(frozen=True)
class Metrics:
    """What one service's scrape says about that service; ``None``: not exposed there."""

    backlog: float | None = None
    lag: dict[str, float] | None = None  # topic -> records behind (groups, partitions summed)
    dead_lettered: float | None = None
    open_breakers: tuple[str, ...] = ()
    queue_depth: float | None = None  # core only
    jobs_running: float | None = None  # core only
    failed_sends: float | None = None  # notice only
    parked: float | None = None  # dead letters not re-driven yet (None: not exposed)
    republish_missing: float | None = None  # events a broker re-publish lacked (retention)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    url: str
    health: str  # ok | unready | down
    problem: str = ""  # why it is not ok: the failing check, or why it did not answer
    metrics: Metrics | None = None  # None: /metrics not read
    metrics_error: str = ""


@dataclass(frozen=True)
class Snapshot:
    services: tuple[ServiceStatus, ...]
    taken_at: str = ""
    thresholds: Thresholds = field(default_factory=Thresholds)
    stalls: tuple[StalledSaga, ...] = ()  # from mypage_cqrs (needs an admin token)
    stalls_error: str = ""  # why they could not be listed
    # nocode up's processes (placement file): name -> pid, state, restarts, last_exit
    processes: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


@dataclass(frozen=True)
class StalledSaga:
    id: str  # the view id: model-1, target-2
    reason: str  # approved_no_job, job_finished_no_outcome, target_not_moving, ...
    stalled_for_s: float
    user_id: str | None = None


@dataclass(frozen=True)
class Verdict:
    reasons: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return not self.reasons

    def __str__(self) -> str:
        return "healthy" if self.healthy else "DEGRADED: " + "; ".join(self.reasons)


# --- pure: parsing -----------------------------------------------------------------------


def read_health(status: int, body: bytes) -> tuple[str, str]:
    """``(health, problem)`` from a ``/health/ready`` answer. A ready service may still
    report a failing check it does not depend on (the broker): ``("ok", "broker: ...")``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if status == 200:
        if not isinstance(data, dict):
            return "ok", ""
        failing = (f"{k}: {v}" for k, v in data.items() if k != "status" and v != "ok")
        return "ok", "; ".join(failing)
    failing = []
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "detail":
                failing.append(str(value))
            elif key != "status" and value != "ok":
                failing.append(f"{key}: {value}")
    return "unready", "; ".join(failing) or f"HTTP {status}"


def parse_metrics(service: str, text: str, aliases: Mapping[str, str] | None = None) -> Metrics:
    """This service's numbers from an exposition text; ``aliases`` names breaker
    dependencies (the gateway's are upstream URLs)."""
    families = list(text_string_to_metric_families(text))
    exposed = {f.name for f in families}  # a counter's family is named without "_total"
    samples = [s for f in families for s in f.samples]

    def own(name: str) -> list[Sample]:
        return [s for s in samples if s.name == name and s.labels.get("service") == service]

    def unlabelled(name: str, only_on: str) -> float | None:
        values = [s.value for s in samples if s.name == name]
        return sum(values) if service == only_on and values else None

    # A gauge's series appear once set: none of this service's means it has no outbox (or
    # has consumed nothing yet). An exposed counter family reads 0 until it counts.
    backlog = own("outbox_backlog_events")
    lag: dict[str, float] = {}
    for s in own("kafka_consumer_lag_messages"):
        topic = s.labels.get("topic", "?")
        lag[topic] = lag.get(topic, 0.0) + s.value
    dead = own("events_dead_lettered_total")
    counting = dead or "events_dead_lettered" in exposed
    breakers = {
        (aliases or {}).get(dep, dep)
        for s in own("circuit_breaker_open")
        if s.value >= 1 and (dep := s.labels.get("dependency", "?"))
    }
    missing = own("outbox_republish_missing_events")
    return Metrics(
        republish_missing=sum(s.value for s in missing) if missing else None,
        backlog=sum(s.value for s in backlog) if backlog else None,
        lag=lag or None,
        dead_lettered=sum(s.value for s in dead) if counting else None,
        open_breakers=tuple(sorted(breakers)),
        queue_depth=unlabelled("core_queue_depth", "core"),
        jobs_running=unlabelled("core_jobs_running", "core"),
        failed_sends=unlabelled("notice_messages_failed_total", "notice"),
        parked=sum(s.value for s in parked) if (parked := own("dead_letters_parked")) else None,
    )


# --- pure: verdict and rendering -----------------------------------------------------------


def verdict(snapshot: Snapshot) -> Verdict:
    reasons: list[str] = []
    limits = snapshot.thresholds
    for s in snapshot.services:
        if s.health == "down":
            reasons.append(f"{s.name} down ({s.problem})")
            continue
        if s.health != "ok":
            reasons.append(f"{s.name} not ready ({s.problem})")
        elif s.problem:
            reasons.append(f"{s.name} degraded ({s.problem})")
        if s.metrics is None:
            reasons.append(f"{s.name} metrics unreadable ({s.metrics_error})")
            continue
        m = s.metrics
        reasons.extend(f"{s.name} circuit open to {dep}" for dep in m.open_breakers)
        if m.parked is not None:  # re-driven ones are no reason to worry any more
            if m.parked:
                reasons.append(f"{s.name} has {_num(m.parked)} dead letters (nocode dlq list)")
        elif m.dead_lettered:
            reasons.append(f"{s.name} dead-lettered {_num(m.dead_lettered)} events")
        if m.republish_missing:
            reasons.append(
                f"{s.name} outbox re-publish incomplete: {_num(m.republish_missing)} events "
                "pruned by OUTBOX_RETENTION_HOURS never reached the new broker"
            )
        if m.backlog is not None and m.backlog > limits.backlog:
            reasons.append(f"{s.name} outbox backlog {_num(m.backlog)} > {limits.backlog}")
        for topic, behind in sorted((m.lag or {}).items()):
            if behind > limits.lag:
                reasons.append(f"{s.name} lag {_num(behind)} on {topic} > {limits.lag}")
    if snapshot.stalls:
        n = len(snapshot.stalls)
        reasons.append(f"{n} saga{'s' if n != 1 else ''} stalled")
    return Verdict(tuple(reasons))


# (header, width); the last column takes what is left of WIDTH.
COLUMNS = (
    ("SERVICE", 12),
    ("HEALTH", 8),
    ("BACKLOG", 8),
    ("LAG", 7),
    ("DEAD-LETTERED", 14),
    ("QUEUED", 7),
    ("RUNNING", 8),
    ("SEND-FAILS", 11),
    ("OPEN BREAKERS", 0),
)


def render(snapshot: Snapshot) -> str:
    """The screen: one row per service, the details worth a line, then the verdict."""
    lines = [f"nocode status  {snapshot.taken_at}".rstrip(), "", _row(h for h, _ in COLUMNS)]
    details: list[str] = []
    for s in snapshot.services:
        m = s.metrics or Metrics()
        lag = None if m.lag is None else sum(m.lag.values())
        health = s.health if s.health == "ok" else s.health.upper()
        cells = (s.name, health, m.backlog, lag, m.dead_lettered, m.queue_depth)
        cells += (m.jobs_running, m.failed_sends, ", ".join(m.open_breakers) or "-")
        lines.append(_row(_cell(c) for c in cells))
        if s.health != "ok":
            details.append(f"{s.name} {s.health} at {s.url}: {s.problem}")
        elif s.problem:
            details.append(f"{s.name} ready but degraded: {s.problem}")
        elif s.metrics is None:
            details.append(f"{s.name} {s.url}/metrics: {s.metrics_error}")
        if m.lag and any(m.lag.values()):
            behind = ", ".join(f"{t} {_num(n)}" for t, n in sorted(m.lag.items()) if n)
            details.append(f"{s.name} lag by topic: {behind}")
    for stall in snapshot.stalls:
        who = f" (user {stall.user_id})" if stall.user_id else ""
        details.append(
            f"stalled: {stall.id} {stall.reason} for {_num(round(stall.stalled_for_s))}s{who}"
        )
    if snapshot.stalls_error:
        details.append(f"stalled sagas not listed: {snapshot.stalls_error}")
    if restarted := restarts(snapshot):
        details.append(f"restarts by nocode up: {restarted}")
    if details:
        lines += ["", *(_wrap(d, "  ", "    ") for d in details)]
    lines += ["", _wrap(str(verdict(snapshot)), "", "  ")]
    return "\n".join(lines)


def restarts(snapshot: Snapshot) -> str:
    """``core 1 (last: killed by SIGKILL), broker 2 (...)``; empty when nothing restarted."""
    return ", ".join(
        f"{name} {p.get('restarts')} (last: {p.get('last_exit')}; now {p.get('state')})"
        for name, p in snapshot.processes.items()
        if p.get("restarts")
    )


def to_json(snapshot: Snapshot) -> dict[str, object]:
    v = verdict(snapshot)
    return {
        "taken_at": snapshot.taken_at,
        "healthy": v.healthy,
        "verdict": str(v),
        "reasons": list(v.reasons),
        "thresholds": asdict(snapshot.thresholds),
        "services": [asdict(s) for s in snapshot.services],
        "processes": dict(snapshot.processes),
    }


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return _num(value) if isinstance(value, float | int) else str(value)


def _row(cells: object) -> str:
    out = ""
    for (_, width), cell in zip(COLUMNS, cells, strict=True):
        text = str(cell)
        room = width - 1 if width else WIDTH - len(out)
        if len(text) > room:
            text = text[: max(room - 3, 0)] + "..."
        out += text.ljust(width) if width else text
    return out.rstrip()


def _wrap(text: str, first: str, rest: str) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=first, subsequent_indent=rest)


# --- gathering -----------------------------------------------------------------------------


def service_urls(host: str = "127.0.0.1", env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each service's base URL, with the launcher's ports: ``NAME_PORT``, else the default."""
    from nocode.launcher import Platform

    platform = Platform(env=dict(os.environ if env is None else env))
    return {spec.name: f"http://{host}:{platform.port(spec)}" for spec in SERVICES}


async def gather(
    urls: Mapping[str, str],
    thresholds: Thresholds | None = None,
    timeout_s: float = TIMEOUT_S,
    stall_token: str | None = None,
) -> Snapshot:
    """Ask every service at once; a service that does not answer is ``down``. With an
    admin token, mypage_cqrs also lists the stalled sagas."""
    aliases = {url: name for name, url in urls.items()}
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        statuses = await asyncio.gather(
            *(_probe(client, name, url, aliases, timeout_s) for name, url in urls.items())
        )
        stalls, stalls_error = await _stalls(client, urls.get("mypage_cqrs"), stall_token)
    taken_at = datetime.now(UTC).isoformat(timespec="seconds")
    return Snapshot(tuple(statuses), taken_at, thresholds or Thresholds(), stalls, stalls_error)


async def _stalls(
    client: httpx.AsyncClient, url: str | None, token: str | None
) -> tuple[tuple[StalledSaga, ...], str]:
    if url is None or token is None:
        return (), ""
    try:
        response = await client.get(
            f"{url}/myRequests/ops/stalls", headers={"Authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        found = response.json()
        return tuple(
            StalledSaga(s["id"], s["reason"], s["stalledForS"], s.get("userId")) for s in found
        ), ""
    except Exception as exc:
        return (), _why(exc, TIMEOUT_S)


def stall_token(env: Mapping[str, str] | None = None) -> str | None:
    """An admin token to list stalled sagas: ``JWT_PRIVATE_KEY``, else the platform's local
    key if it exists (never created here)."""
    from nocode.keys import issuer
    from nocode.launcher import LauncherSettings

    env = dict(os.environ if env is None else env)
    data_dir = LauncherSettings().data_dir
    if not env.get("JWT_PRIVATE_KEY") and not (data_dir / "keys" / "jwt-ed25519.pem").exists():
        return None
    return issuer(data_dir, env).issue("nocode-status", ["admin"], ttl_s=60)


async def _probe(
    client: httpx.AsyncClient, name: str, url: str, aliases: Mapping[str, str], timeout_s: float
) -> ServiceStatus:
    ready, scrape = await asyncio.gather(
        client.get(f"{url}/health/ready"), client.get(f"{url}/metrics"), return_exceptions=True
    )
    if isinstance(ready, BaseException):
        return ServiceStatus(name, url, "down", _why(ready, timeout_s))
    health, problem = read_health(ready.status_code, ready.content)
    try:
        if isinstance(scrape, BaseException):
            raise scrape
        scrape.raise_for_status()
        metrics = parse_metrics(name, scrape.text, aliases)
    except Exception as exc:
        return ServiceStatus(name, url, health, problem, None, _why(exc, timeout_s))
    return ServiceStatus(name, url, health, problem, metrics)


def _why(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout_s:g}s"
    if isinstance(exc, httpx.ConnectError):
        # httpx says this when every address refused the connection.
        refused = str(exc) == "All connection attempts failed"
        return "connection refused" if refused else f"cannot connect: {exc}"
    return f"{type(exc).__name__}: {exc}"[:200]


def _supervised() -> dict[str, dict[str, object]]:
    """The running ``nocode up``'s processes and their restarts, if one runs here."""
    from nocode.placement import locate

    return locate().processes


def main(
    *,
    host: str = "127.0.0.1",
    as_json: bool = False,
    watch: float = 0.0,
    thresholds: Thresholds | None = None,
    urls: Mapping[str, str] | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """What ``nocode status`` does; returns the exit code (0 healthy, 1 degraded)."""
    urls = urls or service_urls(host)
    token = stall_token()
    code = 1
    try:
        while True:
            snapshot = asyncio.run(gather(urls, thresholds, stall_token=token))
            snapshot = replace(snapshot, processes=_supervised())
            code = 0 if verdict(snapshot).healthy else 1
            if as_json:
                option = 0 if watch else orjson.OPT_INDENT_2
                out(orjson.dumps(to_json(snapshot), option=option).decode())
            else:
                out(("\x1b[H\x1b[2J" if watch else "") + render(snapshot))
            if not watch:
                return code
            time.sleep(watch)
    except KeyboardInterrupt:
        return code
