"""Marks enrichments still not terminal after the maximum processing time as `timeout`.

The sweeper records a failed outcome (`timeout`) through the same pipeline as
every other outcome, so counters, refunds and events stay exact; when the slow
work finishes later, its outcome is ignored because the item is already terminal.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from batchplane.core.clock import Clock
from batchplane.core.errors import Unavailable
from batchplane.db import batches
from batchplane.db.batches import Outcome
from batchplane.db.engine import Database
from batchplane.processor.handlers.enrichment import TIMEOUT_CODE
from batchplane.processor.pipeline import ItemPipeline

log = logging.getLogger(__name__)


class TimeoutSweeper:
    """Fails the overdue items of one family with `timeout`, now and then."""

    def __init__(
        self,
        database: Database,
        pipeline: ItemPipeline,
        *,
        family: str,
        max_processing_s: float,
        interval_s: float,
        clock: Clock,
        batch_size: int = 500,
    ) -> None:
        self._database = database
        self._pipeline = pipeline
        self._family = family
        self._max_processing = timedelta(seconds=max_processing_s)
        self._interval_s = interval_s
        self._clock = clock
        self._batch_size = batch_size

    async def run(self) -> None:
        while True:
            try:
                swept = await self.sweep_once()
                if swept:
                    log.info("marked %d overdue %s items as timed out", swept, self._family)
            except Unavailable as error:
                log.warning("timeout sweep skipped: %s", error)
            await asyncio.sleep(self._interval_s)

    async def sweep_once(self) -> int:
        cutoff = self._clock.now() - self._max_processing
        async with self._database.transaction() as session:
            overdue = await batches.overdue_items(
                session, family=self._family, created_before=cutoff, limit=self._batch_size
            )
        outcomes = [
            Outcome(
                item.batch_id,
                item.item_index,
                False,
                TIMEOUT_CODE,
                result={
                    "record_id": item.input,
                    "error": "timeout: enrichment exceeded the maximum processing time",
                },
            )
            for item in overdue
        ]
        return await self._pipeline.record({self._family: outcomes}) if outcomes else 0
