"""Item keys and outbox ids are written as ranges (`batchplane.db.keysets`): claims,
outcomes and the relay's delete touch exactly the rows named, whatever the shape of the
set (one run, several batches with gaps, duplicates, scattered keys past the range
limit), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from tests.integration.conftest import make_caller

from batchplane.db import batches, outbox
from batchplane.db.batches import ItemKey, Outcome
from batchplane.db.engine import Database
from batchplane.db.keysets import MAX_RUNS
from batchplane.db.models import BatchItem, OutboxPack

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SIZE = 80


async def _two_batches(database: Database) -> tuple[int, int]:
    caller = await make_caller(database, credits=0)
    async with database.transaction() as session:
        ids = []
        for _ in range(2):
            batch = await batches.create_batch(
                session,
                org_id=caller.org_id,
                family="lookup",
                inputs=[f"d{i}.com" for i in range(SIZE)],
                params={"unit_credits": 1},
                created_by=caller.user_id,
                credits_charged=SIZE,
                now=NOW,
            )
            ids.append(batch.id)
    return ids[0], ids[1]


async def _items(database: Database, batch_ids: tuple[int, int]) -> dict[ItemKey, BatchItem]:
    async with database.transaction() as session:
        rows = (
            await session.execute(select(BatchItem).where(BatchItem.batch_id.in_(batch_ids)))
        ).scalars()
        return {(row.batch_id, row.item_index): row for row in rows}


def _outcome(key: ItemKey) -> Outcome:
    """An outcome that names its own item, so that one landing on another item shows."""
    batch_id, index = key
    if index % 3 == 0:
        return Outcome(batch_id, index, False, f"e{batch_id}-{index}")
    return Outcome(batch_id, index, True, result={"item": [batch_id, index]})


def _key_sets(a: int, b: int) -> dict[str, list[ItemKey]]:
    return {
        "one run": [(a, i) for i in range(10, 60)],
        "gaps in two batches": [(a, i) for i in (*range(5), *range(7, 20), 40, 79)]
        + [(b, i) for i in range(30, 45)],
        "duplicates and unknown items": [(b, 3), (b, 3), (a, 4), (b, 4), (a, SIZE), (999_999, 1)],
        "scattered past the range limit": [(a, i) for i in range(0, SIZE, 2)]
        + [(b, i) for i in range(1, 2 * MAX_RUNS, 3)],
    }


@pytest.mark.parametrize(
    "shape",
    [
        "one run",
        "gaps in two batches",
        "duplicates and unknown items",
        "scattered past the range limit",
    ],
)
async def test_claims_and_outcomes_touch_exactly_the_named_items(
    database: Database, shape: str
) -> None:
    a, b = await _two_batches(database)
    keys = _key_sets(a, b)[shape]
    real = {key for key in keys if key[0] in (a, b) and key[1] < SIZE}

    async with database.transaction() as session:
        pending = (await batches.claim_pending(session, keys=keys, now=NOW)).items
    assert sorted(p.key for p in pending) == sorted(real)
    items = await _items(database, (a, b))
    assert {key for key, item in items.items() if item.claimed_at is not None} == real

    outcomes = [_outcome(key) for key in keys if key in real]
    random.Random(7).shuffle(outcomes)
    async with database.transaction() as session:
        applied, progress = await batches.record_outcomes(session, outcomes=outcomes, now=NOW)
    assert sorted(o.key for o in applied) == sorted(real)
    assert sum(p.processed for p in progress) == len(real)

    for key, item in (await _items(database, (a, b))).items():
        if key not in real:
            assert (item.status, item.claimed_at, item.finished_at) == ("queued", None, None)
            continue
        expected = _outcome(key)
        assert item.status == ("succeeded" if expected.succeeded else "failed"), key
        assert item.error_code == expected.error_code, key
        assert item.result == expected.result, key
        assert item.finished_at is not None

    # A redelivery of the same outcomes changes nothing.
    async with database.transaction() as session:
        again, _ = await batches.record_outcomes(session, outcomes=outcomes, now=NOW)
    assert again == []


async def test_items_started_are_those_named(database: Database) -> None:
    a, b = await _two_batches(database)
    keys = [(a, 1), (a, 2), (a, 3), (b, 0), (b, 50)]
    async with database.transaction() as session:
        claimed = await batches.mark_items_started(session, keys=keys, now=NOW)
    assert claimed == set(keys)
    items = await _items(database, (a, b))
    assert {key for key, item in items.items() if item.started_at is not None} == set(keys)


async def _marked_packs(database: Database, marker: str) -> set[int]:
    """Ids of the outbox packs whose records go to topic `marker`."""
    async with database.transaction() as session:
        rows = await session.execute(select(OutboxPack.id, OutboxPack.records))
        return {id_ for id_, data in rows if outbox.unpack(data)[0].topic == marker}


async def test_the_relay_deletes_exactly_the_rows_it_names(database: Database) -> None:
    marker = f"keysets-{random.random()}"
    for i in range(60):
        async with database.transaction() as session:
            await outbox.add(session, [outbox.Record(marker, b"k", bytes([i]))], now=NOW)
    ids = sorted(await _marked_packs(database, marker))
    assert len(ids) == 60
    # Two runs and then a scattered set past the range limit.
    for chosen in (ids[:10] + ids[20:25], ids[30::2]):
        async with database.transaction() as session:
            await outbox.remove(session, outbox.Taken([], pack_ids=chosen, message_ids=[]))
        left = await _marked_packs(database, marker)
        assert not left & set(chosen)
        ids = [i for i in ids if i not in set(chosen)]
        assert left == set(ids)
