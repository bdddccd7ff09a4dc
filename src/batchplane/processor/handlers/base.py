"""The interface every batch family's item handler implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.db.batches import Outcome, PendingItem


class ItemHandler(Protocol):
    """Runs the real work of one family's items.

    `run` must return exactly one outcome per item. A failure of one item is an
    outcome (`succeeded=False` with a machine `error_code`), never an exception;
    an exception means the whole chunk could not be worked on now (e.g. the
    database is down) and will be retried.
    """

    family: str
    # False: the pipeline claims a chunk's items before `run` (a cancel spares
    # them from then on). True: `run` claims each item itself when its work
    # starts, with `batches.mark_items_started`, and skips those it could not claim.
    claims_each_item: bool

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        """Do the work of `items` and describe how each ended."""
        ...

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        """Store family data for `outcomes`, in the transaction that records them.

        Only outcomes applied for the first time are passed: a redelivered item
        never reaches here twice.
        """
        ...
