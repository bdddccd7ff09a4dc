"""Enrichment items: crawl the entity's site or profile page once, extract the fields.

A company is fetched at its home page (HTTPS, then HTTP), a person at the profile
URL, both through the shared SSRF-safe fetcher. A field crawled for any
organisation within the freshness window is reused (`globalEnrichmentId`)
instead of fetched again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.clock import Clock, as_utc, rfc3339
from batchplane.core.deferred import loaded
from batchplane.db import enrichments
from batchplane.db.batches import Outcome, PendingItem
from batchplane.db.engine import Database
from batchplane.db.models import Enrichment, Entity
from batchplane.enrichment import extract as extract_module
from batchplane.enrichment.extract import PageInput, extract
from batchplane.enrichment.tasks import COMPANY
from batchplane.lookup.fetch import Fetcher, FetchError, FetchResult
from batchplane.lookup.fingerprints import FingerprintDatabase, Headers, Page
from batchplane.processor.handlers.lookup import technology_json
from batchplane.processor.handlers.pages import PageBudget

TIMEOUT_CODE = "timeout"


def found(value: Any) -> bool:
    """`dataFound`: the field has a value (an empty list or dict is no data)."""
    return value not in (None, "", [], {})


class EnrichmentHandler:
    """The `enrichment` family: one (entity, field) record per item."""

    family = "enrichment"
    claims_each_item = False

    def __init__(
        self,
        database: Database,
        fetcher: Fetcher,
        fingerprints: FingerprintDatabase,
        *,
        clock: Clock,
        pages: PageBudget,
        freshness_s: int,
    ) -> None:
        self._database = database
        self._fetcher = fetcher
        self._pages = pages
        self._fingerprints = fingerprints
        self._clock = clock
        self._freshness = timedelta(seconds=freshness_s)

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        await loaded(*extract_module.DEFERRED)
        now = self._clock.now()
        async with self._database.transaction() as session:
            records = await enrichments.records_by_id(session, ids=[i.input for i in items])
            entities = await enrichments.entities_by_id(
                session, ids=[r.entity_id for r in records.values()]
            )
            shared = await enrichments.shared_results(
                session, pairs=[(r.entity_id, r.field) for r in records.values()]
            )
            await enrichments.mark_processing(session, ids=list(records), now=now)
        reusable = {
            pair: result
            for pair, result in shared.items()
            if now - as_utc(result.fetched_at) <= self._freshness
        }
        to_crawl: dict[str, set[str]] = {}
        for r in records.values():
            if (r.entity_id, r.field) not in reusable:
                to_crawl.setdefault(r.entity_id, set()).add(r.field)
        crawled = await self._crawl(
            [(entities[e], to_crawl[e]) for e in sorted(to_crawl) if e in entities]
        )
        return [self._outcome(item, records.get(item.input), reusable, crawled) for item in items]

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        updates: list[enrichments.RecordUpdate] = []
        new_shared: list[enrichments.SharedResult] = []
        for outcome in outcomes:
            result = outcome.result or {}
            if "record_id" not in result:
                continue
            if outcome.succeeded:
                updates.append(
                    enrichments.RecordUpdate(
                        result["record_id"],
                        enrichments.FINISHED,
                        result["data_found"],
                        result["data"],
                        None,
                        result["global_id"],
                    )
                )
                if result.get("shared") is not None:
                    new_shared.append(_shared(result["shared"]))
            else:
                status = (
                    enrichments.TIMEOUT
                    if outcome.error_code == TIMEOUT_CODE
                    else enrichments.FAILED
                )
                updates.append(
                    enrichments.RecordUpdate(
                        result["record_id"], status, None, None, result.get("error"), None
                    )
                )
        await enrichments.store_shared(session, results=new_shared)
        await enrichments.finish_records(session, updates=updates, now=self._clock.now())

    async def _crawl(
        self, wanted: list[tuple[Entity, set[str]]]
    ) -> dict[str, dict[str, Any] | FetchError]:
        """Each entity's wanted fields (field -> value), or why its page could not be had."""
        crawled = await asyncio.gather(*(self._crawl_one(e, fields) for e, fields in wanted))
        return {entity.id: values for (entity, _), values in zip(wanted, crawled, strict=True)}

    async def _crawl_one(self, entity: Entity, fields: set[str]) -> dict[str, Any] | FetchError:
        # The page is reduced to its field values before the slot is given back: only
        # `PageBudget.limit` pages are ever in hand, however many entities a chunk has.
        async with self._pages.slot():
            page = await self._fetch(entity)
            if isinstance(page, FetchError):
                return page
            return {field: self._field(field, page) for field in sorted(fields)}

    async def _fetch(self, entity: Entity) -> FetchResult | FetchError:
        try:
            if entity.type == COMPANY:
                return await self._fetcher.fetch_home_page(entity.key)
            return await self._fetcher.fetch(entity.key)
        except FetchError as error:
            return error

    def _outcome(
        self,
        item: PendingItem,
        record: Enrichment | None,
        reusable: dict[tuple[str, str], enrichments.SharedResult],
        crawled: dict[str, dict[str, Any] | FetchError],
    ) -> Outcome:
        if record is None:
            return Outcome(item.batch_id, item.item_index, False, "internal")
        shared = reusable.get((record.entity_id, record.field))
        if shared is not None:
            return _finished(item, record, shared.data_found, shared.data, shared.id, None)
        values = crawled.get(record.entity_id)
        if values is None or isinstance(values, FetchError):
            code = values.code if isinstance(values, FetchError) else "internal"
            message = str(values) if values is not None else "entity not found"
            return Outcome(
                item.batch_id,
                item.item_index,
                False,
                code,
                result={"record_id": record.id, "error": f"{code}: {message}"},
            )
        value = values[record.field]
        global_id = f"global_{uuid.uuid4().hex[:16]}"
        shared_row = {
            "id": global_id,
            "entity_id": record.entity_id,
            "field": record.field,
            "data_found": found(value),
            "data": value,
            "fetched_at": rfc3339(self._clock.now()),
        }
        return _finished(item, record, found(value), value, global_id, shared_row)

    def _field(self, field: str, page: FetchResult) -> Any:
        if field == "technologies":
            detections = self._fingerprints.detect(
                Page(
                    url=page.url,
                    status=page.status,
                    headers=Headers(page.headers.items()),
                    cookies=page.cookies,
                    html=page.text,
                )
            )
            return [technology_json(d) for d in detections] or None
        return extract(PageInput(url=page.url, html=page.text), [field]).get(field)


def _finished(
    item: PendingItem,
    record: Enrichment,
    data_found: bool,
    data: Any,
    global_id: str,
    shared: dict[str, Any] | None,
) -> Outcome:
    return Outcome(
        item.batch_id,
        item.item_index,
        True,
        result={
            "record_id": record.id,
            "data_found": data_found,
            "data": data,
            "global_id": global_id,
            "shared": shared,
        },
    )


def _shared(row: dict[str, Any]) -> enrichments.SharedResult:
    return enrichments.SharedResult(
        id=row["id"],
        entity_id=row["entity_id"],
        field=row["field"],
        data_found=row["data_found"],
        data=row["data"],
        fetched_at=datetime.fromisoformat(row["fetched_at"]),
    )
