"""A slow chunk does not stall the processor, and offsets are still committed in order
(real broker, real PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession
from tests.integration.conftest import PRO, make_caller
from tests.integration.test_kafka_path import _kafka

from batchplane.bus.kafka import ensure_topics, make_producer
from batchplane.bus.relay import OutboxRelay
from batchplane.core.clock import SystemClock
from batchplane.core.settings import KafkaSettings, LookupSettings
from batchplane.db import batches
from batchplane.db.batches import Outcome, PendingItem
from batchplane.db.engine import Database
from batchplane.intake.lookups import LookupIntake, LookupRequest
from batchplane.processor.consumer import WorkConsumer
from batchplane.processor.pipeline import ItemPipeline


class HoldFirstBatch:
    """Blocks the items of one batch until released; answers the others at once."""

    family = "lookup"
    claims_each_item = False

    def __init__(self, held_batch: int) -> None:
        self.held_batch = held_batch
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        if any(i.batch_id == self.held_batch for i in items):
            self.holding.set()
            await self.release.wait()
        return [Outcome(i.batch_id, i.item_index, True, result={}) for i in items]

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        return None


async def _status(database: Database, batch_id: int, org_id: str) -> str:
    async with database.transaction() as session:
        batch = await batches.get_batch(session, batch_id=batch_id, org_id=org_id)
    assert batch is not None
    return batch.status


async def _committed(kafka: KafkaSettings) -> int:
    """Offsets the group committed on the work topic, summed over partitions.

    A manually assigned consumer reads them without joining (and so without
    disturbing) the group.
    """
    reader = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=kafka.processor_group,
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        partitions = reader.partitions_for_topic(kafka.work_topic) or set()
        reader.assign([TopicPartition(kafka.work_topic, p) for p in partitions])
        offsets = [await reader.committed(tp) for tp in reader.assignment()]
    finally:
        await reader.stop()
    return sum(offset or 0 for offset in offsets)


async def test_a_held_chunk_lets_later_ones_finish_but_not_commit(
    broker: str, own_postgres_url: str
) -> None:
    kafka = _kafka(broker)
    await ensure_topics(kafka)
    database = Database(own_postgres_url)
    producer = make_producer(kafka)
    await producer.start()
    intake = LookupIntake(database, lookup=LookupSettings(), kafka=kafka, clock=SystemClock())
    relay = OutboxRelay(database, producer)
    task: asyncio.Task[None] | None = None
    try:
        caller = await make_caller(database, credits=10)
        slow = await intake.submit(caller, PRO, LookupRequest(["slow.com"], False, 0, None))
        handler = HoldFirstBatch(slow.id)
        pipeline = ItemPipeline(database, [handler], kafka=kafka, clock=SystemClock())
        ready = asyncio.Event()
        ready.set()
        task = asyncio.create_task(WorkConsumer(kafka, pipeline, producer, ready).run())
        await relay.publish_once()
        await asyncio.wait_for(handler.holding.wait(), 20)

        fast = await intake.submit(caller, PRO, LookupRequest(["fast.com"], False, 0, None))
        await relay.publish_once()
        for _ in range(100):
            if await _status(database, fast.id, caller.org_id) == "finished":
                break
            await asyncio.sleep(0.1)

        assert await _status(database, fast.id, caller.org_id) == "finished"
        assert await _status(database, slow.id, caller.org_id) == "processing"
        assert await _committed(kafka) == 0

        handler.release.set()
        for _ in range(100):
            if await _committed(kafka) == 2:
                break
            await asyncio.sleep(0.1)
        assert await _status(database, slow.id, caller.org_id) == "finished"
        assert await _committed(kafka) == 2
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
        await database.dispose()
