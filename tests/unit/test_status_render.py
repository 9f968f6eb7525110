"""``nocode status`` without a network: parsing a scrape, the verdict and the screen."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from nocode.services import SERVICE_NAMES
from nocode.status import (
    Metrics,
    ServiceStatus,
    Snapshot,
    Thresholds,
    parse_metrics,
    read_health,
    render,
    service_urls,
    to_json,
    verdict,
)

# One registry shared by every service, as in the in-process test platform: each
# service's /metrics shows every service's series.
SHARED_SCRAPE = """\
# HELP outbox_backlog_events Outbox events committed but not yet published
# TYPE outbox_backlog_events gauge
outbox_backlog_events{service="model"} 3.0
outbox_backlog_events{service="target"} 250.0
outbox_backlog_events{service="core"} 0.0
# HELP events_dead_lettered_total Events parked on the dead-letter topic
# TYPE events_dead_lettered_total counter
events_dead_lettered_total{group="notice",service="notice",topic="model.events"} 2.0
events_dead_lettered_total{group="notice",service="notice",topic="core.events"} 1.0
events_dead_lettered_total{group="model",service="model",topic="core.events"} 7.0
# HELP kafka_consumer_lag_messages Records not yet processed by the group
# TYPE kafka_consumer_lag_messages gauge
kafka_consumer_lag_messages{group="notice",partition="0",service="notice",topic="model.events"} 4.0
kafka_consumer_lag_messages{group="notice",partition="1",service="notice",topic="model.events"} 5.0
kafka_consumer_lag_messages{group="notice",partition="0",service="notice",topic="core.events"} 0.0
kafka_consumer_lag_messages{group="my",partition="0",service="mypage_cqrs",topic="model.events"} 1.0
# HELP circuit_breaker_open 1 while a circuit breaker is open
# TYPE circuit_breaker_open gauge
circuit_breaker_open{dependency="model",service="core"} 1.0
circuit_breaker_open{dependency="http://127.0.0.1:8083",service="gateway"} 1.0
circuit_breaker_open{dependency="http://127.0.0.1:8082",service="gateway"} 0.0
# HELP core_queue_depth Jobs queued, waiting for a worker
# TYPE core_queue_depth gauge
core_queue_depth 6.0
# HELP core_jobs_running Jobs running in this worker process
# TYPE core_jobs_running gauge
core_jobs_running 2.0
# HELP notice_messages_failed_total Notifications given up on after their last attempt
# TYPE notice_messages_failed_total counter
notice_messages_failed_total 1.0
"""

ALIASES = {"http://127.0.0.1:8083": "notice", "http://127.0.0.1:8082": "model"}


def test_each_service_sees_only_its_own_series_in_a_shared_scrape() -> None:
    notice = parse_metrics("notice", SHARED_SCRAPE, ALIASES)
    assert notice.backlog is None  # other services' backlogs are there, notice has none
    assert notice.dead_lettered == 3
    assert notice.lag == {"model.events": 9, "core.events": 0}  # partitions summed per topic
    assert notice.open_breakers == ()
    assert notice.failed_sends == 1
    assert (notice.queue_depth, notice.jobs_running) == (None, None)

    model = parse_metrics("model", SHARED_SCRAPE, ALIASES)
    assert (model.backlog, model.dead_lettered, model.lag) == (3, 7, None)
    assert model.failed_sends is None

    core = parse_metrics("core", SHARED_SCRAPE, ALIASES)
    assert (core.queue_depth, core.jobs_running, core.open_breakers) == (6, 2, ("model",))

    # The gateway's breakers name upstream URLs; the one that is open is shown by name.
    gateway = parse_metrics("gateway", SHARED_SCRAPE, ALIASES)
    assert gateway.open_breakers == ("notice",)
    assert (gateway.queue_depth, gateway.failed_sends) == (None, None)


def test_a_family_the_scrape_lacks_is_unknown_not_zero() -> None:
    scrape = "\n".join(
        line for line in SHARED_SCRAPE.splitlines() if "kafka_consumer_lag" not in line
    )
    notice = parse_metrics("notice", scrape)
    assert notice.lag is None
    assert parse_metrics("notice", "").dead_lettered is None
    snapshot = Snapshot((ServiceStatus("notice", "http://n", "ok", metrics=notice),))
    row = next(line for line in render(snapshot).splitlines() if line.startswith("notice"))
    assert row.split()[3] == "-"  # LAG


def test_a_scrape_straight_from_prometheus_client_parses() -> None:
    registry = CollectorRegistry()
    dead = Counter(
        "events_dead_lettered_total", "x", ["service", "group", "topic"], registry=registry
    )
    dead.labels("target", "target", "model.events").inc(2)
    lag = Gauge(
        "kafka_consumer_lag_messages",
        "x",
        ["service", "group", "topic", "partition"],
        registry=registry,
    )
    lag.labels("target", "target", "model.events", "2").set(11)
    Counter("notice_messages_failed_total", "x", registry=registry)
    text = generate_latest(registry).decode()

    target = parse_metrics("target", text)
    assert (target.dead_lettered, target.lag, target.backlog) == (2, {"model.events": 11}, None)
    assert parse_metrics("notice", text).failed_sends == 0
    # An exposed counter counts from 0; a gauge has no series for model until it is set.
    model = parse_metrics("model", text)
    assert (model.dead_lettered, model.lag) == (0, None)


def test_a_counter_without_any_series_yet_reads_zero() -> None:
    registry = CollectorRegistry()
    Counter("events_dead_lettered_total", "x", ["service", "group", "topic"], registry=registry)
    text = generate_latest(registry).decode()
    assert parse_metrics("model", text).dead_lettered == 0


def test_readiness_answers() -> None:
    assert read_health(200, b'{"status":"ok","database":"ok","broker":"ok"}') == ("ok", "")
    body = b'{"status":"unavailable","database":"ok","broker":"unreachable: KafkaConnectionError"}'
    assert read_health(503, body) == ("unready", "broker: unreachable: KafkaConnectionError")
    assert read_health(503, b'{"detail":"not ready"}') == ("unready", "not ready")  # gateway
    assert read_health(500, b"<html>oops</html>") == ("unready", "HTTP 500")


def healthy_platform() -> list[ServiceStatus]:
    quiet = Metrics(backlog=0, lag={"model.events": 0}, dead_lettered=0)
    rows = {n: ServiceStatus(n, f"http://h/{n}", "ok", metrics=quiet) for n in SERVICE_NAMES}
    rows["core"] = ServiceStatus("core", "http://h/core", "ok", metrics=Metrics(0, {}, 0, (), 4, 2))
    rows["notice"] = ServiceStatus(
        "notice", "http://h/notice", "ok", metrics=Metrics(0, {}, 0, failed_sends=0)
    )
    return list(rows.values())


def test_a_healthy_platform_fits_one_screen_and_says_healthy() -> None:
    snapshot = Snapshot(tuple(healthy_platform()), "2026-11-22T10:00:00+00:00")
    assert verdict(snapshot).healthy
    screen = render(snapshot)
    lines = screen.splitlines()
    assert lines[-1] == "healthy"
    assert all(len(line) <= 100 for line in lines)
    assert lines[2].split() == [
        "SERVICE", "HEALTH", "BACKLOG", "LAG", "DEAD-LETTERED", "QUEUED", "RUNNING",
        "SEND-FAILS", "OPEN", "BREAKERS",
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[3 : 3 + len(SERVICE_NAMES)]}
    assert list(rows) == list(SERVICE_NAMES)
    assert rows["core"] == ["core", "ok", "0", "0", "0", "4", "2", "-", "-"]
    assert rows["notice"][7] == "0"  # send failures: notice's column only
    assert rows["model"][5:8] == ["-", "-", "-"]


def test_each_problem_is_a_reason_and_the_verdict_is_degraded() -> None:
    services = healthy_platform()
    by_name = {s.name: i for i, s in enumerate(services)}
    services[by_name["notice"]] = ServiceStatus(
        "notice", "http://h/notice", "down", "connection refused"
    )
    services[by_name["model"]] = ServiceStatus(
        "model",
        "http://h/model",
        "unready",
        "broker: unreachable: KafkaConnectionError",
        Metrics(backlog=250, lag={"core.events": 1500, "target.events": 3}, dead_lettered=2),
    )
    services[by_name["gateway"]] = ServiceStatus(
        "gateway", "http://h/gateway", "ok", metrics=Metrics(open_breakers=("notice",))
    )
    services[by_name["target"]] = ServiceStatus(
        "target", "http://h/target", "ok", metrics_error="no answer within 2s"
    )
    snapshot = Snapshot(tuple(services), "now", Thresholds(backlog=100, lag=1000))

    assert verdict(snapshot).reasons == (
        "gateway circuit open to notice",
        "model not ready (broker: unreachable: KafkaConnectionError)",
        "model dead-lettered 2 events",
        "model outbox backlog 250 > 100",
        "model lag 1500 on core.events > 1000",
        "notice down (connection refused)",
        "target metrics unreadable (no answer within 2s)",
    )
    screen = render(snapshot)
    assert all(len(line) <= 100 for line in screen.splitlines())
    assert screen.splitlines()[-1].startswith("  ")  # the verdict wraps, indented
    assert "DEGRADED: gateway circuit open to notice; model not ready" in screen
    rows = {line.split()[0]: line.split() for line in screen.splitlines()[3:9]}
    assert rows["notice"][1] == "DOWN"
    assert rows["model"][1:5] == ["UNREADY", "250", "1503", "2"]
    assert rows["gateway"][-1] == "notice"
    assert "  notice down at http://h/notice: connection refused" in screen
    assert "  model lag by topic: core.events 1500, target.events 3" in screen
    assert "  target http://h/target/metrics: no answer within 2s" in screen


def test_a_long_breaker_list_is_cut_to_the_screen() -> None:
    deps = tuple(f"http://upstream-{i}.example.internal:80" for i in range(5))
    snapshot = Snapshot(
        (ServiceStatus("gateway", "http://g", "ok", metrics=Metrics(open_breakers=deps)),)
    )
    row = render(snapshot).splitlines()[3]
    assert len(row) == 100 and row.endswith("...")
    assert all(f"circuit open to {d}" in str(verdict(snapshot)) for d in deps)


def test_json_says_the_same() -> None:
    services = healthy_platform()
    services[1] = ServiceStatus("model", "http://h/model", "down", "connection refused")
    data = orjson.loads(orjson.dumps(to_json(Snapshot(tuple(services), "t"))))
    assert data["healthy"] is False
    assert data["reasons"] == ["model down (connection refused)"]
    assert data["verdict"] == "DEGRADED: model down (connection refused)"
    core = next(s for s in data["services"] if s["name"] == "core")
    assert core["metrics"]["queue_depth"] == 4 and core["health"] == "ok"


def test_urls_come_from_the_launchers_ports() -> None:
    urls = service_urls(env={"NOTICE_PORT": "9183"})
    assert urls["notice"] == "http://127.0.0.1:9183"
    assert urls["gateway"] == "http://127.0.0.1:8080"
    assert list(urls) == list(SERVICE_NAMES)
    assert service_urls("10.0.0.5", env={})["core"] == "http://10.0.0.5:8084"


def test_a_ready_service_with_the_broker_down_is_ok_but_makes_the_verdict_degraded() -> None:
    body = b'{"status":"degraded","database":"ok","broker":"unreachable: KafkaConnectionError"}'
    health, problem = read_health(200, body)
    assert (health, problem) == ("ok", "broker: unreachable: KafkaConnectionError")
    services = healthy_platform()
    services[1] = ServiceStatus(services[1].name, "http://h/m", health, problem, Metrics(0, {}, 0))
    snapshot = Snapshot(tuple(services), "now")
    name = services[1].name
    assert verdict(snapshot).reasons == (
        f"{name} degraded (broker: unreachable: KafkaConnectionError)",
    )
    screen = render(snapshot)
    row = next(line.split() for line in screen.splitlines() if line.startswith(name))
    assert row[1] == "ok"
    assert f"  {name} ready but degraded: broker: unreachable: KafkaConnectionError" in screen


def test_parked_dead_letters_degrade_and_redriven_ones_do_not() -> None:
    from nocode.status import Metrics, ServiceStatus, Snapshot, StalledSaga, verdict

    def of(metrics: Metrics, *stalls: StalledSaga) -> Snapshot:
        return Snapshot((ServiceStatus("core", "http://c", "ok", metrics=metrics),), stalls=stalls)

    assert verdict(of(Metrics(dead_lettered=3, parked=0))).healthy
    assert verdict(of(Metrics(dead_lettered=3, parked=2))).reasons == (
        "core has 2 dead letters (nocode dlq list)",
    )
    assert verdict(of(Metrics(dead_lettered=3))).reasons == ("core dead-lettered 3 events",)
    stalled = of(Metrics(), StalledSaga("model-1", "approved_no_job", 700.0, "kim"))
    assert verdict(stalled).reasons == ("1 saga stalled",)


def test_restarts_by_nocode_up_are_listed_without_changing_the_verdict() -> None:
    processes = {
        "core": {"pid": 12, "state": "running", "restarts": 2, "last_exit": "killed by SIGKILL"},
        "broker": {
            "pid": 13,
            "state": "restarting",
            "restarts": 1,
            "last_exit": "exited with code 1",
        },
        "model": {"pid": 14, "state": "running", "restarts": 0, "last_exit": None},
    }
    snapshot = Snapshot(tuple(healthy_platform()), "t", processes=processes)
    screen = " ".join(render(snapshot).split())
    assert (
        "restarts by nocode up: core 2 (last: killed by SIGKILL; now running), "
        "broker 1 (last: exited with code 1; now restarting)"
    ) in screen
    assert "model 0" not in screen and verdict(snapshot).healthy
    assert orjson.loads(orjson.dumps(to_json(snapshot)))["processes"] == processes
