"""From the events topic to queued deliveries.

For each `item_completed` and `batch_finished` event of a batch that named a
`webhook_url`, a delivery is queued whose id derives from the event id: a
redelivered Kafka record queues nothing new, and the `webhook-id` stays stable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.api.common.v1 import batch_pb2
from batchplane.api.events.v1 import events_pb2
from batchplane.core import jsontext, tracing
from batchplane.core.clock import Clock
from batchplane.core.states import BatchState, ItemState
from batchplane.db import batches, webhooks
from batchplane.db.engine import Database
from batchplane.db.models import Batch
from batchplane.notifier import payloads
from batchplane.radars.bulk import bulk_public_id, completed_payload, unfinished_payload

RADAR_FAMILY = "radar"

log = logging.getLogger(__name__)


def decode_events(values: Sequence[bytes | None]) -> list[events_pb2.Event]:
    events = []
    for value in values:
        try:
            events.append(events_pb2.Event.FromString(value or b""))
        except DecodeError:
            log.error("ignoring an undecodable record on the events topic")
    return events


class EventRouter:
    """Queues the webhook deliveries a chunk of events calls for."""

    def __init__(
        self, database: Database, *, clock: Clock, remembered_batches: int = 65_536
    ) -> None:
        self._database = database
        self._clock = clock
        # Batches known to have no webhook, oldest first. A batch's webhook is fixed
        # when it is accepted, so their later events need no database round trip: most
        # events are of such batches.
        self._unhooked: dict[int, None] = {}
        self._remembered_batches = remembered_batches

    async def route(self, events: Sequence[events_pb2.Event]) -> int:
        wanted = [
            e
            for e in events
            if e.batch_id not in self._unhooked
            and e.WhichOneof("kind") in ("item_completed", "batch_finished")
        ]
        if not wanted:
            return 0
        now = self._clock.now()
        async with self._database.transaction() as session:
            # Keyed by batch and organisation: an event naming another organisation's
            # batch finds nothing, and does not hide the owner's events of the chunk.
            owners = {
                owner: await batches.get_batch(session, batch_id=int(owner[0]), org_id=owner[1])
                for owner in {(e.batch_id, e.org_id) for e in wanted}
            }
            hooked = {
                owner: b for owner, b in owners.items() if b and (b.params or {}).get("webhook_url")
            }
            self._remember_unhooked(
                b.id for owner, b in owners.items() if b and owner not in hooked
            )
            rows = []
            for event in wanted:
                batch = hooked.get((event.batch_id, event.org_id))
                if batch is None or _cancelled_radar(event, batch):
                    continue
                body = await self._payload(session, event, batch)
                rows.append(_delivery(event, batch, body, now))
            await webhooks.enqueue(session, deliveries=rows)
        return len(rows)

    def _remember_unhooked(self, batch_ids: Iterable[int]) -> None:
        for batch_id in batch_ids:
            self._unhooked[batch_id] = None
        while len(self._unhooked) > self._remembered_batches:
            del self._unhooked[next(iter(self._unhooked))]

    async def _radar_payload(
        self, session: AsyncSession, event: events_pb2.Event, batch: Batch, moment: datetime
    ) -> dict[str, Any]:
        """Seed 003's events: the item's stored payload, or `bulk_completed`."""
        if event.WhichOneof("kind") == "item_completed":
            result = orjson.loads(event.item_completed.result_json or "{}")
            return dict(result.get("payload", {}))
        items = await batches.list_items(session, batch_id=batch.id)
        progress = event.batch_finished.progress
        return completed_payload(
            bulk_id=bulk_public_id(batch.id),
            created=progress.succeeded,
            failed=progress.failed,
            radars=[
                unfinished_payload(item.item_index, item.status, item.input)
                or (item.result or {}).get("payload", {})
                for item in items
            ],
            at=moment,
        )

    async def _payload(
        self, session: AsyncSession, event: events_pb2.Event, batch: Batch
    ) -> dict[str, Any]:
        moment = event.occurred_at.ToDatetime(tzinfo=UTC)
        if batch.family == RADAR_FAMILY:
            return await self._radar_payload(session, event, batch, moment)
        if event.WhichOneof("kind") == "item_completed":
            done = event.item_completed
            return payloads.item_payload(
                batch_id=batch.id,
                family=batch.family,
                item_index=done.item_index,
                status=_ITEM_STATES.get(done.status, ItemState.FAILED),
                error_code=done.error_code or None,
                result=orjson.loads(done.result_json) if done.result_json else None,
                completed_at=moment,
            )
        items = await batches.list_items(session, batch_id=batch.id)
        finished = event.batch_finished
        return payloads.completion_payload(
            batch_id=batch.id,
            family=batch.family,
            status=(
                BatchState.CANCELLED
                if finished.status == batch_pb2.BATCH_STATUS_CANCELLED
                else BatchState.FINISHED
            ),
            progress=finished.progress,
            items=[
                payloads.item_payload(
                    batch_id=batch.id,
                    family=batch.family,
                    item_index=item.item_index,
                    status=item.status,
                    error_code=item.error_code,
                    result=item.result,
                    completed_at=item.finished_at or moment,
                )
                for item in items
            ],
            completed_at=moment,
        )


_ITEM_STATES = {
    batch_pb2.ITEM_STATUS_SUCCEEDED: ItemState.SUCCEEDED,
    batch_pb2.ITEM_STATUS_FAILED: ItemState.FAILED,
    batch_pb2.ITEM_STATUS_CANCELLED: ItemState.CANCELLED,
}


def _cancelled_radar(event: events_pb2.Event, batch: Batch) -> bool:
    """Seed 003 has no per-item event for a cancelled radar: `bulk_completed` lists it."""
    return (
        batch.family == RADAR_FAMILY
        and event.WhichOneof("kind") == "item_completed"
        and event.item_completed.status == batch_pb2.ITEM_STATUS_CANCELLED
    )


def _delivery(
    event: events_pb2.Event, batch: Batch, body: dict[str, Any], now: datetime
) -> dict[str, Any]:
    completion = event.WhichOneof("kind") == "batch_finished"
    return {
        "id": f"msg_{event.event_id}",
        "org_id": batch.org_id,
        "batch_id": batch.id,
        "kind": webhooks.COMPLETION if completion else webhooks.ITEM,
        "event_type": body["event"],
        "url": batch.params["webhook_url"],
        "payload": jsontext.dumps(body),
        "status": webhooks.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": None,
        "last_status_code": None,
        "created_at": now,
        "finished_at": None,
        # Routing runs in the CONSUMER span of the event's records: every attempt's
        # span will be its child.
        "trace_context": tracing.current_headers() or None,
    }
