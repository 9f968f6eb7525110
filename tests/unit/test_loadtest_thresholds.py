"""The load test's reading of siege's output and its pass/fail decision (bench.loadtest)."""

from __future__ import annotations

import pytest

from bench.loadtest import Thresholds, parse_siege, siege_command, verdict

# siege 4.0.7's output with our siegerc: a verbose line per request, then the summary.
OUTPUT = """\
** SIEGE 4.0.7
** Preparing 20 concurrent users for battle.
The server is now under siege...
HTTP/1.1 201     0.04 secs:     121 bytes ==> POST http://127.0.0.1:8080/models
HTTP/1.1 201     0.12 secs:     121 bytes ==> POST http://127.0.0.1:8080/models
HTTP/1.1 429     0.00 secs:      52 bytes ==> POST http://127.0.0.1:8080/models
HTTP/1.1 201     1.50 secs:     121 bytes ==> POST http://127.0.0.1:8080/models

Lifting the server siege...
Transactions:\t\t           3 hits
Availability:\t\t       75.00 %
Elapsed time:\t\t        2.00 secs
Successful transactions:           3
Failed transactions:\t           1
Longest transaction:\t        1.50
"""


def test_siege_lines_give_statuses_latencies_and_socket_failures() -> None:
    run = parse_siege(OUTPUT)
    assert run.statuses == [201, 201, 429, 201]
    assert run.latencies_ms == pytest.approx([40.0, 120.0, 0.0, 1500.0])
    assert run.socket_failures == 1 and run.requests == 5
    assert run.success_rate == pytest.approx(60.0)  # 3 of 5: the 429 and the socket failure
    assert run.p99_ms == pytest.approx(1500.0)
    assert run.by_status() == {201: 3, 429: 1}
    assert run.summary["Availability"] == 75.0


def test_a_run_passes_only_within_both_thresholds() -> None:
    lines = "".join(
        f"HTTP/1.1 201     0.{n:02d} secs: 1 bytes ==> POST /models\n" for n in range(100)
    )
    run = parse_siege(lines + "Failed transactions:\t 0\n")
    assert run.p99_ms == pytest.approx(990.0) and run.success_rate == 100.0
    assert verdict(run, Thresholds(min_success=100, max_p99_ms=990)) == []
    assert verdict(run, Thresholds(min_success=100, max_p99_ms=989)) == ["p99 990 ms > 989 ms"]

    refused = parse_siege(lines + "HTTP/1.1 429     0.00 secs: 1 bytes ==> POST /models\n")
    failures = verdict(refused, Thresholds(min_success=99.9, max_p99_ms=5000))
    assert len(failures) == 1 and failures[0].startswith("success rate 99.01 % < 99.9 %")
    assert "{201: 100, 429: 1}" in failures[0]
    assert verdict(parse_siege(""), Thresholds()) == ["siege made no request"]


def test_thresholds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOADTEST_MIN_SUCCESS", "95")
    monkeypatch.setenv("LOADTEST_MAX_P99_MS", "750")
    assert (Thresholds().min_success, Thresholds().max_p99_ms) == (95.0, 750.0)


def test_the_seeds_command_with_a_token() -> None:
    cmd = siege_command("http://gw:8080/", "T0K", "test", 20, "30S", "/tmp/rc")  # type: ignore[arg-type]
    assert cmd[2:5] == ["-c20", "-t30S", "-v"]
    assert cmd[5] == "--header=Authorization: Bearer T0K"
    assert cmd[-1] == "http://gw:8080/models POST userId=test&state=request&modelName=TestModel1"
