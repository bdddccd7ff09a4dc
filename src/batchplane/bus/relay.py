"""The outbox relay: publishes committed outbox records to Kafka, then deletes them.

Each pass takes up to `batch_size` packs (a transaction's records each) and
whatever is left in the per-record table of older releases.

Delivery is at least once: a crash between the broker's acknowledgement and
the delete publishes a record again, which consumers absorb (they are
idempotent on item identity and event id). Records are sent in id order and
acknowledged together, never one awaited send at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from batchplane.core import metrics
from batchplane.core.errors import Unavailable
from batchplane.db import outbox
from batchplane.db.engine import Database

log = logging.getLogger(__name__)

# Rows of the per-record `outbox` table of older releases per pass, and how often it
# is looked at once empty.
_LEGACY_ROWS_PER_PASS = 2_000
_LEGACY_RECHECK_S = 10.0


class OutboxRelay:
    """Drains the outbox table of one database into Kafka."""

    def __init__(
        self,
        database: Database,
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 16,
        poll_interval_s: float = 0.2,
        linger_s: float = 0.005,
        max_backoff_s: float = 5.0,
        recover: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._database = database
        self._producer = producer
        # Outbox rows per pass: packs, each the records of one transaction (up to a
        # processor chunk's 500 events and more), so this bounds a pass's memory.
        self._batch_size = batch_size
        # The per-record table of older releases: read while it has rows, then again
        # only every `_LEGACY_RECHECK_S` (an upgrade's older writers may still add some).
        self._legacy_due = 0.0
        self._poll_interval_s = poll_interval_s
        # After a wake, wait this long so that one pass takes the commits of its
        # neighbours too: intake wakes the relay once per accepted batch, and a pass
        # costs four round trips (begin, take, delete, commit) whatever it carries.
        self._linger_s = linger_s
        self._max_backoff_s = max_backoff_s
        # Run before the next attempt after a broker error (the publisher re-creates the
        # topics, which a broker that restarted empty has forgotten).
        self._recover = recover
        self._wake = asyncio.Event()
        self.published = 0
        self.passes = 0  # passes that published something

    def wake(self) -> None:
        """Ask for a publish now (called after a commit that wrote records)."""
        self._wake.set()

    async def run(self) -> None:
        """Publish until cancelled, backing off while the broker or database is down."""
        backoff = self._poll_interval_s
        while True:
            try:
                rows, _ = await self._publish_pass()
                backoff = self._poll_interval_s
            except (KafkaError, Unavailable, OSError) as exc:
                log.warning("outbox relay: %s; retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                if isinstance(exc, KafkaError) and self._recover is not None:
                    with contextlib.suppress(Exception):
                        await self._recover()
                continue
            if rows < self._batch_size and await self._wait_for_work() and self._linger_s:
                await asyncio.sleep(self._linger_s)

    async def publish_once(self) -> int:
        """Publish one pass of outbox rows; returns how many records were published."""
        _, records = await self._publish_pass()
        return records

    async def drain(self) -> int:
        """Publish passes until the outbox is empty; returns how many records."""
        total = 0
        while published := await self.publish_once():
            total += published
        return total

    async def _publish_pass(self) -> tuple[int, int]:
        """(outbox rows, records) published in one pass."""
        loop = asyncio.get_running_loop()
        legacy = loop.time() >= self._legacy_due
        # Unverified: should the commit's answer be lost, the next pass publishes the
        # records again if they are still there, which consumers absorb.
        async with self._database.transaction(verify_commit=False) as session:
            taken = await outbox.take(
                session,
                packs=self._batch_size,
                messages=_LEGACY_ROWS_PER_PASS if legacy else 0,
            )
            if legacy and not taken.message_ids:
                self._legacy_due = loop.time() + _LEGACY_RECHECK_S
            if not taken.rows:
                return 0, 0
            pending = []
            # The records of a pack share one headers mapping: encode it once per pack.
            encoded_for: Mapping[str, str] | None = None
            headers: list[tuple[str, bytes]] | None = None
            for r in taken.records:
                if r.headers is not encoded_for:
                    encoded_for = r.headers
                    headers = [(k, v.encode()) for k, v in r.headers.items()] or None
                pending.append(
                    await self._producer.send(r.topic, r.value, key=r.key, headers=headers)
                )
            await asyncio.gather(*pending)
            await outbox.remove(session, taken)
        self.published += len(taken.records)
        self.passes += 1
        metrics.OUTBOX_PUBLISHED.inc(len(taken.records))
        return taken.rows, len(taken.records)

    async def measure_backlog(self) -> None:
        """Set the outbox backlog gauge (a metrics refresh hook)."""
        async with self._database.transaction() as session:
            metrics.OUTBOX_BACKLOG.set(await outbox.backlog(session))

    async def _wait_for_work(self) -> bool:
        """Until woken or the poll interval passes; True when woken."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)
        woken = self._wake.is_set()
        self._wake.clear()
        return woken
