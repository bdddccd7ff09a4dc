"""Live radars: every active radar is re-checked on a schedule.

* company radars re-run the technology lookup of their domain; technologies that
  appeared or disappeared become `technology_added` / `technology_removed` signals
  (platform-wide facts about a public site, stored once per domain);
* contact radars fetch their profile page; a changed title, summary, social links
  or text becomes a `profile_changed` signal under the radar's company domain;
* industry radars scan the operator's RSS/Atom feeds (news feeds for
  `industry_mentions` / `industry_news`, job feeds for `industry_job_openings`);
  each new entry mentioning the keyword becomes an `industry_mention`,
  `job_opening` or `industry_news` signal under the domain the entry links to.

The first check of a radar stores its baseline and reports nothing. Signals are
stored where `POST /api/v1/signals/batch` reads them and, in the same
transaction, queued as `signal_detected` events (one per radar) for the events
topic. Radars are claimed per round, so several processors share the work
without checking one radar twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.api.events.v1 import events_pb2
from batchplane.bus.records import signal_record
from batchplane.core import jsontext
from batchplane.core.clock import Clock
from batchplane.core.deferred import loaded
from batchplane.core.errors import Unavailable
from batchplane.db import lookups, outbox, radars, signals
from batchplane.db.engine import Database
from batchplane.db.models import Radar
from batchplane.enrichment import extract as enrichment_extract
from batchplane.lookup.fetch import Fetcher, FetchError
from batchplane.processor.handlers.lookup import LookupHandler, technology_changes
from batchplane.radars import feeds, profiles
from batchplane.radars.specs import COMPANY, CONTACT, INDUSTRY

log = logging.getLogger(__name__)

# Feed entry ids remembered per industry radar (most recent first).
MAX_SEEN_ENTRIES = 2000


@dataclass(frozen=True)
class MonitorSettings:
    interval_s: float
    events_topic: str
    news_feeds: tuple[str, ...] = ()
    job_feeds: tuple[str, ...] = ()
    extra_suffixes: frozenset[str] = frozenset()
    batch_size: int = 100


@dataclass
class _Round:
    """What one round of checks found, written in one transaction."""

    now: datetime
    records: list[signals.SignalRecord] = field(default_factory=list)
    # (radar, signal) pairs announced on the events topic.
    detected: list[tuple[Radar, signals.SignalRecord]] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)

    def found(self, radar: Radar, signal: signals.SignalRecord) -> None:
        self.records.append(signal)
        self.detected.append((radar, signal))


class RadarMonitor:
    def __init__(
        self,
        database: Database,
        lookup: LookupHandler,
        fetcher: Fetcher,
        settings: MonitorSettings,
        *,
        clock: Clock,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._lookup = lookup
        self._fetcher = fetcher
        self._settings = settings
        self._clock = clock
        self._on_commit = on_commit
        self._interval = timedelta(seconds=settings.interval_s)
        self._poll_s = min(settings.interval_s, 10.0)

    async def run(self) -> None:
        while True:
            try:
                checked = await self.check_once()
                if checked:
                    log.info("checked %d radars", checked)
            except Unavailable as error:
                log.warning("radar checks skipped: %s", error)
            await asyncio.sleep(self._poll_s)

    async def check_once(self) -> int:
        """Check every radar that is due; returns how many were checked."""
        now = self._clock.now()
        async with self._database.transaction() as session:
            due = await radars.claim_due(
                session,
                checked_before=now - self._interval,
                now=now,
                limit=self._settings.batch_size,
            )
        if not due:
            return 0
        found = _Round(now)
        by_kind: dict[str, list[Radar]] = defaultdict(list)
        for radar in due:
            by_kind[radar.kind].append(radar)
        fresh, _, _ = await asyncio.gather(
            self._look_up(by_kind[COMPANY]),
            self._check_profiles(by_kind[CONTACT], found),
            self._scan_feeds(by_kind[INDUSTRY], found),
        )
        async with self._database.transaction() as session:
            await self._technology_changes(session, by_kind[COMPANY], fresh, found)
            await lookups.store(session, results=list(fresh.values()))
            await signals.record(session, signals=found.records)
            await radars.save_states(session, states=found.states)
            await outbox.add(session, self._events(found), now=now)
        if found.detected:
            self._on_commit()
        return len(due)

    # Company radars -------------------------------------------------------------------

    async def _look_up(self, company: list[Radar]) -> dict[str, lookups.StoredLookup]:
        domains = sorted({r.config["domain"] for r in company if r.config.get("domain")})
        results = await asyncio.gather(*(self._lookup.look_up(d) for d in domains))
        return {
            domain: lookups.StoredLookup(
                domain=domain,
                technologies=result["technologies"],
                looked_up_at=datetime.fromisoformat(result["looked_up_at"]),
            )
            for domain, result in zip(domains, results, strict=True)
            if isinstance(result, dict)
        }

    @staticmethod
    async def _technology_changes(
        session: AsyncSession,
        company: list[Radar],
        fresh: dict[str, lookups.StoredLookup],
        found: _Round,
    ) -> None:
        previous = await lookups.latest(session, domains=list(fresh))
        for domain, new in fresh.items():
            if domain not in previous:
                continue  # the first lookup of a domain is its baseline
            changes = technology_changes(previous[domain], new)
            found.records.extend(changes)
            for radar in company:
                if radar.config.get("domain") == domain:
                    found.detected.extend((radar, change) for change in changes)

    # Contact radars -------------------------------------------------------------------

    async def _check_profiles(self, contact: list[Radar], found: _Round) -> None:
        await asyncio.gather(*(self._check_profile(radar, found) for radar in contact))

    async def _check_profile(self, radar: Radar, found: _Round) -> None:
        url = radar.config["profile_url"]
        try:
            page = await self._fetcher.fetch(url)
        except FetchError as error:
            log.info("radar %s: profile %s not fetched: %s", radar.id, url, error)
            return
        if page.status >= 400:
            # An error page is not the profile: compare again next round.
            log.info("radar %s: profile %s answered %d", radar.id, url, page.status)
            return
        await loaded(*enrichment_extract.DEFERRED)
        after = profiles.snapshot(page.url, page.text)
        found.states[radar.id] = {"profile": after}
        before = (radar.state or {}).get("profile")
        changed = profiles.changes(before, after) if before is not None else {}
        if changed:
            data = {"radar_id": radar.id, "profile_url": url, "changes": changed}
            found.found(
                radar,
                signals.SignalRecord(
                    radar.config["domain"], profiles.PROFILE_CHANGED, data, found.now, radar.org_id
                ),
            )

    # Industry radars ------------------------------------------------------------------

    async def _scan_feeds(self, industry: list[Radar], found: _Round) -> None:
        if not industry:
            return
        await loaded(*feeds.DEFERRED)
        sources = {feeds.NEWS: self._settings.news_feeds, feeds.JOBS: self._settings.job_feeds}
        read = await asyncio.gather(*(self._read_feeds(urls) for urls in sources.values()))
        entries = dict(zip(sources, read, strict=True))
        for radar in industry:
            source, signal_type = feeds.SCANS[radar.radar_type]
            scanned = entries[source]
            if scanned is not None:
                self._report_entries(radar, scanned, signal_type, found)

    async def _read_feeds(self, urls: Iterable[str]) -> list[feeds.FeedEntry] | None:
        """Every entry of `urls`; None when one feed could not be read (the round is
        skipped for its radars rather than taking its entries for new ones later)."""
        read = await asyncio.gather(*(self._read_feed(url) for url in urls))
        if any(entries is None for entries in read):
            return None
        return [entry for entries in read if entries is not None for entry in entries]

    async def _read_feed(self, url: str) -> list[feeds.FeedEntry] | None:
        try:
            page = await self._fetcher.fetch(url)
            if page.status >= 400:
                raise feeds.FeedUnreadable(f"HTTP {page.status}")
            return feeds.parse_feed(url, page.body)
        except (FetchError, feeds.FeedUnreadable) as error:
            log.warning("feed %s not read: %s", url, error)
            return None

    def _report_entries(
        self, radar: Radar, entries: list[feeds.FeedEntry], signal_type: str, found: _Round
    ) -> None:
        keyword = radar.config.get("keyword")
        seen = (radar.state or {}).get("seen")
        if seen is not None:  # None: the first check, a baseline
            known = set(seen)
            for entry in entries:
                domain = entry.domain(self._settings.extra_suffixes)
                if entry.entry_id in known or domain is None or not entry.mentions(keyword):
                    continue
                data = {"radar_id": radar.id, "keyword": keyword, **entry.as_json()}
                found.found(
                    radar, signals.SignalRecord(domain, signal_type, data, found.now, radar.org_id)
                )
        current = list(dict.fromkeys(entry.entry_id for entry in entries))
        kept = list(dict.fromkeys([*current, *(seen or [])]))[:MAX_SEEN_ENTRIES]
        found.states[radar.id] = {"seen": kept}

    # Events ---------------------------------------------------------------------------

    def _events(self, found: _Round) -> list[outbox.Record]:
        return [
            signal_record(
                self._settings.events_topic,
                _signal_detected(radar, signal),
                org_id=radar.org_id,
                now=found.now,
            )
            for radar, signal in found.detected
        ]


def _signal_detected(radar: Radar, signal: signals.SignalRecord) -> events_pb2.SignalDetected:
    event = events_pb2.SignalDetected(
        radar_id=radar.id,
        radar_type=radar.radar_type,
        domain=signal.domain,
        type=signal.type,
        data_json=jsontext.dumps_text(signal.data),
    )
    event.detected_at.FromDatetime(signal.detected_at)
    return event
