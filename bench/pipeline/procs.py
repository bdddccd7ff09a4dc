"""Child processes of a run: started with their logs in files, dying with the bench,
and their resident memory read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the bench goes away."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None


async def spawn(name: str, command: list[str], env: Mapping[str, str], log_dir: Path) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once per process start
    with (log_dir / f"{name}.log").open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    return Child(name, process)


async def stop(child: Child, timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`."""
    if child.running:
        with contextlib.suppress(ProcessLookupError):
            child.process.terminate()
    try:
        await asyncio.wait_for(child.process.wait(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.process.kill()
        await child.process.wait()


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` in MB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU time `pid` has used, in seconds (0 when it is gone).

    With `reaped_children`, also that of its children that ended and were waited for:
    summed over a server's processes (PostgreSQL's postmaster and its backends), that
    total never goes down when a backend exits, as the sum of the live ones does.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # utime, stime, cutime and cstime are fields 14 to 17 of stat: 11 to 14 after the
    # command name.
    used = int(fields[11]) + int(fields[12])
    if reaped_children:
        used += int(fields[13]) + int(fields[14])
    return used / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """Every descendant of `pid` (a Celery worker's pool processes)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        path = Path(f"/proc/{parent}/task/{parent}/children")
        try:
            kids = [int(p) for p in path.read_text().split()]
        except OSError:
            kids = []
        found += kids
        queue += kids
    return found
