"""Where the platform is: one ``nocode up`` per data directory, and its placement file.

``nocode up`` holds an exclusive lock on ``<data dir>/platform.lock`` for its whole
life and keeps ``<data dir>/platform.json`` up to date: its pid, every port, the
bootstrap servers, the database URLs (without passwords), and each process's pid
and restarts. A second ``up`` on the same data directory finds the lock held and
refuses before it touches anything. Every other command asks :func:`locate`, which
answers from that file while a platform runs there, else by the same environment
and port rules ``up`` uses (so moved ports are found either way).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

LOCK_FILE = "platform.lock"
PLACEMENT_FILE = "platform.json"


class PlatformLock:
    """The data directory's lock: held by the one ``nocode up`` running on it."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, wait_s: float = 1.0) -> bool:
        """Take the lock; ``False`` if another process holds it (after ``wait_s``, which
        lets a command that is only probing, see :func:`running`, let go)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def running(data_dir: Path) -> bool:
    """Whether a ``nocode up`` holds this data directory's lock now."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's shared lock, if it got one
    return False


def write(data_dir: Path, placement: Mapping[str, Any]) -> None:
    """Replace the placement file in one step: a reader sees the old or the new one."""
    path = data_dir / PLACEMENT_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(placement, indent=2, sort_keys=True))
    os.replace(tmp, path)


def read(data_dir: Path) -> dict[str, Any] | None:
    """The placement of the platform running on ``data_dir``; ``None`` when none runs."""
    if not running(data_dir):
        return None
    try:
        return json.loads((data_dir / PLACEMENT_FILE).read_text())
    except (OSError, ValueError):
        return None  # starting: the file is not written yet


def remove(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / PLACEMENT_FILE).unlink()


def stamp(placement: dict[str, Any], state: str) -> dict[str, Any]:
    """``placement`` with this process as the platform's owner."""
    return placement | {
        "pid": os.getpid(),
        "state": state,
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def leftovers(data_dir: Path) -> list[psutil.Process]:
    """Processes a killed ``nocode up`` on ``data_dir`` left running, from its stale
    placement file: each recorded pid still alive that is still the process it
    started (same start time). Call it holding the lock: they are the caller's now."""
    try:
        stale = json.loads((data_dir / PLACEMENT_FILE).read_text())
    except (OSError, ValueError):
        return []
    found = []
    for recorded in stale.get("processes", {}).values():
        try:
            proc = psutil.Process(int(recorded["pid"]))
            if abs(proc.create_time() - float(recorded.get("created", -1))) < 0.01:
                found.append(proc)
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue
    return found


def stop_leftovers(processes: list[psutil.Process], timeout_s: float = 10.0) -> None:
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout_s)


# --- refusing a second platform ----------------------------------------------------------


def busy_ports(ports: Mapping[str, int], host: str = "127.0.0.1") -> dict[str, int]:
    """The ports someone already listens on (bound the way servers bind them)."""
    busy = {}
    for name, port in ports.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                busy[name] = port
    return busy


def listener(port: int) -> str:
    """Who listens on ``port``: the process, and the ``nocode up`` it belongs to."""
    try:
        pids = {
            c.pid
            for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
        }
    except psutil.Error:
        return "a process this user cannot see"
    if not pids:
        return "an unknown process"
    return ", ".join(_describe(pid) for pid in sorted(pids))


def _describe(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
        nocode = [i for i, part in enumerate(cmdline) if part.endswith("nocode")]
        text = f"pid {pid} ({' '.join(cmdline[nocode[0] :]) if nocode else proc.name()})"
        for parent in proc.parents():
            if _is_up(parent.cmdline()):
                return f"{text} of nocode up pid {parent.pid}"
        return text
    except psutil.Error:
        return f"pid {pid}"


def _is_up(cmdline: list[str]) -> bool:
    return "up" in cmdline[-1:] and any("nocode" in part for part in cmdline)


def already_running(data_dir: Path, placement: Mapping[str, Any] | None) -> tuple[str, str]:
    """Why a second ``up`` on ``data_dir`` refuses, naming the running instance; and the hint."""
    other_dir = "or start another one with its own NOCODE_DATA_DIR and ports"
    if placement is None:
        message = f"a platform is already starting on data directory {data_dir}"
        return message, f"wait for it, {other_dir}"
    ports = ", ".join(f"{n} {p}" for n, p in placement.get("ports", {}).items())
    pid = placement.get("pid")
    return (
        f"a platform is already running on data directory {data_dir}: nocode up pid {pid} "
        f"({placement.get('state')}), ports: {ports}",
        f"stop it first (Ctrl-C in its terminal, or kill -TERM {pid}), {other_dir}",
    )


def port_variable(name: str) -> str:
    """The environment variable that moves ``name``'s port (a service, postgres, broker)."""
    variable = f"{name.upper()}_PORT"
    return f"NOCODE_{variable}" if name in ("postgres", "broker") else variable


def ports_in_use(busy: Mapping[str, int]) -> tuple[str, str]:
    """Which ports are taken and by whom; and the hint: the variables that move them."""
    holders = {name: listener(port) for name, port in busy.items()}
    ups = {h.rpartition(" of ")[2] for h in holders.values()}
    if len(busy) > 2 and len(ups) == 1 and next(iter(ups)).startswith("nocode up pid"):
        # All held by one other platform: name it once ("of nocode up pid N").
        ports = ", ".join(f"{name} port {port}" for name, port in busy.items())
        taken = f"{ports}: all held by processes of {next(iter(ups))}"
    else:
        taken = "; ".join(
            f"{name} port {busy[name]} held by {who}" for name, who in holders.items()
        )
    if len(busy) > 3:
        moves = "NAME_PORT, NOCODE_POSTGRES_PORT, NOCODE_BROKER_PORT"
    else:
        moves = " ".join(f"{port_variable(name)}=<another port>" for name in busy)
    return f"ports in use, not starting: {taken}", f"stop what holds them, or move them: {moves}"


# --- where is the platform ---------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """Where a platform's parts listen, as every ``nocode`` command needs them."""

    data_dir: Path
    services: dict[str, str]  # name -> base URL
    bootstrap_servers: str
    databases: dict[str, str]  # service -> SQLAlchemy URL
    pid: int | None = None  # the running ``nocode up``; None: found by the env rules
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The same places as the settings variables the services and commands read."""
        env = {f"{name.upper()}_PORT": url.rsplit(":", 1)[1] for name, url in self.services.items()}
        env |= {f"{name.upper()}_DATABASE_URL": url for name, url in self.databases.items()}
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap_servers
        if "gateway" in self.services:
            env["NOCODE_GATEWAY_URL"] = self.services["gateway"]
        return env


def locate(env: Mapping[str, str] | None = None) -> Location:
    """Where is the platform? The placement file of the one running on the data directory,
    else where ``nocode up`` would put it with this environment. Database URLs given in
    the environment win: only they carry passwords, which the file never holds."""
    from nocode.launcher import LauncherSettings, Platform

    env = dict(os.environ if env is None else env)
    data_dir = LauncherSettings(**_settings_env(env)).data_dir
    placed = read(data_dir)
    if placed is None:
        placed = Platform(LauncherSettings(**_settings_env(env)), env=env).placement()
    databases = {
        name: env.get(f"{name.upper()}_DATABASE_URL") or url
        for name, url in placed.get("databases", {}).items()
    }
    return Location(
        data_dir=data_dir,
        services=dict(placed.get("services", {})),
        bootstrap_servers=str(placed.get("bootstrap_servers", "")),
        databases=databases,
        pid=placed.get("pid"),
        processes=dict(placed.get("processes", {})),
    )


def _settings_env(env: Mapping[str, str]) -> dict[str, Any]:
    """LauncherSettings reads os.environ; give it ``env`` instead, by alias."""
    from nocode.launcher import LauncherSettings

    fields = LauncherSettings.model_fields
    aliases = {f.validation_alias: name for name, f in fields.items() if f.validation_alias}
    return {aliases[k]: v for k, v in env.items() if k in aliases}
