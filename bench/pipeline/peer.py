"""The Celery peer: the same no-op items through Celery and its Redis broker, in the forms
a Celery user would pick:

* a task per item (`delay` in a loop);
* a `group` of those tasks;
* `chunks` of 100: one message per 100 items, the worker calling the task once per item
  (each its own autocommit UPDATE);
* a hand-written batch task of 100 items that writes them in one transaction (timed on
  10x the items, or it would end in a fraction of a second).

Each form gets N fresh queued rows in a table shaped like `batch_items`, inserted before
the clock starts (Celery has no intake here: no HTTP, no auth, no billing), and is timed
from the first send to the last row's `finished_at`, so enqueueing counts.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from .procs import Child, children_of, cpu_seconds, rss_mb, spawn, stop

CHUNK_SIZE = 100
FORMS = (
    "task per item",
    "group",
    f"chunks of {CHUNK_SIZE}",
    f"batch task of {CHUNK_SIZE}, one transaction",
)
# The batch task gets 10x the items: with N it would end in a fraction of a second.
SCALE = {FORMS[3]: 10}


@dataclass(frozen=True)
class PeerRun:
    form: str
    items: int
    enqueue_s: float
    total_s: float
    worker_cpu_s: float

    @property
    def items_per_s(self) -> float:
        return self.items / self.total_s


@dataclass(frozen=True)
class PeerResult:
    pool: str
    concurrency: int
    runs: list[PeerRun]
    worker_rss_mb: float

    @property
    def best(self) -> PeerRun:
        return max(self.runs, key=lambda run: run.items_per_s)


def _celery_env(database_url: str, broker_url: str, queue: str) -> dict[str, str]:
    return {
        **os.environ,
        "BENCH_CELERY_DATABASE": database_url,
        "BENCH_CELERY_BROKER": broker_url,
        "BENCH_CELERY_QUEUE": queue,
    }


async def _table(database_url: str, items: int) -> str:
    """A table shaped like `batch_items` holding `items` queued rows."""
    table = f"bench_celery_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f"CREATE TABLE {table} (LIKE batch_items INCLUDING ALL)")
        await connection.copy_records_to_table(
            table,
            records=[(1 + i // 100, i % 100, f"site{i}.test", "queued") for i in range(items)],
            columns=["batch_id", "item_index", "input", "status"],
        )
    finally:
        await connection.close()
    return table


async def _wait_done(database_url: str, table: str, items: int, timeout_s: float) -> float:
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        query = f"SELECT count(*) FROM {table} WHERE status = 'succeeded'"  # noqa: S608
        while await connection.fetchval(query) < items:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Celery did not finish {items} items in {timeout_s}s")
            await asyncio.sleep(0.05)
        last = await connection.fetchval(
            f"SELECT extract(epoch FROM max(finished_at)) FROM {table}"  # noqa: S608
        )
        await connection.execute(f"DROP TABLE {table}")
        return float(last)
    finally:
        await connection.close()


def _senders(table: str, items: int) -> dict[str, Callable[[], None]]:
    from celery import group  # type: ignore[import-untyped]

    from .celery_app import lookup_item, lookup_items

    args = [(table, 1 + i // 100, i % 100, f"site{i}.test") for i in range(items)]

    def per_item() -> None:
        for arg in args:
            lookup_item.delay(*arg)

    def as_group() -> None:
        group(lookup_item.s(*arg) for arg in args).apply_async()

    def as_chunks() -> None:
        lookup_item.chunks(args, CHUNK_SIZE).apply_async()

    def as_batches() -> None:
        for start in range(0, items, CHUNK_SIZE):
            lookup_items.delay(table, [arg[1:] for arg in args[start : start + CHUNK_SIZE]])

    return dict(zip(FORMS, (per_item, as_group, as_chunks, as_batches), strict=True))


async def _one_form(database_url: str, worker: Child, form: str, items: int) -> PeerRun:
    table = await _table(database_url, items)
    send = _senders(table, items)[form]
    pids = [worker.pid, *children_of(worker.pid)]
    cpu_before = sum(cpu_seconds(p) for p in pids)
    started = time.time()
    await asyncio.to_thread(send)
    enqueued = time.time()
    last = await _wait_done(database_url, table, items, timeout_s=max(120.0, items / 20))
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    return PeerRun(form, items, enqueued - started, last - started, cpu)


async def run_peer(
    database_url: str, broker_url: str, items: int, log_dir: Path, *, concurrency: int
) -> PeerResult:
    """Start one prefork worker, warm it up, then time each form on fresh rows."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = _celery_env(database_url, broker_url, queue)
    os.environ.update(
        {k: env[k] for k in ("BENCH_CELERY_DATABASE", "BENCH_CELERY_BROKER", "BENCH_CELERY_QUEUE")}
    )
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.pipeline.celery_app",
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "-Q",
        queue,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=WARNING",
    ]
    worker = await spawn("celery-worker", command, env, log_dir)
    try:
        await _one_form(database_url, worker, FORMS[0], 200)  # warm-up: pool up, connections open
        runs = [
            await _one_form(database_url, worker, form, items * SCALE.get(form, 1))
            for form in FORMS
        ]
        rss = sum(rss_mb(p) for p in [worker.pid, *children_of(worker.pid)])
    finally:
        await stop(worker)
    return PeerResult("prefork", concurrency, runs, rss)
