"""The Celery peer's app and task: what a Python team would write for the same items.

The worker runs `celery -A bench.pipeline.celery_app worker --pool=prefork
--concurrency=<cores>`: prefork is Celery's default pool and the usual choice (task code
is synchronous, and processes side-step the GIL), one process per core. Each pool process
keeps one psycopg connection (autocommit), opened when the process starts. The task runs
the same no-op handler as `BATCHPLANE_PROCESSOR_NOOP_FAMILIES` and writes the same
outcome row: the item's status, result and finish time, only if it is still queued.
Results are ignored (no result backend), as a fire-and-forget batch job would.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import psycopg
from celery import Celery  # type: ignore[import-untyped]
from celery.signals import worker_process_init  # type: ignore[import-untyped]
from psycopg import sql

from batchplane.processor.handlers.noop import NOOP_RESULT

app = Celery("bench", broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/3"))
app.conf.update(
    task_default_queue=os.environ.get("BENCH_CELERY_QUEUE", "bench"),
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

_UPDATE = sql.SQL(
    "UPDATE {table} SET status = 'succeeded', result = %s::jsonb, finished_at = now() "
    "WHERE batch_id = %s AND item_index = %s AND status = 'queued'"
)
_connection: psycopg.Connection[Any] | None = None


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _connect(**_: Any) -> None:
    global _connection
    _connection = psycopg.connect(os.environ["BENCH_CELERY_DATABASE"], autocommit=True)


def _database() -> psycopg.Connection[Any]:
    global _connection
    if _connection is None:
        _connection = psycopg.connect(os.environ["BENCH_CELERY_DATABASE"], autocommit=True)
    return _connection


@app.task(name="bench.lookup_item")  # type: ignore[untyped-decorator]
def lookup_item(table: str, batch_id: int, item_index: int, domain: str) -> None:
    """One item: the no-op handler's outcome, written to its row."""
    del domain  # the no-op handler does not look at it, as in the processor
    result = orjson.dumps(NOOP_RESULT).decode()
    query = _UPDATE.format(table=sql.Identifier(table))
    _database().execute(query, (result, batch_id, item_index))


@app.task(name="bench.lookup_items")  # type: ignore[untyped-decorator]
def lookup_items(table: str, items: list[tuple[int, int, str]]) -> None:
    """A hand-written batch task: every item's outcome, written in one transaction."""
    result = orjson.dumps(NOOP_RESULT).decode()
    query = _UPDATE.format(table=sql.Identifier(table))
    connection = _database()
    with connection.transaction(), connection.cursor() as cursor:
        cursor.executemany(query, [(result, batch_id, index) for batch_id, index, _ in items])
