"""The requeue sweeper on SQLite and PostgreSQL: the work of items that no processor
holds is queued again once a lease has passed, once per lease, never for items that are
terminal, freshly claimed or in a batch just accepted, and not while the outbox is behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from tests.integration.conftest import PRO, make_caller

from batchplane.api.work.v1 import work_pb2
from batchplane.core.scopes import ALL_SCOPES
from batchplane.core.settings import KafkaSettings, LookupSettings
from batchplane.db import batches, outbox
from batchplane.db.batches import Outcome
from batchplane.db.engine import Database
from batchplane.db.migrate import upgrade_async
from batchplane.intake.lookups import LookupIntake, LookupRequest
from batchplane.processor.requeue import RequeueSweeper

KAFKA = KafkaSettings(work_topic="w", events_topic="e")
LEASE = timedelta(seconds=60)


class Clock:
    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def now(self) -> datetime:
        return self.moment


@pytest_asyncio.fixture(loop_scope="session", params=["sqlite", "postgres"])
async def own_database(
    request: pytest.FixtureRequest, tmp_path: Path, own_postgres_url: str
) -> AsyncIterator[Database]:
    """A database of this test alone: the sweeper looks at every batch in it."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'requeue.db'}"
        await upgrade_async(url)
    else:
        url = own_postgres_url
    database = Database(url)
    yield database
    await database.dispose()


async def _work_in_outbox(database: Database) -> list[tuple[int, int]]:
    """(batch, item) of every work record in the outbox; empties it, as a relay would."""
    async with database.transaction() as session:
        taken = await outbox.take(session, packs=2**31 - 1)
        runs = [work_pb2.WorkItem.FromString(r.value) for r in taken.records if r.topic == "w"]
        await outbox.remove(session, taken)
    return sorted(
        (run.batch_id, index)
        for run in runs
        for index in range(run.item_index, run.item_index + max(run.item_count, 1))
    )


async def test_stale_items_are_queued_again_once_per_lease(own_database: Database) -> None:
    database = own_database
    clock = Clock()
    caller = replace(await make_caller(database, credits=10), scopes=frozenset(ALL_SCOPES))
    intake = LookupIntake(database, lookup=LookupSettings(), kafka=KAFKA, clock=clock)
    batch = await intake.submit(
        caller, PRO, LookupRequest([f"d{i}.com" for i in range(5)], False, 0, None)
    )
    assert len(await _work_in_outbox(database)) == 5  # published by the relay
    sweeper = RequeueSweeper(
        database, work_topic="w", lease_s=LEASE.total_seconds(), interval_s=1, clock=clock
    )
    # Item 0 finished, item 1 claimed by a live processor just now (below), 2-4 untouched.
    async with database.transaction() as session:
        await batches.record_outcomes(
            session, outcomes=[Outcome(batch.id, 0, True)], now=clock.now()
        )

    assert await sweeper.sweep_once() == 0  # within the lease: nothing is stale yet

    clock.moment += LEASE + timedelta(seconds=1)
    async with database.transaction() as session:
        await batches.claim_pending(session, keys=[(batch.id, 1)], now=clock.now())
    assert await sweeper.sweep_once() == 3
    assert await _work_in_outbox(database) == [(batch.id, 2), (batch.id, 3), (batch.id, 4)]
    assert await sweeper.sweep_once() == 0  # once per lease

    # A lease later the claim of item 1 is old too: its processor is gone.
    clock.moment += LEASE + timedelta(seconds=1)
    assert await sweeper.sweep_once() == 4
    assert await _work_in_outbox(database) == [(batch.id, i) for i in (1, 2, 3, 4)]


async def test_no_requeue_while_the_outbox_is_behind(own_database: Database) -> None:
    database = own_database
    clock = Clock()
    caller = replace(await make_caller(database, credits=10), scopes=frozenset(ALL_SCOPES))
    intake = LookupIntake(database, lookup=LookupSettings(), kafka=KAFKA, clock=clock)
    await intake.submit(caller, PRO, LookupRequest(["a.com", "b.com"], False, 0, None))
    sweeper = RequeueSweeper(
        database, work_topic="w", lease_s=LEASE.total_seconds(), interval_s=1, clock=clock
    )
    clock.moment += LEASE * 2
    # The first records were never published: the broker is away, not the records lost.
    assert await sweeper.sweep_once() == 0
    assert len(await _work_in_outbox(database)) == 2
    assert await sweeper.sweep_once() == 2
