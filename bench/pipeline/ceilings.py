"""The raw ceilings, on the same broker, database and gateway as the pipeline.

* Kafka: aiokafka with the services' own client settings produces N records shaped like
  work items (keyed by batch id, 12 partitions), flushed in bulk, then one group
  consumer reads them all back.
* PostgreSQL: asyncpg inserts N rows shaped like `batch_items`, then updates each to a
  terminal outcome, in transactions of 500 rows on 4 connections at once.
* Envoy: the same HTTP client and body as the intake load, answered by a bench-only
  `direct_response` route through the same listener and filters.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]
import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from batchplane.api.work.v1 import work_pb2
from batchplane.bus.kafka import make_consumer, make_producer
from batchplane.core.settings import KafkaSettings

CHUNK = 500
CONNECTIONS = 4


@dataclass(frozen=True)
class Ceiling:
    """N records (rows) through a raw path: the write half, the read/update half, both."""

    records: int
    write_s: float
    read_s: float

    @property
    def per_s(self) -> float:
        """Records per second through both halves, one after the other."""
        return self.records / (self.write_s + self.read_s)

    @property
    def write_per_s(self) -> float:
        return self.records / self.write_s

    @property
    def read_per_s(self) -> float:
        return self.records / self.read_s


async def kafka_ceiling(bootstrap: str, records: int, *, partitions: int = 12) -> Ceiling:
    topic = f"bench.ceiling.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap, session_timeout_ms=2000, heartbeat_interval_ms=500
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    producer = make_producer(kafka)
    await producer.start()
    try:
        started = time.perf_counter()
        for index in range(records):
            batch_id = 1 + index // 100
            value = work_pb2.WorkItem(batch_id=batch_id, item_index=index % 100, family="lookup")
            await producer.send(topic, value.SerializeToString(), key=str(batch_id).encode())
        await producer.flush()
        write_s = time.perf_counter() - started
    finally:
        await producer.stop()
    consumer = make_consumer(kafka, topic, group_id=f"bench-ceiling-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        # Joining the group is not reading: wait for the assignment before timing.
        while not consumer.assignment():  # noqa: ASYNC110 - aiokafka has no event for it
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        seen = 0
        while seen < records:
            fetched = await consumer.getmany(timeout_ms=500)
            for batch in fetched.values():
                for record in batch:
                    work_pb2.WorkItem.FromString(record.value)
                    seen += 1
            if fetched:
                await consumer.commit()
        read_s = time.perf_counter() - started
    finally:
        await consumer.stop()
    return Ceiling(records, write_s, read_s)


_RESULT = orjson.dumps({"technologies": [], "noop": True}).decode()


async def postgres_ceiling(database_url: str, rows: int) -> Ceiling:
    table = f"bench_ceiling_{uuid.uuid4().hex[:8]}"
    setup = await asyncpg.connect(database_url)
    try:
        await setup.execute(f"CREATE TABLE {table} (LIKE batch_items INCLUDING ALL)")
    finally:
        await setup.close()
    pool = await asyncpg.create_pool(database_url, min_size=CONNECTIONS, max_size=CONNECTIONS)
    assert pool is not None
    keys = [(1 + i // 100, i % 100) for i in range(rows)]
    chunks = [keys[i : i + CHUNK] for i in range(0, rows, CHUNK)]
    try:

        async def insert(chunk: list[tuple[int, int]]) -> None:
            async with pool.acquire() as connection, connection.transaction():
                await connection.executemany(
                    f"INSERT INTO {table} (batch_id, item_index, input, status) "  # noqa: S608
                    "VALUES ($1, $2, $3, 'queued')",
                    [(b, i, f"site{i}.test") for b, i in chunk],
                )

        async def update(chunk: list[tuple[int, int]]) -> None:
            async with pool.acquire() as connection, connection.transaction():
                await connection.executemany(
                    f"UPDATE {table} SET status = 'succeeded', result = $3::jsonb, "  # noqa: S608
                    "finished_at = now() WHERE batch_id = $1 AND item_index = $2 "
                    "AND status = 'queued'",
                    [(b, i, _RESULT) for b, i in chunk],
                )

        started = time.perf_counter()
        await _bounded(insert, chunks)
        write_s = time.perf_counter() - started
        started = time.perf_counter()
        await _bounded(update, chunks)
        read_s = time.perf_counter() - started
        async with pool.acquire() as connection:
            await connection.execute(f"DROP TABLE {table}")
    finally:
        await pool.close()
    return Ceiling(rows, write_s, read_s)


async def _bounded(
    work: Callable[[list[tuple[int, int]]], Awaitable[None]], chunks: list[list[tuple[int, int]]]
) -> None:
    queue = iter(chunks)

    async def worker() -> None:
        for chunk in queue:
            await work(chunk)

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
