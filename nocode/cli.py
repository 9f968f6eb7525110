"""The ``nocode`` command line."""

from __future__ import annotations

import asyncio
import logging
import os
import runpy
import signal
from importlib import metadata
from types import FrameType

import typer

from nocode.errors import CliError, CommandGroup
from nocode.progress import Progress
from nocode.services import SERVICE_NAMES, SIMULATORS

app = typer.Typer(
    help="Nocode AI request platform.",
    no_args_is_help=True,
    add_completion=False,
    cls=CommandGroup,  # an error: one line and a hint (nocode.errors)
    pretty_exceptions_enable=False,  # --debug prints the plain traceback
)


def _print_version(wanted: bool) -> None:
    if wanted:
        try:
            typer.echo(f"nocode {metadata.version('nocode')}")
        except metadata.PackageNotFoundError:
            typer.echo("nocode (not installed: run `make install`)")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version"
    ),
    debug: bool = typer.Option(
        False, "--debug", envvar="NOCODE_DEBUG", help="on an error, print the traceback too"
    ),
) -> None:
    """Nocode AI request platform."""
    if not debug and ctx.invoked_subcommand != "serve":
        # aiokafka logs each failed connection; the command says it once, with a hint.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


@app.command()
def up(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines, only the banner"),
) -> None:
    """Start the whole platform in the foreground and keep it running (a process that
    exits is restarted); Ctrl-C or SIGTERM stops it. One platform per data directory."""
    from nocode import placement
    from nocode.banner import DEMO_USER, TOKEN_TTL_S, banner
    from nocode.keys import issuer
    from nocode.launcher import Platform

    platform = Platform()
    progress = Progress(None if quiet else typer.echo)
    data_dir = platform.settings.data_dir
    lock = placement.PlatformLock(data_dir)
    if not lock.acquire():
        raise CliError(*placement.already_running(data_dir, placement.read(data_dir)))
    # What a nocode up that was killed left running here is this lock holder's to stop.
    if left := placement.leftovers(data_dir):
        typer.echo(f"nocode: stopping what a killed nocode up left: pids {[p.pid for p in left]}")
        placement.stop_leftovers(left)
    if platform.embedded_databases and platform.postgres.running():
        platform.postgres.stop()
    if busy := placement.busy_ports(platform.ports()):
        lock.release()
        raise CliError(*placement.ports_in_use(busy))

    def record(state: str = "up") -> None:
        placement.write(data_dir, placement.stamp(platform.placement(), state))

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        record("starting")
        progress.say(f"starting (data in {data_dir})")
        platform.start_infrastructure(progress)
        platform.start_services()
        platform.wait_ready(progress)
        supervisor = platform.supervise(log=typer.echo, on_change=record)
        record()
        rows = platform.listing()
        local_admin = not platform.env.get("GATEWAY_ADMIN_PASSWORD")
        for line in banner(
            rows,
            gateway_url=dict(rows)["gateway"],
            token=issuer(data_dir).issue(DEMO_USER, ["user"], ttl_s=TOKEN_TTL_S),
            elapsed_s=progress.elapsed(),
            admin_password_file=data_dir / "admin-password" if local_admin else None,
        ):
            typer.echo(line)
        supervisor.run()
    except _Stop as stop:
        typer.echo(f"\nnocode: {stop}, stopping...")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        platform.stop()
        placement.remove(data_dir)
        lock.release()
        typer.echo("nocode: stopped.")


def _use_platform() -> None:
    """Point this command at the platform where ``nocode up`` placed it (moved ports
    included), through the same settings variables the services read."""
    from nocode.placement import locate

    os.environ.update(locate().env())


@app.command()
def serve(service: str = typer.Argument(..., help=f"one of {', '.join(SERVICE_NAMES)}")) -> None:
    """Run one service in the foreground (the entry point of its container)."""
    if service not in (*SERVICE_NAMES, SIMULATORS.name):
        raise typer.BadParameter(
            f"unknown service {service!r}; choose one of {', '.join(SERVICE_NAMES)}, simulators"
        )
    runpy.run_module(service, run_name="__main__", alter_sys=True)


@app.command()
def migrate() -> None:
    """Apply every service's migrations to its database (*_DATABASE_URL, or the embedded one)."""
    from nocode.launcher import Platform

    for name, done in Platform().migrate().items():
        typer.echo(f"{name}: {'migrated' if done else 'no migrations'}")


@app.command()
def demo() -> None:
    """Drive the seed's scenario through the gateway of a running platform (`nocode up`)."""
    from nocode.demo import run

    _use_platform()
    raise typer.Exit(0 if run() else 1)


@app.command()
def replay(
    view: str = typer.Argument(..., help="the read model to rebuild: mypage"),
    force: bool = typer.Option(
        False, "--force", help="swap in the rebuild even if it holds fewer requests than live"
    ),
) -> None:
    """Rebuild a read model from the start of the topics into a fresh table and swap it in."""
    if view != "mypage":
        raise typer.BadParameter(f"unknown view {view!r}; the only one is mypage")
    from mypage_cqrs.replay import ReplayIncomplete, ReplayInProgress, ReplayRefused, rebuild
    from mypage_cqrs.settings import MypageCqrsSettings
    from nocode.status import service_urls

    _use_platform()
    settings = MypageCqrsSettings()
    # The producers' counts: configured URLs, else where the local platform runs them.
    local = {n: u for n, u in service_urls().items() if n in ("model", "target", "core")}
    producers = local | settings.producer_urls()
    try:
        report = asyncio.run(rebuild(settings, producers=producers, force=force))
    except (ReplayInProgress, ReplayRefused, ReplayIncomplete) as exc:
        typer.echo(f"nocode: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(report.summary())
    for line in report.details():
        typer.echo(line)


@app.command()
def token(
    user: str = typer.Option(..., help="the token's subject (a username)"),
    role: list[str] = typer.Option(["user"], help="a role; repeat for several (admin, user)"),
    ttl: int = typer.Option(3600, help="seconds until it expires"),
) -> None:
    """Print a signed token for local use and scripts (JWT_PRIVATE_KEY, else the local key)."""
    from nocode.keys import issuer
    from nocode.launcher import LauncherSettings

    typer.echo(issuer(LauncherSettings().data_dir).issue(user, role, ttl_s=ttl))


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="print the snapshot as JSON"),
    watch: float = typer.Option(0.0, "--watch", metavar="N", help="refresh every N seconds"),
    host: str = typer.Option("127.0.0.1", help="where the services listen (ports: NAME_PORT)"),
    max_backlog: int = typer.Option(100, help="outbox backlog above this is degraded"),
    max_lag: int = typer.Option(1000, help="consumer lag on a topic above this is degraded"),
) -> None:
    """Is it healthy? Each service's readiness, outbox backlog, consumer lag, dead letters,
    core's queue and open circuit breakers, then a verdict; exit 1 when degraded."""
    from nocode.status import Thresholds, main

    _use_platform()
    thresholds = Thresholds(backlog=max_backlog, lag=max_lag)
    raise typer.Exit(
        main(host=host, as_json=as_json, watch=watch, thresholds=thresholds, out=typer.echo)
    )


events_app = typer.Typer(help="Look at the events on the topics.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("tail")
def events_tail(
    topic: str = typer.Argument(
        ..., help="e.g. model.events, target.events, core.events, core.dlt"
    ),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="from the first record"),
    max_records: int | None = typer.Option(None, "--max", metavar="N", help="stop after N"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per record"),
) -> None:
    """Print a topic's records as they arrive: key, partition, offset, headers, JSON value
    (KAFKA_BOOTSTRAP_SERVERS, else the local platform's broker). Ctrl-C stops."""
    from nocode.events import main

    raise typer.Exit(
        main(
            topic,
            from_beginning=from_beginning,
            max_records=max_records,
            as_json=as_json,
            echo=typer.echo,
        )
    )


dlq_app = typer.Typer(
    help="Dead letters and failed work (jobs, LMS sends, chat messages): list, re-drive.",
    no_args_is_help=True,
)
app.add_typer(dlq_app, name="dlq")

_SERVICE_OPT = typer.Option([], "--service", "-s", help="only this service; repeat for several")
_WHAT_OPT = typer.Option([], "--what", help="dead-letters or failed; repeat for both (default)")
_ID_OPT = typer.Option([], "--id", help="only this id; repeat for several")
_TYPE_OPT = typer.Option(None, "--type", help="dead letters whose event type contains this")
_KIND_OPT = typer.Option(None, "--kind", help="failed things of this kind (model, target, lms)")
_GATEWAY_OPT = typer.Option(None, "--gateway", help="the gateway's URL (default: the platform's)")


def _dlq(action: str, **options: object) -> None:
    from nocode.dlq import Filters, main
    from nocode.keys import issuer
    from nocode.launcher import LauncherSettings
    from nocode.status import service_urls

    _use_platform()
    gateway = options.pop("gateway") or service_urls()["gateway"]
    token = issuer(LauncherSettings().data_dir).issue("nocode-dlq", ["admin"], ttl_s=300)
    filters = Filters(tuple(options.pop("ids")), options.pop("event_type"), options.pop("kind"))
    raise typer.Exit(
        main(gateway_url=gateway, token=token, filters=filters, action=action, **options)
    )


@dlq_app.command("list")
def dlq_list(
    service: list[str] = _SERVICE_OPT,
    what: list[str] = _WHAT_OPT,
    id: list[int] = _ID_OPT,
    event_type: str | None = _TYPE_OPT,
    kind: str | None = _KIND_OPT,
    gateway: str | None = _GATEWAY_OPT,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Parked dead letters and failed jobs, LMS sends and chat messages."""
    _dlq(
        "list",
        services=service,
        what=what,
        ids=id,
        event_type=event_type,
        kind=kind,
        gateway=gateway,
        as_json=as_json,
        out=typer.echo,
    )


@dlq_app.command("redrive")
def dlq_redrive(
    service: list[str] = _SERVICE_OPT,
    what: list[str] = _WHAT_OPT,
    id: list[int] = _ID_OPT,
    event_type: str | None = _TYPE_OPT,
    kind: str | None = _KIND_OPT,
    gateway: str | None = _GATEWAY_OPT,
    yes: bool = typer.Option(False, "--yes", "--apply", help="act (without it: a dry run)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Try them again: a dry run that shows what would happen, unless --yes."""
    _dlq(
        "redrive",
        services=service,
        what=what,
        ids=id,
        event_type=event_type,
        kind=kind,
        gateway=gateway,
        apply=yes,
        as_json=as_json,
        out=typer.echo,
    )
