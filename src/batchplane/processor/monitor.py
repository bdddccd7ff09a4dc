"""Live radars: active company radars re-check their domain on a schedule.

Each check runs the lookup (fetch and fingerprint) and compares the result with
the stored one. Technologies that appeared or disappeared become
`technology_added` / `technology_removed` signals, which `signals/batch` returns.
The first check of a domain stores its baseline.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from batchplane.core.clock import Clock
from batchplane.core.errors import Unavailable
from batchplane.db import lookups, radars, signals
from batchplane.db.engine import Database
from batchplane.processor.handlers.lookup import LookupHandler, technology_changes
from batchplane.radars.specs import COMPANY

log = logging.getLogger(__name__)


class RadarMonitor:
    def __init__(
        self,
        database: Database,
        lookup: LookupHandler,
        *,
        clock: Clock,
        interval_s: float,
        batch_size: int = 100,
    ) -> None:
        self._database = database
        self._lookup = lookup
        self._clock = clock
        self._interval = timedelta(seconds=interval_s)
        self._poll_s = min(interval_s, 10.0)
        self._batch_size = batch_size

    async def run(self) -> None:
        while True:
            try:
                checked = await self.check_once()
                if checked:
                    log.info("checked %d company radars", checked)
            except Unavailable as error:
                log.warning("radar checks skipped: %s", error)
            await asyncio.sleep(self._poll_s)

    async def check_once(self) -> int:
        now = self._clock.now()
        async with self._database.transaction() as session:
            due = await radars.due_for_check(
                session, kind=COMPANY, checked_before=now - self._interval, limit=self._batch_size
            )
        domains = sorted({r.config["domain"] for r in due if r.config.get("domain")})
        results = await asyncio.gather(*(self._lookup.look_up(d) for d in domains))
        fresh = {
            domain: lookups.StoredLookup(
                domain=domain,
                technologies=result["technologies"],
                looked_up_at=datetime.fromisoformat(result["looked_up_at"]),
            )
            for domain, result in zip(domains, results, strict=True)
            if isinstance(result, dict)
        }
        async with self._database.transaction() as session:
            previous = await lookups.latest(session, domains=list(fresh))
            changes = [
                signal
                for domain, new in fresh.items()
                if domain in previous
                for signal in technology_changes(previous[domain], new)
            ]
            await signals.record(session, signals=changes)
            await lookups.store(session, results=list(fresh.values()))
            await radars.mark_checked(session, ids=[r.id for r in due], now=now)
        return len(due)
