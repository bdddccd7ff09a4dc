"""The notifier's routing on both databases: webhooks queued for the batches that asked
for them, and no database work for the events of batches that did not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, func, select
from tests.integration.conftest import make_caller

from batchplane.api.common.v1 import batch_pb2
from batchplane.api.events.v1 import events_pb2
from batchplane.bus.records import event_record
from batchplane.core.clock import SystemClock
from batchplane.db import batches
from batchplane.db.engine import Database
from batchplane.db.models import WebhookDelivery
from batchplane.notifier.routing import EventRouter, decode_events


async def _batch(database: Database, org_id: str, params: dict[str, Any]) -> int:
    async with database.transaction() as session:
        batch = await batches.create_batch(
            session,
            org_id=org_id,
            family="lookup",
            inputs=["a.com", "b.com"],
            params=params,
            created_by="u",
            credits_charged=2,
            now=SystemClock().now(),
        )
        return batch.id


def _completed(org_id: str, batch_id: int, index: int) -> events_pb2.Event:
    kind = events_pb2.ItemCompleted(item_index=index, status=batch_pb2.ITEM_STATUS_SUCCEEDED)
    record = event_record(
        "e", kind, org_id=org_id, batch_id=batch_id, family="lookup", now=SystemClock().now()
    )
    return decode_events([record.value])[0]


@contextmanager
def _statements(database: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)


async def _deliveries(database: Database, batch_id: int) -> int:
    async with database.transaction() as session:
        stmt = select(func.count()).where(WebhookDelivery.batch_id == batch_id)
        return int((await session.execute(stmt)).scalar_one())


async def test_events_of_batches_without_a_webhook_cost_no_query_once_known(
    database: Database,
) -> None:
    caller = await make_caller(database, credits=0)
    quiet = await _batch(database, caller.org_id, {"unit_credits": 1})
    hooked = await _batch(
        database, caller.org_id, {"unit_credits": 1, "webhook_url": "https://hooks.test/x"}
    )
    router = EventRouter(database, clock=SystemClock())

    assert await router.route([_completed(caller.org_id, quiet, 0)]) == 0
    with _statements(database) as seen:
        assert await router.route([_completed(caller.org_id, quiet, 1)]) == 0
    assert seen == []

    # A batch with a webhook is looked up every time, and each event queues a delivery.
    for index in (0, 1):
        with _statements(database) as seen:
            assert await router.route([_completed(caller.org_id, hooked, index)]) == 1
        assert seen
    assert await _deliveries(database, hooked) == 2
    assert await _deliveries(database, quiet) == 0


async def test_an_unknown_or_foreign_batch_is_not_remembered(database: Database) -> None:
    owner = await make_caller(database, credits=0)
    stranger = await make_caller(database, credits=0)
    batch_id = await _batch(database, owner.org_id, {"webhook_url": "https://hooks.test/x"})
    router = EventRouter(database, clock=SystemClock())

    # Another organisation's claim on the batch routes nothing, and is not cached as
    # "no webhook": the owner's events still queue their deliveries.
    assert await router.route([_completed(stranger.org_id, batch_id, 0)]) == 0
    assert await router.route([_completed(owner.org_id, batch_id, 0)]) == 1


async def test_the_memory_of_batches_is_bounded(database: Database) -> None:
    caller = await make_caller(database, credits=0)
    first = await _batch(database, caller.org_id, {})
    second = await _batch(database, caller.org_id, {})
    router = EventRouter(database, clock=SystemClock(), remembered_batches=1)
    await router.route([_completed(caller.org_id, first, 0)])
    await router.route([_completed(caller.org_id, second, 0)])

    with _statements(database) as seen:
        await router.route([_completed(caller.org_id, second, 1)])
    assert seen == []
    with _statements(database) as seen:  # forgotten: looked up again
        await router.route([_completed(caller.org_id, first, 1)])
    assert seen


async def test_a_foreign_claim_in_the_same_chunk_hides_none_of_the_owners_events(
    database: Database,
) -> None:
    owner = await make_caller(database, credits=0)
    stranger = await make_caller(database, credits=0)
    batch_id = await _batch(database, owner.org_id, {"webhook_url": "https://hooks.test/x"})
    router = EventRouter(database, clock=SystemClock())

    chunk = [
        _completed(owner.org_id, batch_id, 0),
        _completed(stranger.org_id, batch_id, 1),
        _completed(owner.org_id, batch_id, 1),
    ]
    assert await router.route(chunk) == 2
