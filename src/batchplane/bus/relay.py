"""The outbox relay: publishes committed outbox records to Kafka, then deletes them.

Delivery is at least once: a crash between the broker's acknowledgement and
the delete publishes a record again, which consumers absorb (they are
idempotent on item identity and event id). Records are sent in id order and
acknowledged together, never one awaited send at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from batchplane.core import metrics
from batchplane.core.errors import Unavailable
from batchplane.db import outbox
from batchplane.db.engine import Database

log = logging.getLogger(__name__)


class OutboxRelay:
    """Drains the outbox table of one database into Kafka."""

    def __init__(
        self,
        database: Database,
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 2_000,
        poll_interval_s: float = 0.2,
        max_backoff_s: float = 5.0,
        recover: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._database = database
        self._producer = producer
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._max_backoff_s = max_backoff_s
        # Run before the next attempt after a broker error (the publisher re-creates the
        # topics, which a broker that restarted empty has forgotten).
        self._recover = recover
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        """Ask for a publish now (called after a commit that wrote records)."""
        self._wake.set()

    async def run(self) -> None:
        """Publish until cancelled, backing off while the broker or database is down."""
        backoff = self._poll_interval_s
        while True:
            try:
                count = await self.publish_once()
                backoff = self._poll_interval_s
            except (KafkaError, Unavailable, OSError) as exc:
                log.warning("outbox relay: %s; retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                if isinstance(exc, KafkaError) and self._recover is not None:
                    with contextlib.suppress(Exception):
                        await self._recover()
                continue
            if count < self._batch_size:
                await self._wait_for_work()

    async def publish_once(self) -> int:
        """Publish one batch of records; returns how many were published."""
        async with self._database.transaction() as session:
            records = await outbox.take(session, limit=self._batch_size)
            if not records:
                return 0
            pending = [
                await self._producer.send(
                    r.record.topic,
                    r.record.value,
                    key=r.record.key,
                    headers=[(k, v.encode()) for k, v in r.record.headers.items()] or None,
                )
                for r in records
            ]
            await asyncio.gather(*pending)
            await outbox.remove(session, ids=[r.id for r in records])
        self.published += len(records)
        metrics.OUTBOX_PUBLISHED.inc(len(records))
        return len(records)

    async def measure_backlog(self) -> None:
        """Set the outbox backlog gauge (a metrics refresh hook)."""
        async with self._database.transaction() as session:
            metrics.OUTBOX_BACKLOG.set(await outbox.backlog(session))

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)
        self._wake.clear()
