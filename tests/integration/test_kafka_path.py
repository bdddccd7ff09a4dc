"""Outbox → relay → real Kafka-protocol broker → consumer group → pipeline, with a
poison record dead-lettered and offsets committed only after outcomes are stored."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession
from tests.integration.conftest import PRO, make_caller

from batchplane.bus.kafka import ensure_topics, make_producer
from batchplane.bus.relay import OutboxRelay
from batchplane.core.clock import SystemClock
from batchplane.core.settings import KafkaSettings, LookupSettings
from batchplane.db import batches, outbox
from batchplane.db.batches import Outcome, PendingItem
from batchplane.db.engine import Database
from batchplane.intake.lookups import LookupIntake, LookupRequest
from batchplane.processor.consumer import WorkConsumer
from batchplane.processor.pipeline import ItemPipeline


class SucceedAll:
    family = "lookup"
    claims_each_item = False

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        return [Outcome(i.batch_id, i.item_index, True, result={"ok": True}) for i in items]

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        return None


def _kafka(broker: str) -> KafkaSettings:
    suffix = os.urandom(4).hex()
    return KafkaSettings(
        bootstrap_servers=broker,
        work_topic=f"t.work.{suffix}",
        events_topic=f"t.events.{suffix}",
        dead_letter_topic=f"t.dlq.{suffix}",
        work_partitions=3,
        events_partitions=3,
        processor_group=f"t-group-{suffix}",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )


async def read_records(
    kafka: KafkaSettings, topic: str, count: int, timeout_s: float = 15
) -> list[ConsumerRecord[bytes, bytes]]:
    """The topic's first `count` records (fewer if they do not come within `timeout_s`)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(records) < count and loop.time() < deadline:
            chunk = await consumer.getmany(timeout_ms=200)
            records += [r for rs in chunk.values() for r in rs]
    finally:
        await consumer.stop()
    return records


async def test_batch_flows_from_outbox_through_the_broker_to_terminal(
    broker: str, own_postgres_url: str
) -> None:
    kafka = _kafka(broker)
    await ensure_topics(kafka)
    database = Database(own_postgres_url)
    producer = make_producer(kafka)
    await producer.start()
    try:
        caller = await make_caller(database, credits=10)
        intake = LookupIntake(database, lookup=LookupSettings(), kafka=kafka, clock=SystemClock())
        batch = await intake.submit(
            caller, PRO, LookupRequest(["a.com", "b.com", "c.com"], False, 0, None)
        )
        relay = OutboxRelay(database, producer)
        assert await relay.publish_once() == 2  # accepted event + one work record for 3 items
        await producer.send_and_wait(kafka.work_topic, b"\xff\x00 not protobuf", key=b"x")

        pipeline = ItemPipeline(database, [SucceedAll()], kafka=kafka, clock=SystemClock())
        ready = asyncio.Event()
        ready.set()
        consumer = WorkConsumer(kafka, pipeline, producer, ready)
        task = asyncio.create_task(consumer.run())
        try:
            for _ in range(150):
                async with database.transaction() as session:
                    stored = await batches.get_batch(
                        session, batch_id=batch.id, org_id=caller.org_id
                    )
                if stored is not None and stored.status == "finished" and consumer.dead_lettered:
                    break
                await asyncio.sleep(0.1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        assert stored is not None
        assert (stored.status, stored.success_count) == ("finished", 3)
        dead = await read_records(kafka, kafka.dead_letter_topic, 1)
        assert [r.value for r in dead] == [b"\xff\x00 not protobuf"]
        # The processor's events went through its outbox: started, 3 items, finished.
        assert await relay.publish_once() == 5
        async with database.transaction() as session:
            assert await outbox.backlog(session) == 0
        assert len(await read_records(kafka, kafka.events_topic, 6)) == 6

        # Offsets were committed: the group has nothing left to deliver.
        again = AIOKafkaConsumer(
            kafka.work_topic,
            bootstrap_servers=broker,
            group_id=kafka.processor_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
        )
        await again.start()
        try:
            leftover = await again.getmany(timeout_ms=3000)
        finally:
            await again.stop()
        assert sum(len(rs) for rs in leftover.values()) == 0
    finally:
        await producer.stop()
        await database.dispose()
