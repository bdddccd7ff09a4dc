"""The family-independent part of processing: claim, run, record, announce.

For a chunk of work items: load those still queued, start their batches, let
each family's handler do the work, then record every outcome, the batch
counters, refunds for failed items and the events in one transaction. Nothing
here is per item round trip: each step is one statement (or one per batch).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from batchplane.api.common.v1 import batch_pb2
from batchplane.api.events.v1 import events_pb2
from batchplane.bus.records import BatchEvent, event_records
from batchplane.core import jsontext, metrics
from batchplane.core.clock import Clock
from batchplane.core.settings import KafkaSettings
from batchplane.core.states import BatchState
from batchplane.db import batches, billing, outbox
from batchplane.db.batches import BatchProgressUpdate, ItemKey, Outcome, PendingItem
from batchplane.db.engine import Database
from batchplane.processor.handlers.base import ItemHandler

log = logging.getLogger(__name__)


class ItemPipeline:
    """Processes chunks of work items; safe to call again with the same items."""

    def __init__(
        self,
        database: Database,
        handlers: Iterable[ItemHandler],
        *,
        kafka: KafkaSettings,
        clock: Clock,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._handlers: Mapping[str, ItemHandler] = {h.family: h for h in handlers}
        self._deferred = frozenset(f for f, h in self._handlers.items() if h.claims_each_item)
        self._events_topic = kafka.events_topic
        self._clock = clock
        self._on_commit = on_commit
        self.processed = 0

    async def process(self, keys: Sequence[ItemKey]) -> int:
        """Work on the items named by `keys`; returns how many outcomes were recorded."""
        pending = await self._claim(keys)
        if not pending:
            return 0
        by_family: dict[str, list[PendingItem]] = defaultdict(list)
        for item in pending:
            by_family[item.family].append(item)
        outcomes: dict[str, list[Outcome]] = {}
        for family, items in by_family.items():
            outcomes[family] = await self._run(family, items)
        return await self.record(outcomes)

    async def _claim(self, keys: Sequence[ItemKey]) -> list[PendingItem]:
        now = self._clock.now()
        async with self._database.transaction() as session:
            claim = await batches.claim_pending(
                session, keys=keys, now=now, deferred_families=self._deferred
            )
            records = event_records(
                self._events_topic,
                [
                    BatchEvent(events_pb2.BatchStarted(), org_id, batch_id, family)
                    for batch_id, org_id, family in claim.started
                ],
                now=now,
            )
            await outbox.add(session, records, now=now)
        if records:
            self._on_commit()
        return claim.items

    async def _run(self, family: str, items: list[PendingItem]) -> list[Outcome]:
        handler = self._handlers.get(family)
        if handler is None:
            log.error(
                "no handler for family %r; failing %d items",
                family,
                len(items),
                extra={"batch_ids": sorted({i.batch_id for i in items})},
            )
            return [Outcome(i.batch_id, i.item_index, False, "unsupported_family") for i in items]
        outcomes = await handler.run(items)
        missing = {i.key for i in items} - {o.key for o in outcomes}
        if missing:
            log.error(
                "%s handler returned no outcome for %d items",
                family,
                len(missing),
                extra={"items": [f"{b}/{i}" for b, i in sorted(missing)[:20]]},
            )
            outcomes += [Outcome(b, i, False, "internal") for b, i in sorted(missing)]
        return outcomes

    async def record(self, outcomes_by_family: Mapping[str, list[Outcome]]) -> int:
        """Record outcomes decided outside `process` too (e.g. the timeout sweeper)."""
        recorded = await self._record(outcomes_by_family)
        self.processed += recorded
        return recorded

    async def _record(self, outcomes_by_family: Mapping[str, list[Outcome]]) -> int:
        now = self._clock.now()
        all_outcomes = [o for outcomes in outcomes_by_family.values() for o in outcomes]
        async with self._database.transaction() as session:
            applied, progress = await batches.record_outcomes(
                session, outcomes=all_outcomes, now=now
            )
            applied_keys = {o.key for o in applied}
            for family, outcomes in outcomes_by_family.items():
                handler = self._handlers.get(family)
                if handler is not None:
                    mine = [o for o in outcomes if o.key in applied_keys]
                    await handler.persist(session, mine)
            for update in progress:
                if update.refund:
                    await billing.credit(
                        session,
                        org_id=update.org_id,
                        amount=update.refund,
                        kind=billing.REFUND,
                        batch_id=update.batch_id,
                        now=now,
                        note="refund of failed items",
                    )
            await outbox.add(session, self._events(applied, progress, now), now=now)
        self._on_commit()
        for family, outcomes in outcomes_by_family.items():
            mine = [o for o in outcomes if o.key in applied_keys]
            succeeded = sum(o.succeeded for o in mine)
            metrics.items_recorded(family, succeeded=succeeded, failed=len(mine) - succeeded)
        return len(applied)

    def _events(
        self, applied: Sequence[Outcome], progress: Sequence[BatchProgressUpdate], now: datetime
    ) -> list[outbox.Record]:
        owners = {p.batch_id: p for p in progress}
        events = [self._item_event(o, owners[o.batch_id]) for o in applied]
        events += [self._finished_event(p) for p in progress if p.finished]
        return event_records(self._events_topic, events, now=now)

    def _item_event(self, outcome: Outcome, batch: BatchProgressUpdate) -> BatchEvent:
        completed = events_pb2.ItemCompleted(
            item_index=outcome.item_index,
            status=(
                batch_pb2.ITEM_STATUS_SUCCEEDED
                if outcome.succeeded
                else batch_pb2.ITEM_STATUS_FAILED
            ),
            error_code=outcome.error_code or "",
            result_json=jsontext.dumps_text(outcome.result) if outcome.result else "",
        )
        return BatchEvent(completed, batch.org_id, batch.batch_id, batch.family)

    def _finished_event(self, batch: BatchProgressUpdate) -> BatchEvent:
        progress = batch_pb2.BatchProgress(
            requested=batch.requested,
            processed=batch.processed,
            succeeded=batch.succeeded,
            failed=batch.failed,
            cancelled=batch.cancelled,
        )
        finished = events_pb2.BatchFinished(
            progress=progress,
            credits_refunded=batch.credits_refunded,
            status=(
                batch_pb2.BATCH_STATUS_CANCELLED
                if batch.status == BatchState.CANCELLED
                else batch_pb2.BATCH_STATUS_FINISHED
            ),
        )
        return BatchEvent(finished, batch.org_id, batch.batch_id, batch.family)
