"""gRPC servicer of BatchService: read, watch, cancel and retry any async batch.

A watch subscribes to the event hub *before* it reads the batch from the
database, so every change committed after that read arrives as an event, and
every change before it is in the snapshot. Items already sent (the snapshot's,
or those the cursor names) are skipped, so an item is sent exactly once.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import AsyncIterator

from google.protobuf import struct_pb2

from batchplane.api.batches.v1 import batches_pb2, batches_pb2_grpc
from batchplane.api.common.v1 import batch_pb2
from batchplane.api.events.v1 import events_pb2
from batchplane.core import jsontext
from batchplane.core.clock import rfc3339
from batchplane.core.errors import BatchplaneError, InvalidRequest
from batchplane.core.states import TERMINAL_BATCH_STATES, BatchState, ItemState
from batchplane.db import batches
from batchplane.db.engine import Database
from batchplane.db.models import Batch, BatchItem
from batchplane.intake.batch_control import BatchControl
from batchplane.intake.event_hub import EventHub
from batchplane.intake.guard import Admitted, Guard
from batchplane.intake.idempotency import IdempotencyGate, Reply, request_fingerprint
from batchplane.intake.wire import NULL, Context, call_metadata, time_or_null
from batchplane.intake.wire_errors import grpc_code_for, send_http_status

_ITEM_STATUS = {
    batch_pb2.ITEM_STATUS_SUCCEEDED: ItemState.SUCCEEDED,
    batch_pb2.ITEM_STATUS_FAILED: ItemState.FAILED,
    batch_pb2.ITEM_STATUS_CANCELLED: ItemState.CANCELLED,
}


class BatchesApi(batches_pb2_grpc.BatchServiceServicer):
    def __init__(
        self,
        database: Database,
        guard: Guard,
        control: BatchControl,
        hub: EventHub,
        *,
        gate: IdempotencyGate,
    ) -> None:
        self._database = database
        self._guard = guard
        self._control = control
        self._hub = hub
        self._gate = gate

    async def GetBatch(
        self, request: batches_pb2.GetBatchRequest, context: Context
    ) -> batches_pb2.Batch:
        admitted = await self._guard.admit(call_metadata(context), scope=None)
        batch = await self._control.get(admitted.caller, request.batch_id)
        await send_http_status(context, 200, admitted.headers)
        return batch_message(batch)

    async def CancelBatch(
        self, request: batches_pb2.CancelBatchRequest, context: Context
    ) -> batches_pb2.Batch:
        admitted = await self._guard.admit(call_metadata(context), scope=None)
        batch = await self._control.cancel(admitted.caller, request.batch_id)
        await send_http_status(context, 200, admitted.headers)
        return batch_message(batch)

    async def RetryFailedItems(
        self, request: batches_pb2.RetryFailedItemsRequest, context: Context
    ) -> batches_pb2.Batch:
        admitted = await self._guard.admit(call_metadata(context), scope=None, bulk=True)
        return await self._gate.run(
            context,
            admitted,
            fingerprint=request_fingerprint("batch-retry", request, None),
            response_type=batches_pb2.Batch,
            produce=lambda: self._retry(admitted, request.batch_id),
        )

    async def _retry(self, admitted: Admitted, batch_id: int) -> Reply[batches_pb2.Batch]:
        batch = await self._control.retry_failed(admitted.caller, admitted.plan, batch_id)
        return Reply(batch_message(batch), status=201)

    async def WatchBatch(
        self, request: batches_pb2.WatchBatchRequest, context: Context
    ) -> AsyncIterator[batches_pb2.BatchUpdate]:
        try:
            admitted = await self._guard.admit(call_metadata(context), scope=None)
            batch = await self._control.get(admitted.caller, request.batch_id)
            seen = decode_cursor(request.cursor, batch.requested_count)
        except BatchplaneError as error:
            await context.abort(grpc_code_for(error.http_status), error.message)
        watch = _Watch(batch, seen)
        await self._hub.ready.wait()
        async with self._hub.subscribe(batch.id) as subscription:
            for update in await self._resync(watch, first=True):
                yield update
            while not watch.terminal:
                event = await subscription.next()
                updates = await self._resync(watch) if event is None else watch.apply(event)
                for update in updates:
                    yield update

    async def _resync(self, watch: _Watch, *, first: bool = False) -> list[batches_pb2.BatchUpdate]:
        async with self._database.transaction() as session:
            batch = await session.get(Batch, watch.batch.id)
            items = await batches.list_items(session, batch_id=watch.batch.id)
        assert batch is not None
        return watch.snapshot(batch, items, first=first)


class _Watch:
    """One watcher's view: the batch, and the items it was sent."""

    def __init__(self, batch: Batch, seen: bytearray) -> None:
        self.batch = batch
        self.seen = seen
        self.message = batch_message(batch)

    @property
    def terminal(self) -> bool:
        return self.message.status in TERMINAL_BATCH_STATES

    def snapshot(
        self, batch: Batch, items: list[BatchItem], *, first: bool
    ) -> list[batches_pb2.BatchUpdate]:
        """The batch as stored, then every terminal item not sent yet."""
        self.batch = batch
        self.message = batch_message(batch)
        updates = [self._update()] if first else []
        for item in items:
            if item.status == ItemState.QUEUED or _is_set(self.seen, item.item_index):
                continue
            _set(self.seen, item.item_index)
            outcome = batches_pb2.ItemOutcome(
                item_index=item.item_index,
                status=item.status,
                error_code=item.error_code or "",
                result_json=_json(item.result),
            )
            updates.append(self._update(outcome))
        if not first and updates == [] and self.terminal:
            updates.append(self._update())
        return updates

    def apply(self, event: events_pb2.Event) -> list[batches_pb2.BatchUpdate]:
        kind = event.WhichOneof("kind")
        progress = self.message.progress
        if kind == "item_completed":
            done = event.item_completed
            if _is_set(self.seen, done.item_index):
                return []
            _set(self.seen, done.item_index)
            status = _ITEM_STATUS.get(done.status, ItemState.FAILED)
            progress.processed += 1
            if status == ItemState.SUCCEEDED:
                progress.succeeded += 1
            elif status == ItemState.FAILED:
                progress.failed += 1
            else:
                progress.cancelled += 1
            outcome = batches_pb2.ItemOutcome(
                item_index=done.item_index,
                status=status,
                error_code=done.error_code,
                result_json=done.result_json,
            )
            return [self._update(outcome)]
        if kind == "batch_started" and self.message.status == BatchState.QUEUED:
            self.message.status = BatchState.PROCESSING
            self.message.started_at.string_value = rfc3339(event.occurred_at.ToDatetime())
        elif kind == "batch_cancelled":
            self.message.cancelled_at.string_value = rfc3339(event.occurred_at.ToDatetime())
            self.message.credits_refunded += event.batch_cancelled.credits_refunded
            return []  # its items' events follow, each with the counters
        elif kind == "batch_finished":
            finished = event.batch_finished
            self.message.progress.CopyFrom(finished.progress)
            self.message.credits_refunded = finished.credits_refunded
            self.message.status = (
                BatchState.CANCELLED
                if finished.status == batch_pb2.BATCH_STATUS_CANCELLED
                else BatchState.FINISHED
            )
            self.message.finished_at.string_value = rfc3339(event.occurred_at.ToDatetime())
        else:
            return []
        return [self._update()]

    def _update(self, item: batches_pb2.ItemOutcome | None = None) -> batches_pb2.BatchUpdate:
        update = batches_pb2.BatchUpdate(cursor=encode_cursor(self.seen), item=item)
        update.batch.CopyFrom(self.message)
        return update


def batch_message(batch: Batch) -> batches_pb2.Batch:
    return batches_pb2.Batch(
        id=batch.id,
        family=batch.family,
        status=batch.status,
        progress=batch_pb2.BatchProgress(
            requested=batch.requested_count,
            processed=batch.processed_count,
            succeeded=batch.success_count,
            failed=batch.error_count,
            cancelled=batch.cancelled_count or 0,
        ),
        credits_charged=batch.credits_charged,
        credits_refunded=batch.credits_refunded,
        created_at=rfc3339(batch.created_at),
        started_at=time_or_null(batch.started_at),
        finished_at=time_or_null(batch.finished_at),
        cancelled_at=time_or_null(batch.cancelled_at),
        retry_of=NULL if batch.retry_of is None else struct_pb2.Value(number_value=batch.retry_of),
    )


# The cursor: a bitmap of the item indexes sent, deflated and base64url-encoded.


def encode_cursor(seen: bytearray) -> str:
    return base64.urlsafe_b64encode(zlib.compress(bytes(seen))).decode().rstrip("=")


def decode_cursor(cursor: str, item_count: int) -> bytearray:
    size = (item_count + 7) // 8
    if not cursor:
        return bytearray(size)
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, zlib.error) as error:
        raise InvalidRequest("cursor is not one this batch's watch sent") from error
    if len(raw) != size:
        raise InvalidRequest("cursor is not one this batch's watch sent")
    return bytearray(raw)


def _is_set(seen: bytearray, index: int) -> bool:
    return bool(seen[index // 8] & (1 << (index % 8)))


def _set(seen: bytearray, index: int) -> None:
    seen[index // 8] |= 1 << (index % 8)


def _json(value: object) -> str:
    return jsontext.dumps_text(value) if value else ""
