"""How many items the processor holds a fetched page for at once.

The consumer works on up to `chunks_in_flight` (8) chunks of up to 500 items at once, and
a handler starts all of a chunk's items together, while the fetcher lets only
`fetch_concurrency` (200) of them on the network at a time. The other 3,800 did not wait
empty-handed: an enrichment kept every fetched page until its whole chunk was fetched, a
scrape kept its page while waiting for an extraction thread, a lookup whose HTTPS attempt
failed kept that failure and its traceback while queueing again for its HTTP attempt.
With 4,000 lookups in hand the processor peaked at 225 MB.

An item now holds one of `limit` slots from before its fetch until its page is reduced
to a result, so at most `limit` items (the fetch concurrency) have a page in hand. The
bound is on items, not on chunks, on purpose: fewer chunks in flight would also slow the
families that fetch nothing (no-op, radar creation), which share the consumer's chunk
slots; and since a chunk waits for its slowest site, a slow site would idle the fetch
slots of a whole chunk, whereas here it holds only its own item's slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["PageBudget"]


class PageBudget:
    """At most `limit` items holding a page at once, across every handler that shares it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold this for the life of one item's page: its fetch, its parse, nothing after."""
        async with self._slots:
            yield
