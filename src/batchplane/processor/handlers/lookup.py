"""Bulk lookup items: fetch a domain's home page and detect its technologies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.clock import Clock, as_utc, rfc3339
from batchplane.db import lookups, signals
from batchplane.db.batches import Outcome, PendingItem
from batchplane.db.engine import Database
from batchplane.lookup.domains import InvalidDomain, normalise_domain
from batchplane.lookup.fetch import Fetcher, FetchError
from batchplane.lookup.fingerprints import Detection, FingerprintDatabase, Headers, Page
from batchplane.processor.handlers.pages import PageBudget

log = logging.getLogger(__name__)


def technology_json(detection: Detection) -> dict[str, Any]:
    return {
        "name": detection.name,
        "categories": list(detection.categories),
        "version": detection.version,
        "confidence": detection.confidence,
    }


class LookupHandler:
    """The `lookup` family: one domain per item, results shared across organisations."""

    family = "lookup"
    claims_each_item = False

    def __init__(
        self,
        database: Database,
        fetcher: Fetcher,
        fingerprints: FingerprintDatabase,
        *,
        clock: Clock,
        pages: PageBudget,
        extra_suffixes: frozenset[str] = frozenset(),
    ) -> None:
        self._database = database
        self._fetcher = fetcher
        self._pages = pages
        self._fingerprints = fingerprints
        self._clock = clock
        self._extra_suffixes = extra_suffixes

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        domains: dict[tuple[int, int], str] = {}
        outcomes: list[Outcome] = []
        for item in items:
            try:
                domains[item.key] = normalise_domain(
                    item.input, extra_suffixes=self._extra_suffixes
                )
            except InvalidDomain:
                outcomes.append(Outcome(item.batch_id, item.item_index, False, "invalid_domain"))
        valid = [item for item in items if item.key in domains]
        cached = await self._fresh_results(valid, domains)
        to_fetch = sorted({domains[i.key] for i in valid if i.key not in cached})
        fetched = dict(
            zip(to_fetch, await asyncio.gather(*map(self.look_up, to_fetch)), strict=True)
        )
        for item in valid:
            hit = cached.get(item.key)
            outcomes.append(
                _cached_outcome(item, hit)
                if hit
                else _fetched_outcome(item, fetched[domains[item.key]])
            )
        return outcomes

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        fresh: dict[str, lookups.StoredLookup] = {}
        for outcome in outcomes:
            result = outcome.result
            if outcome.succeeded and result is not None and not result["cached"]:
                fresh[result["domain"]] = lookups.StoredLookup(
                    domain=result["domain"],
                    technologies=result["technologies"],
                    looked_up_at=datetime.fromisoformat(result["looked_up_at"]),
                )
        previous = await lookups.latest(session, domains=list(fresh))
        changes = [
            signal
            for domain, new in fresh.items()
            if domain in previous
            for signal in technology_changes(previous[domain], new)
        ]
        await signals.record(session, signals=changes)
        await lookups.store(session, results=list(fresh.values()))

    async def _fresh_results(
        self, items: Sequence[PendingItem], domains: dict[tuple[int, int], str]
    ) -> dict[tuple[int, int], lookups.StoredLookup]:
        reusable = [item for item in items if not item.params.get("recompute", False)]
        if not reusable:
            return {}
        async with self._database.transaction() as session:
            stored = await lookups.latest(session, domains=[domains[i.key] for i in reusable])
        now = self._clock.now()
        hits = {}
        for item in reusable:
            found = stored.get(domains[item.key])
            max_age = timedelta(milliseconds=int(item.params.get("max_age_ms", 0)))
            if found is not None and now - as_utc(found.looked_up_at) <= max_age:
                hits[item.key] = found
        return hits

    async def look_up(self, domain: str) -> dict[str, Any] | FetchError:
        """Fetch and analyse one domain now (also used by the radar monitor)."""
        async with self._pages.slot():
            return await self._look_up(domain)

    async def _look_up(self, domain: str) -> dict[str, Any] | FetchError:
        try:
            response = await self._fetcher.fetch_home_page(domain)
        except FetchError as error:
            return error
        page = Page(
            url=response.url,
            status=response.status,
            headers=Headers(response.headers.items()),
            cookies=response.cookies,
            html=response.text,
        )
        detections = self._fingerprints.detect(page)
        return {
            "domain": domain,
            "technologies": [technology_json(d) for d in detections],
            "looked_up_at": rfc3339(self._clock.now()),
            "http_status": response.status,
            "cached": False,
        }


def technology_changes(
    before: lookups.StoredLookup, after: lookups.StoredLookup
) -> list[signals.SignalRecord]:
    """Signals for technologies that appeared or disappeared between two lookups."""
    old = {t["name"]: t for t in before.technologies}
    new = {t["name"]: t for t in after.technologies}

    def signal(kind: str, technology: dict[str, Any]) -> signals.SignalRecord:
        data = {
            "technology": technology["name"],
            "categories": technology.get("categories", []),
            "version": technology.get("version"),
        }
        return signals.SignalRecord(after.domain, kind, data, after.looked_up_at)

    added = [
        signal(signals.TECHNOLOGY_ADDED, new[name]) for name in sorted(new.keys() - old.keys())
    ]
    removed = [
        signal(signals.TECHNOLOGY_REMOVED, old[name]) for name in sorted(old.keys() - new.keys())
    ]
    return added + removed


def _cached_outcome(item: PendingItem, stored: lookups.StoredLookup) -> Outcome:
    return Outcome(
        item.batch_id,
        item.item_index,
        True,
        result={
            "domain": stored.domain,
            "technologies": stored.technologies,
            "looked_up_at": rfc3339(stored.looked_up_at),
            "cached": True,
        },
    )


def _fetched_outcome(item: PendingItem, result: dict[str, Any] | FetchError) -> Outcome:
    if isinstance(result, FetchError):
        return Outcome(item.batch_id, item.item_index, False, result.code)
    return Outcome(item.batch_id, item.item_index, True, result=result)
