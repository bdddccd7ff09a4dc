"""A Kafka producer plus the outbox relay that feeds it, as one background task."""

from __future__ import annotations

import asyncio
import contextlib

from batchplane.bus.kafka import ensure_topics, make_producer
from batchplane.bus.relay import OutboxRelay
from batchplane.core.runtime import cancel_and_wait, retry_forever
from batchplane.core.settings import Settings
from batchplane.db.engine import Database


class OutboxPublisher:
    """Owns the producer and relay of one service; survives a broker that starts late."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self.producer = make_producer(settings.kafka)
        self.relay = OutboxRelay(
            database,
            self.producer,
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_s,
            linger_s=settings.outbox_linger_s,
            recover=lambda: ensure_topics(settings.kafka),
        )
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-publisher")

    async def _run(self) -> None:
        await retry_forever("connecting to Kafka", self._connect)
        self.connected.set()
        await self.relay.run()

    async def _connect(self) -> None:
        await ensure_topics(self._settings.kafka)
        await self.producer.start()

    async def stop(self) -> None:
        """Publish what is committed (if the broker is there), then stop."""
        await cancel_and_wait(self._task)
        if self.connected.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.relay.drain(), timeout=5)
        await self.producer.stop()
