"""The outbox stores a transaction's records as one pack; relays publish packs and the
per-record rows of older releases, in order, with their headers, and delete both."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import event, func, insert, select
from tests.integration.test_kafka_path import _kafka, read_records

from batchplane.bus.kafka import ensure_topics, make_producer
from batchplane.bus.relay import OutboxRelay
from batchplane.core.settings import KafkaSettings
from batchplane.db import outbox
from batchplane.db.engine import Database
from batchplane.db.migrate import alembic_config, upgrade, upgrade_async
from batchplane.db.models import OutboxMessage, OutboxPack, table

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


async def _rows(database: Database) -> tuple[int, int]:
    """(packs, per-record rows) in the outbox."""
    async with database.transaction() as session:
        packs = (await session.execute(select(func.count()).select_from(OutboxPack))).scalar_one()
        single = (
            await session.execute(select(func.count()).select_from(OutboxMessage))
        ).scalar_one()
    return packs, single


async def test_a_transactions_records_are_one_row_that_older_relays_never_read(
    database: Database,
) -> None:
    marker = f"pack-{os.urandom(4).hex()}"
    records = [
        outbox.Record(marker, b"k1", b"first"),
        outbox.Record(marker, b"k1", b"second", {"traceparent": "own"}),
        outbox.Record(marker, b"k2", b"third"),
    ]
    packs_before, single_before = await _rows(database)
    async with database.transaction() as session:
        await outbox.add(session, records, now=NOW)

    # One new row, and none in the per-record table an older relay reads.
    assert await _rows(database) == (packs_before + 1, single_before)
    async with database.transaction() as session:
        queued = [r for r in await outbox.queued(session) if r.topic == marker]
    assert [(r.key, r.value, dict(r.headers)) for r in queued] == [
        (b"k1", b"first", {}),
        (b"k1", b"second", {"traceparent": "own"}),
        (b"k2", b"third", {}),
    ]  # keys that no batch id can match: other tests of this database read theirs by key


async def _read(kafka: KafkaSettings, count: int) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    """(key, value, headers) of the events topic's first `count` records."""
    records = await read_records(kafka, kafka.events_topic, count)
    return [(r.key or b"", r.value or b"", dict(r.headers)) for r in records]


async def test_the_relay_publishes_older_rows_then_packs_in_order_and_deletes_them(
    broker: str, own_postgres_url: str
) -> None:
    kafka = _kafka(broker)
    await ensure_topics(kafka)
    database = Database(own_postgres_url, verify_commits=True)  # as intake's
    producer = make_producer(kafka)
    await producer.start()
    topic = kafka.events_topic
    try:
        async with database.transaction() as session:
            # As a relay of the release before packs left them: one row per record.
            await session.execute(
                insert(table(OutboxMessage)),
                [
                    {
                        "topic": topic,
                        "key": b"k",
                        "value": b"old-1",
                        "headers": TRACE,
                        "created_at": NOW,
                    },
                    {
                        "topic": topic,
                        "key": b"k",
                        "value": b"old-2",
                        "headers": None,
                        "created_at": NOW,
                    },
                ],
            )
        for n in range(3):
            async with database.transaction() as session:
                await outbox.add(
                    session,
                    [outbox.Record(topic, b"k", f"pack{n}-{i}".encode(), TRACE) for i in range(2)],
                    now=NOW,
                )
        async with database.transaction() as session:
            assert await outbox.backlog(session) == 8
            assert await outbox.oldest(session) == NOW

        # Two packs per pass: the relay still publishes everything, in order.
        relay = OutboxRelay(database, producer, batch_size=2)
        statements: list[str] = []
        event.listen(
            database.engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, statement, *_: statements.append(statement),
        )
        assert await relay.drain() == 8
        # A pass redone after a lost commit answer is harmless: it is not verified.
        assert not [s for s in statements if "txid_current" in s]

        published = await _read(kafka, 8)
        # One key, so one partition: Kafka's order is the outbox's.
        expected = [b"old-1", b"old-2"] + [
            f"pack{n}-{i}".encode() for n in range(3) for i in (0, 1)
        ]
        assert [value for _, value, _ in published] == expected
        assert published[0][2] == {"traceparent": TRACE["traceparent"].encode()}
        assert published[1][2] == {}
        assert all(
            headers == {"traceparent": TRACE["traceparent"].encode()}
            for _, _, headers in published[2:]
        )
        assert await _rows(database) == (0, 0)
        async with database.transaction() as session:
            assert await outbox.backlog(session) == 0
            assert await outbox.oldest(session) is None
    finally:
        await producer.stop()
        await database.dispose()


async def test_the_schema_cannot_go_back_below_packs_while_packs_wait(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'downgrade.db'}"
    await upgrade_async(url)
    database = Database(url)
    try:
        async with database.transaction() as session:
            await outbox.add(session, [outbox.Record("t", b"k", b"v")], now=NOW)
        # An older release could not publish them: going back would lose them.
        with pytest.raises(RuntimeError, match="unpublished packs"):
            await asyncio.to_thread(command.downgrade, alembic_config(url), "0011")
        async with database.transaction() as session:
            await outbox.remove(session, await outbox.take(session, packs=10))
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0011")
        await asyncio.to_thread(upgrade, url)
    finally:
        await database.dispose()


async def test_commits_that_wake_the_relay_together_go_out_in_one_pass(
    broker: str, own_postgres_url: str
) -> None:
    kafka = _kafka(broker)
    await ensure_topics(kafka)
    database = Database(own_postgres_url)
    producer = make_producer(kafka)
    await producer.start()
    relay = OutboxRelay(database, producer, poll_interval_s=5.0, linger_s=0.5)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.2)  # its first pass found nothing; it waits for a wake-up
        for n in range(3):
            async with database.transaction() as session:
                await outbox.add(
                    session, [outbox.Record(kafka.events_topic, b"k", b"%d" % n)], now=NOW
                )
            relay.wake()
            await asyncio.sleep(0.1)  # a relay with no linger would have published it alone
        for _ in range(50):
            if relay.published == 3:
                break
            await asyncio.sleep(0.1)
        assert (relay.published, relay.passes) == (3, 1)
        assert [v for _, v, _ in await _read(kafka, 3)] == [b"0", b"1", b"2"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
        await database.dispose()
