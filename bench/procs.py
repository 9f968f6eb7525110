"""CPU time of every process of a running platform, read from ``/proc``.

A :class:`Snapshot` maps a process's label to its CPU ticks (utime + stime): the services
and the simulators by their ``nocode serve NAME`` command line, the broker, and the
PostgreSQL server: the postmaster (with the CPU of the children it has reaped, i.e. the
connections that closed), each backend under ``pg:DATABASE`` and the auxiliary processes
under ``pg:aux``. The difference of two snapshots is the CPU spent in between; a process
that appeared in between counts whole.

The bench's own database connections (waiting for events to settle, for a saga's states)
are a client's, not the platform's: :func:`client` opens one per database and purpose
and keeps it for the whole run, and its backend's CPU is labelled ``CLIENT``. Opening
a connection costs the server ~2 ms (a fork and the password exchange); when the bench
opened one per check, that landed in ``pg:postmaster+closed`` (a closed backend's
ticks, read before it closed, round to nothing at a tick of 10 ms).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
CLIENT = "pg:bench client"  # the bench's own connections: reported apart, in no TOTAL
_client_pids: set[int] = set()  # the backends of the bench's own connections
_clients: dict[tuple[str, str], Connection] = {}


class Connection(Protocol):
    def get_server_pid(self) -> int: ...
    def is_closed(self) -> bool: ...
    async def close(self) -> None: ...


async def client(url: str, purpose: str = "") -> Any:
    """The bench's connection to ``url`` for ``purpose`` (one per task that may run beside
    another), opened once and kept: its backend's CPU is ``CLIENT``'s. Open them before
    the measurements (their event loop is the bench's, kept for the run)."""
    conn = _clients.get((url, purpose))
    if conn is None or conn.is_closed():
        import asyncpg

        conn = _clients[(url, purpose)] = await asyncpg.connect(url)
        _client_pids.add(conn.get_server_pid())
    return conn


async def close_clients() -> None:
    for conn in _clients.values():
        await conn.close()
    _clients.clear()


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, own ticks, reaped children's ticks) of ``pid``; None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    # fields[0] is state; ppid is field 4 of stat, utime 14, stime 15, cutime 16, cstime 17
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for pid in _all_pids():
        stat = _stat(pid)
        if stat:
            children[stat[0]].append(pid)
    found, pending = set(), [root]
    while pending:
        pid = pending.pop()
        for child in children.get(pid, ()):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def label_of(pid: int) -> str | None:
    """What ``pid`` is, for the tables; None for what is not the platform's (shells, pg_ctl)."""
    argv = _cmdline(pid)
    text = " ".join(argv)
    if "serve" in argv and "nocode" in text:
        return argv[argv.index("serve") + 1]
    if "uvicorn" in text and "bench.reference" in text:
        return "reference"
    if "tansu" in text or "calfkit" in text:
        return "broker"
    if text.startswith("postgres: "):
        parts = argv[0].split()
        # "postgres: USER DATABASE HOST(PORT) STATE" for a backend, else an auxiliary process
        if len(parts) >= 4 and ("(" in parts[3] or parts[3] == "[local]"):
            return f"pg:{parts[2]}"
        return "pg:aux"
    return None


@dataclass
class Snapshot:
    ticks: dict[int, tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def take(cls, roots: list[int], postmaster: int | None) -> Snapshot:
        snap = cls()
        pids: set[int] = set()
        for root in roots:
            pids |= descendants(root) | {root}
        if postmaster:
            pids |= descendants(postmaster)
        for pid in pids:
            stat = _stat(pid)
            label = label_of(pid)
            if pid in _client_pids:
                label = CLIENT
            elif stat and label is None and "multiprocessing" in " ".join(_cmdline(pid)):
                label = label_of(stat[0])  # a service's worker process (WORKERS > 1)
            if stat and label:
                snap.ticks[pid] = (label, stat[1])
        if postmaster and (stat := _stat(postmaster)):
            snap.ticks[postmaster] = ("pg:postmaster+closed", stat[1] + stat[2])
        return snap

    def minus(self, before: Snapshot) -> dict[str, float]:
        """CPU-ms per label spent since ``before``."""
        spent: dict[str, float] = defaultdict(float)
        for pid, (label, ticks) in self.ticks.items():
            earlier = before.ticks.get(pid)
            spent[label] += (ticks - (earlier[1] if earlier else 0)) * TICK_MS
        return dict(spent)


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def client_cpu_us(op: Callable[[], Awaitable[object]], ops: int) -> float:
    """This process's CPU µs per call of ``op``, run ``ops`` times one after another after
    a warm-up of a tenth as many (pools filled, statements prepared, connections open)."""
    for _ in range(ops // 10):
        await op()
    started = time.process_time()
    for _ in range(ops):
        await op()
    return (time.process_time() - started) / ops * 1e6
