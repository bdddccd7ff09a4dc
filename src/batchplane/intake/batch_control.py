"""Control of any async batch: read, cancel, retry its failed items.

Cancel, in one transaction: every item no processor has claimed becomes
`cancelled`, is counted and refunded through the ledger, and is announced
(`batch_cancelled`, then `item_completed` with status CANCELLED per item, then
`batch_finished` if nothing was in flight). Items already claimed finish
normally; the processor's last outcome then ends the batch as `cancelled`.

Retry: a new batch of the same family and parameters, holding the failed items'
inputs, accepted through the same `accept_batch` as any batch (metered, charged,
queued) and linked by `retry_of`.

Families with records of their own (enrichment) plug in through `FamilyHooks`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.api.common.v1 import batch_pb2
from batchplane.api.events.v1 import events_pb2
from batchplane.bus.records import EventKind, event_record
from batchplane.core import scopes
from batchplane.core.clock import Clock
from batchplane.core.errors import Conflict, NotFound, PermissionDenied
from batchplane.core.plans import Plan
from batchplane.core.settings import KafkaSettings
from batchplane.db import batches, billing, outbox
from batchplane.db.engine import Database
from batchplane.db.models import Batch
from batchplane.intake.acceptance import accept_batch
from batchplane.intake.auth import Caller

# family -> (scope to read it, scope to change it)
FAMILY_SCOPES: Mapping[str, tuple[str, str]] = {
    "lookup": (scopes.LOOKUP_WRITE, scopes.LOOKUP_WRITE),
    "enrichment": (scopes.ENRICHMENT_READ, scopes.ENRICHMENT_WRITE),
    "scrape": (scopes.SCRAPE_READ, scopes.SCRAPE_WRITE),
    "radar": (scopes.RADARS_READ, scopes.RADARS_WRITE),
}


class FamilyHooks(Protocol):
    """What a family with records beside its items does on cancel and retry."""

    async def cancelled(
        self, session: AsyncSession, *, inputs: list[str], now: datetime
    ) -> None: ...

    async def retry_inputs(
        self, session: AsyncSession, *, caller: Caller, inputs: list[str], now: datetime
    ) -> list[str]: ...


@dataclass(frozen=True)
class Retried:
    batch: Batch


class BatchControl:
    def __init__(
        self,
        database: Database,
        *,
        kafka: KafkaSettings,
        clock: Clock,
        hooks: Mapping[str, FamilyHooks] | None = None,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._kafka = kafka
        self._clock = clock
        self._hooks = dict(hooks or {})
        self._on_commit = on_commit

    async def get(self, caller: Caller, batch_id: int, *, write: bool = False) -> Batch:
        """The caller's batch; 404 for anyone else's, 403 without the family's scope."""
        async with self._database.transaction() as session:
            batch = await batches.get_batch(session, batch_id=batch_id, org_id=caller.org_id)
        if batch is None:
            raise NotFound(f"batch {batch_id} not found")
        _require_scope(caller, batch, write=write)
        return batch

    async def cancel(self, caller: Caller, batch_id: int) -> Batch:
        batch = await self.get(caller, batch_id, write=True)
        now = self._clock.now()
        async with self._database.transaction() as session:
            try:
                done = await batches.cancel(session, batch=batch, now=now)
            except batches.NotCancellable as error:
                raise Conflict(str(error), code="batch_not_cancellable") from error
            progress = done.progress
            if progress.refund:
                await billing.credit(
                    session,
                    org_id=progress.org_id,
                    amount=progress.refund,
                    kind=billing.REFUND,
                    batch_id=batch.id,
                    now=now,
                    note=f"refund of {len(done.item_indexes)} cancelled items",
                )
            hooks = self._hooks.get(batch.family)
            if hooks is not None and done.item_indexes:
                inputs = await batches.inputs_of(
                    session, batch_id=batch.id, item_indexes=done.item_indexes
                )
                await hooks.cancelled(session, inputs=inputs, now=now)
            await outbox.add(session, self._cancel_events(done, now), now=now)
            cancelled = await batches.get_batch(session, batch_id=batch.id, org_id=caller.org_id)
        self._on_commit()
        assert cancelled is not None
        return cancelled

    async def retry_failed(self, caller: Caller, plan: Plan, batch_id: int) -> Batch:
        batch = await self.get(caller, batch_id, write=True)
        now = self._clock.now()
        async with self._database.transaction() as session:
            inputs = await batches.failed_inputs(session, batch_id=batch.id)
            if not inputs:
                raise Conflict(f"batch {batch.id} has no failed items", code="nothing_to_retry")
            hooks = self._hooks.get(batch.family)
            if hooks is not None:
                inputs = await hooks.retry_inputs(session, caller=caller, inputs=inputs, now=now)
            params: dict[str, Any] = dict(batch.params or {})
            unit_credits = int(params.pop("unit_credits", 0))
            accepted = await accept_batch(
                session,
                caller=caller,
                plan=plan,
                family=batch.family,
                inputs=inputs,
                params=params,
                unit_credits=unit_credits,
                kafka=self._kafka,
                now=now,
                retry_of=batch.id,
            )
        self._on_commit()
        return accepted.batch

    def _cancel_events(self, done: batches.Cancellation, now: datetime) -> list[outbox.Record]:
        progress = done.progress
        kinds: list[EventKind] = [
            events_pb2.BatchCancelled(
                cancelled_items=len(done.item_indexes), credits_refunded=progress.refund
            ),
            *(
                events_pb2.ItemCompleted(item_index=index, status=batch_pb2.ITEM_STATUS_CANCELLED)
                for index in done.item_indexes
            ),
        ]
        if progress.finished:
            kinds.append(
                events_pb2.BatchFinished(
                    progress=batch_pb2.BatchProgress(
                        requested=progress.requested,
                        processed=progress.processed,
                        succeeded=progress.succeeded,
                        failed=progress.failed,
                        cancelled=progress.cancelled,
                    ),
                    credits_refunded=progress.credits_refunded,
                    status=batch_pb2.BATCH_STATUS_CANCELLED,
                )
            )
        return [
            event_record(
                self._kafka.events_topic,
                kind,
                org_id=progress.org_id,
                batch_id=progress.batch_id,
                family=progress.family,
                now=now,
            )
            for kind in kinds
        ]


def _require_scope(caller: Caller, batch: Batch, *, write: bool) -> None:
    read_scope, write_scope = FAMILY_SCOPES.get(batch.family, (None, None))
    scope = write_scope if write else read_scope
    if scope is not None and scope not in caller.scopes:
        raise PermissionDenied(f"this token lacks the {scope} scope", extra={"scope": scope})
