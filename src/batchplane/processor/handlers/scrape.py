"""Scrape jobs: fetch each URL and extract items matching the batch's JSON Schema.

Per batch, at most `parallel_jobs` URLs are fetched at once and no more than
`max_total_items` items are kept across its jobs. Both limits are enforced in
the processor that owns the batch's partition (work records are keyed by batch
id, so one processor holds a batch at a time); see the README for what a
rebalance means for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dateutil import parser as date_parser
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.clock import Clock
from batchplane.core.states import ItemState
from batchplane.db import batches
from batchplane.db.batches import Outcome, PendingItem
from batchplane.db.engine import Database
from batchplane.lookup.fetch import Fetcher, FetchError, FetchResult
from batchplane.processor.handlers.pages import PageBudget
from batchplane.scrape.extract import DateFilter, extract_items

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")


class JobFailed(Exception):
    """A job that cannot produce items; `code` is its machine error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _BatchState:
    """What one processor knows about a batch whose jobs it is running."""

    slots: asyncio.Semaphore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    remaining: int | None = None  # items still allowed; loaded on first use
    jobs: int = 0


class ScrapeHandler:
    """The `scrape` family: one URL per item."""

    family = "scrape"
    # Jobs wait for a `parallel_jobs` slot: each is claimed when it starts, so a
    # cancel still spares the waiting ones.
    claims_each_item = True

    def __init__(
        self, database: Database, fetcher: Fetcher, *, clock: Clock, pages: PageBudget
    ) -> None:
        self._database = database
        self._fetcher = fetcher
        self._pages = pages
        self._clock = clock
        self._batches: dict[int, _BatchState] = {}

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._job(item) for item in items)))

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        return None  # items and errors live in the item's result

    async def _job(self, item: PendingItem) -> Outcome:
        options = item.params.get("options", {})
        state = self._batches.setdefault(
            item.batch_id, _BatchState(asyncio.Semaphore(int(options.get("parallel_jobs", 3))))
        )
        state.jobs += 1
        try:
            async with state.slots:
                if not await self._mark_started(item):
                    # Cancelled while it waited: no outcome will be recorded for it.
                    return Outcome(item.batch_id, item.item_index, False, "cancelled")
                return await self._scrape(item, options, state)
        finally:
            state.jobs -= 1
            if state.jobs == 0:
                self._batches.pop(item.batch_id, None)

    async def _scrape(
        self, item: PendingItem, options: dict[str, Any], state: _BatchState
    ) -> Outcome:
        try:
            extracted, final_url, http_status = await self._fetch_and_extract(item, options)
        except JobFailed as failure:
            return Outcome(
                item.batch_id,
                item.item_index,
                False,
                failure.code,
                result={"error": f"{failure.code}: {failure}"},
            )
        kept = await self._within_total(
            item, state, extracted, int(options.get("max_total_items", 500))
        )
        return Outcome(
            item.batch_id,
            item.item_index,
            True,
            result={"items": kept, "final_url": final_url, "http_status": http_status},
        )

    async def _fetch_and_extract(
        self, item: PendingItem, options: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], str, int]:
        """The page's items, final URL and status; the page itself is let go here, with
        its slot, so it is not held while the batch's item total is checked."""
        timeout = float(options.get("timeout_per_url", 30))
        async with self._pages.slot():
            page = await _within(timeout, self._fetcher.fetch(item.input))
            _check_page(page)
            extracted = await _extract(page, item.params.get("schema", {}), options)
            return extracted, page.url, page.status

    async def _within_total(
        self, item: PendingItem, state: _BatchState, extracted: list[dict[str, Any]], cap: int
    ) -> list[dict[str, Any]]:
        """Keep what the batch's `max_total_items` still allows, even with parallel jobs."""
        async with state.lock:
            if state.remaining is None:
                state.remaining = cap - await self._already_extracted(item.batch_id)
            kept = extracted[: max(state.remaining, 0)]
            state.remaining -= len(kept)
        return kept

    async def _already_extracted(self, batch_id: int) -> int:
        async with self._database.transaction() as session:
            items = await batches.list_items(session, batch_id=batch_id)
        return sum(
            len((i.result or {}).get("items", [])) for i in items if i.status == ItemState.SUCCEEDED
        )

    async def _mark_started(self, item: PendingItem) -> bool:
        """Claim the job as it starts; False when its batch cancelled it."""
        async with self._database.transaction() as session:
            started = await batches.mark_items_started(
                session, keys=[item.key], now=self._clock.now()
            )
        return item.key in started


async def _within(timeout_s: float, fetching: Any) -> FetchResult:
    try:
        return await asyncio.wait_for(fetching, timeout_s)
    except TimeoutError:
        raise JobFailed("timeout", f"no complete response within {timeout_s:g} s") from None
    except FetchError as error:
        raise JobFailed(error.code, str(error)) from None


async def _extract(
    page: FetchResult, schema: dict[str, Any], options: dict[str, Any]
) -> list[dict[str, Any]]:
    try:
        return await asyncio.to_thread(
            extract_items,
            page.url,
            page.text,
            schema,
            max_items=int(options.get("max_items_per_url", 50)),
            date_filter=_date_filter(options.get("date_filter")),
        )
    except ValueError as error:  # a schema the extractor cannot use
        raise JobFailed("invalid_schema", str(error)) from None


def _check_page(page: FetchResult) -> None:
    if page.status >= 400:
        raise JobFailed("http_status", f"the server answered HTTP {page.status}")
    content_type = page.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type and content_type not in HTML_TYPES:
        raise JobFailed("not_html", f"the page is {content_type}, not HTML")
    if page.truncated:
        raise JobFailed("too_large", "the page is larger than the scrape size limit")


def _date_filter(raw: dict[str, Any] | None) -> DateFilter | None:
    if not raw:
        return None
    return DateFilter(
        field=raw["field"],
        start=date_parser.isoparse(raw["from"]) if raw.get("from") else None,
        end=_end_of(raw["to"]) if raw.get("to") else None,
    )


def _end_of(bound: str) -> datetime:
    """`to` is inclusive: a bare date means the end of that day."""
    moment = date_parser.isoparse(bound)
    if len(bound.strip()) == len("2024-03-31"):
        moment = moment + timedelta(days=1) - timedelta(microseconds=1)
    return moment
