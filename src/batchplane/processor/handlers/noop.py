"""A benchmarking aid: a handler that records a trivial success without doing any work.

Enabled only by `BATCHPLANE_PROCESSOR_NOOP_FAMILIES` (e.g. `lookup`), which `make bench`
sets to measure the pipeline itself (intake, outbox, Kafka, claims, outcome recording,
events) without the family's real work. Never set it in production: every item of the
listed families "succeeds" with an empty result, and is charged as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.db.batches import Outcome, PendingItem

# What a no-op item records: an empty result, marked so that nobody mistakes it for data.
NOOP_RESULT: dict[str, Any] = {"technologies": [], "noop": True}


class NoopHandler:
    """Stands in for a family's handler: one successful outcome per item, nothing stored."""

    claims_each_item = False

    def __init__(self, family: str) -> None:
        self.family = family

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        return [Outcome(i.batch_id, i.item_index, True, result=NOOP_RESULT) for i in items]

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        """Nothing beyond the outcome rows the pipeline records."""
