"""The processing pipeline on SQLite and PostgreSQL: exactly-once outcomes, counters,
refunds and events, whatever the redelivery."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from tests.integration.conftest import PRO, balance, make_caller

from batchplane.api.events.v1 import events_pb2
from batchplane.api.work.v1 import work_pb2
from batchplane.core.clock import SystemClock
from batchplane.core.errors import PaymentRequired
from batchplane.core.settings import KafkaSettings, LookupSettings
from batchplane.db import batches, billing, outbox
from batchplane.db.batches import Outcome, PendingItem
from batchplane.db.engine import Database
from batchplane.db.models import CreditEntry
from batchplane.intake.lookups import LookupIntake, LookupRequest
from batchplane.processor.pipeline import ItemPipeline

KAFKA = KafkaSettings(work_topic="w", events_topic="e")


class FailOddItems:
    """A family handler whose outcome depends only on the item index."""

    family = "lookup"
    claims_each_item = False

    def __init__(self) -> None:
        self.runs = 0
        self.persisted: list[Outcome] = []

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        self.runs += len(items)
        return [
            Outcome(
                i.batch_id,
                i.item_index,
                i.item_index % 2 == 0,
                None if i.item_index % 2 == 0 else "boom",
            )
            for i in items
        ]

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        self.persisted += outcomes


def _intake(database: Database) -> LookupIntake:
    return LookupIntake(database, lookup=LookupSettings(), kafka=KAFKA, clock=SystemClock())


async def _outbox(database: Database, batch_id: int) -> list[tuple[str, bytes]]:
    async with database.transaction() as session:
        queued = await outbox.queued(session)
    return [(r.topic, r.value) for r in queued if r.key == str(batch_id).encode()]


async def test_accepting_a_batch_charges_meters_and_queues_in_one_transaction(
    database: Database,
) -> None:
    caller = await make_caller(database, credits=10)
    batch = await _intake(database).submit(
        caller, PRO, LookupRequest(["a.com", "A.com", "b.com", "not a domain"], False, 1000, None)
    )

    assert batch.requested_count == 3
    assert await balance(database, caller.org_id) == 7
    records = await _outbox(database, batch.id)
    assert [topic for topic, _ in records] == ["e", "w"]
    event = events_pb2.Event.FromString(records[0][1])
    assert event.batch_accepted.item_count == 3
    # One work record for the run of items 0, 1 and 2.
    work = work_pb2.WorkItem.FromString(records[1][1])
    assert (work.batch_id, work.item_index, work.item_count) == (batch.id, 0, 3)
    async with database.transaction() as session:
        assert (
            await billing.usage(
                session, org_id=caller.org_id, month=billing.month_of(batch.created_at)
            )
            == 3
        )


async def test_payment_required_stores_nothing(database: Database) -> None:
    caller = await make_caller(database, credits=1)
    with pytest.raises(PaymentRequired):
        await _intake(database).submit(
            caller, PRO, LookupRequest(["a.com", "b.com"], False, 0, None)
        )
    assert await balance(database, caller.org_id) == 1
    async with database.transaction() as session:
        count = await session.scalar(
            select(func.count()).select_from(CreditEntry).where(CreditEntry.org_id == caller.org_id)
        )
    assert count == 1  # the top-up only


async def test_redelivered_items_are_recorded_and_refunded_exactly_once(database: Database) -> None:
    caller = await make_caller(database, credits=10)
    batch = await _intake(database).submit(
        caller, PRO, LookupRequest(["a.com", "b.com", "c.com", "d.com"], False, 0, None)
    )
    handler = FailOddItems()
    pipeline = ItemPipeline(database, [handler], kafka=KAFKA, clock=SystemClock())
    keys = [(batch.id, i) for i in range(4)]

    assert await pipeline.process(keys[:2]) == 2
    assert await pipeline.process(keys) == 2  # items 0 and 1 are already terminal
    assert await pipeline.process(keys) == 0

    assert handler.runs == 4
    assert len(handler.persisted) == 4
    async with database.transaction() as session:
        stored = await batches.get_batch(session, batch_id=batch.id, org_id=caller.org_id)
    assert stored is not None
    assert (stored.status, stored.processed_count, stored.success_count, stored.error_count) == (
        "finished", 4, 2, 2,
    )  # fmt: skip
    assert stored.started_at is not None
    assert stored.finished_at is not None
    assert await balance(database, caller.org_id) == 10 - 4 + 2
    events = [(t, v) for t, v in await _outbox(database, batch.id) if t == "e"]
    kinds = [events_pb2.Event.FromString(v).WhichOneof("kind") for t, v in events if t == "e"]
    assert kinds.count("item_completed") == 4
    assert kinds.count("batch_started") == 1
    assert kinds.count("batch_finished") == 1
    assert kinds[-1] == "batch_finished"
    finished = events_pb2.Event.FromString(events[-1][1]).batch_finished
    assert finished.credits_refunded == 2
    assert (finished.progress.succeeded, finished.progress.failed) == (2, 2)


async def test_concurrent_processors_never_double_count(database: Database) -> None:
    caller = await make_caller(database, credits=100)
    batch = await _intake(database).submit(
        caller, PRO, LookupRequest([f"d{i}.com" for i in range(20)], False, 0, None)
    )
    keys = [(batch.id, i) for i in range(20)]
    pipelines = [
        ItemPipeline(database, [FailOddItems()], kafka=KAFKA, clock=SystemClock()) for _ in range(4)
    ]

    recorded = await asyncio.gather(*(p.process(keys) for p in pipelines))

    assert sum(recorded) == 20
    async with database.transaction() as session:
        stored = await batches.get_batch(session, batch_id=batch.id, org_id=caller.org_id)
    assert stored is not None
    assert (stored.processed_count, stored.error_count, stored.credits_refunded) == (20, 10, 10)
    assert await balance(database, caller.org_id) == 100 - 20 + 10


class OddResults:
    """Results JSON has trouble with: a key that is not a string, an integer past 64 bits."""

    family = "lookup"
    claims_each_item = False

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        results: list[dict[Any, Any]] = [{1: "int key"}, {"big": 10**30}]
        return [
            Outcome(i.batch_id, i.item_index, True, result=r)
            for i, r in zip(items, results, strict=True)
        ]

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        return None


async def test_results_are_stored_as_json_would_store_them(database: Database) -> None:
    caller = await make_caller(database, credits=10)
    batch = await _intake(database).submit(
        caller, PRO, LookupRequest(["a.com", "b.com"], False, 0, None)
    )
    pipeline = ItemPipeline(database, [OddResults()], kafka=KAFKA, clock=SystemClock())
    assert await pipeline.process([(batch.id, 0), (batch.id, 1)]) == 2
    async with database.transaction() as session:
        items = await batches.list_items(session, batch_id=batch.id)
    # The key becomes a string, the integer stays exact (not a float, not refused).
    assert [i.result for i in items] == [{"1": "int key"}, {"big": 10**30}]
    events = [events_pb2.Event.FromString(v) for t, v in await _outbox(database, batch.id)]
    completed = [e.item_completed.result_json for e in events if e.HasField("item_completed")]
    assert completed == ['{"1":"int key"}', '{"big":1000000000000000000000000000000}']
