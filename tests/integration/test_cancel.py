"""Cancelling a batch while processors work on it, on SQLite and PostgreSQL: every item
ends exactly once (processed, or cancelled and refunded), nothing processed after the
cancel, counters and ledger exact, and the batch ends `cancelled`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from tests.integration.conftest import PRO, balance, make_caller

from batchplane.core.clock import SystemClock
from batchplane.core.errors import Conflict
from batchplane.core.scopes import ALL_SCOPES
from batchplane.core.settings import KafkaSettings, LookupSettings
from batchplane.db import batches
from batchplane.db.batches import Outcome, PendingItem
from batchplane.db.engine import Database
from batchplane.intake.batch_control import BatchControl
from batchplane.intake.lookups import LookupIntake, LookupRequest
from batchplane.processor.pipeline import ItemPipeline

KAFKA = KafkaSettings(work_topic="w", events_topic="e")
ITEMS = 120


class SlowSuccess:
    """Succeeds every item after a pause; remembers which items it worked on. Holds
    every chunk until `gate` opens, so a test can act while chunks are in flight."""

    family = "lookup"
    claims_each_item = False

    def __init__(self) -> None:
        self.worked: list[int] = []
        self.working = asyncio.Event()
        self.gate = asyncio.Event()

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        self.worked += [i.item_index for i in items]
        self.working.set()
        await self.gate.wait()
        await asyncio.sleep(0.05)
        return [Outcome(i.batch_id, i.item_index, True, result={"ok": 1}) for i in items]

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        return None


async def test_cancel_races_processors_and_every_item_ends_once(database: Database) -> None:
    caller = replace(await make_caller(database, credits=ITEMS), scopes=frozenset(ALL_SCOPES))
    intake = LookupIntake(database, lookup=LookupSettings(), kafka=KAFKA, clock=SystemClock())
    domains = [f"d{i}.com" for i in range(ITEMS)]
    batch = await intake.submit(caller, PRO, LookupRequest(domains, False, 0, None))
    handler = SlowSuccess()
    pipelines = [ItemPipeline(database, [handler], kafka=KAFKA, clock=SystemClock())] * 3
    chunks = [[(batch.id, i) for i in range(start, start + 10)] for start in range(0, ITEMS, 10)]
    control = BatchControl(database, kafka=KAFKA, clock=SystemClock())

    async def work(lane: int) -> None:
        for chunk in chunks[lane::3]:
            await pipelines[lane].process(chunk)

    lanes = [asyncio.create_task(work(lane)) for lane in range(3)]
    # Cancel while claimed chunks are in flight (a fixed sleep was not enough: on a
    # loaded machine, or with SQLite's writers queueing, every chunk could finish first).
    await handler.working.wait()
    cancelled = await control.cancel(caller, batch.id)
    handler.gate.set()
    await asyncio.gather(*lanes)

    async with database.transaction() as session:
        final = await batches.get_batch(session, batch_id=batch.id, org_id=caller.org_id)
        items = await batches.list_items(session, batch_id=batch.id)
    assert final is not None
    by_status = {
        s: [i.item_index for i in items if i.status == s] for s in ("succeeded", "cancelled")
    }
    assert cancelled.cancelled_at is not None
    assert len(by_status["succeeded"]) + len(by_status["cancelled"]) == ITEMS
    assert 0 < len(by_status["cancelled"]) < ITEMS
    # Worked on exactly once each, and never an item that the cancel took.
    assert sorted(handler.worked) == by_status["succeeded"]
    assert (final.status, final.processed_count, final.cancelled_count, final.success_count) == (
        "cancelled", ITEMS, len(by_status["cancelled"]), len(by_status["succeeded"]),
    )  # fmt: skip
    assert final.credits_refunded == len(by_status["cancelled"])
    assert await balance(database, caller.org_id) == len(by_status["cancelled"])

    with pytest.raises(Conflict):
        await control.cancel(caller, batch.id)
