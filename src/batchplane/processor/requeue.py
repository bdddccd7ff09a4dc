"""Publishes the work of stuck items again: the repair for work records the broker lost.

The outbox guarantees that a work record reaches the broker once. It cannot help
when the broker then loses it: the local broker keeps nothing across a restart,
and a Kafka cluster can lose unreplicated data. A processor that dies holding a
claimed item is covered by redelivery, unless the record is gone too. Either way
the item stays `queued` for ever.

Every `interval_s` the sweeper looks for items still queued that no processor
holds (never claimed, or claimed more than `lease_s` ago) in batches whose work
was last published more than `lease_s` ago, and queues their work records again
through the outbox, in the transaction that marks the batch requeued. A record
published twice costs a second look at an item: the pipeline records an outcome
only for an item still queued, so counters, refunds and events move once.

While the outbox itself holds records older than the lease, the relay is behind
(the broker is down) and publishing more would only add to its backlog, so the
round is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from batchplane.bus.records import work_records
from batchplane.core.clock import Clock, as_utc
from batchplane.core.errors import Unavailable
from batchplane.db import batches, outbox
from batchplane.db.engine import Database

log = logging.getLogger(__name__)


class RequeueSweeper:
    """Queues the work records of stale items again, now and then."""

    def __init__(
        self,
        database: Database,
        *,
        work_topic: str,
        lease_s: float,
        interval_s: float,
        clock: Clock,
        on_commit: Callable[[], None] = lambda: None,
        batch_size: int = 5_000,
    ) -> None:
        self._database = database
        self._work_topic = work_topic
        self._lease = timedelta(seconds=lease_s)
        self._interval_s = interval_s
        self._clock = clock
        self._on_commit = on_commit
        self._batch_size = batch_size
        self.requeued = 0

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Unavailable as error:
                log.warning("requeue sweep skipped: %s", error)
            await asyncio.sleep(self._interval_s)

    async def sweep_once(self) -> int:
        """One round; returns how many items were queued again."""
        now = self._clock.now()
        cutoff = now - self._lease
        async with self._database.transaction() as session:
            oldest = await outbox.oldest(session)
            if oldest is not None and as_utc(oldest) < cutoff:
                log.info("requeue sweep skipped: the outbox still holds records from %s", oldest)
                return 0
            stale = await batches.take_stale(
                session, cutoff=cutoff, now=now, limit=self._batch_size
            )
            records = [
                record
                for batch in stale
                for record in work_records(
                    self._work_topic,
                    batch_id=batch.batch_id,
                    org_id=batch.org_id,
                    family=batch.family,
                    item_indexes=batch.item_indexes,
                )
            ]
            await outbox.add(session, records, now=now)
        items = sum(len(batch.item_indexes) for batch in stale)
        if records:
            self._on_commit()
            self.requeued += items
            log.warning(
                "requeued %d stuck items of %d batches (%s)",
                items,
                len(stale),
                ", ".join(str(b.batch_id) for b in stale[:10]),
            )
        return items
