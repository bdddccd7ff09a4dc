"""Fan-out of the events topic to the batch watchers of this intake process.

Every intake replica reads every partition of the events topic from its end,
without a consumer group (each replica needs every event, and nothing is
committed), and hands each event to the subscriptions of its batch. It reads
only while someone watches: with no subscription its partitions are paused (the
topic carries an event per item, and decoding records nobody wants was a few
per cent of intake's CPU), and the first subscription moves it to their end
again before it is handed out. A
subscription is a bounded queue: when a watcher falls behind and its queue
fills up, the subscription is marked `overflowed` and emptied instead of
blocking the reader, and the watcher resynchronises from the database. So one
slow watcher slows neither the hub nor the other watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from batchplane.api.events.v1 import events_pb2
from batchplane.bus.kafka import ensure_topics
from batchplane.core.runtime import retry_forever
from batchplane.core.settings import KafkaSettings

log = logging.getLogger(__name__)


class Subscription:
    """The events of one batch for one watcher.

    `next()` returns the next event, or None when events may have been lost (the
    queue overflowed, or the hub reconnected): the watcher must then resynchronise
    from the database.
    """

    def __init__(self, batch_id: int, capacity: int) -> None:
        self.batch_id = batch_id
        self._queue: asyncio.Queue[events_pb2.Event | None] = asyncio.Queue(capacity)

    def offer(self, event: events_pb2.Event) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.resync()

    def resync(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def next(self) -> events_pb2.Event | None:
        return await self._queue.get()


class EventHub:
    def __init__(self, kafka: KafkaSettings, *, capacity: int = 10_000) -> None:
        self._kafka = kafka
        self._capacity = capacity
        self._subscriptions: dict[int, set[Subscription]] = defaultdict(set)
        # Connected to the broker, with the topic's partitions assigned.
        self.ready = asyncio.Event()
        # Someone subscribes; and the reader reads from where they subscribed.
        self._wanted = asyncio.Event()
        self._live = asyncio.Event()
        # Records read from the topic (what pausing saves).
        self.records_read = 0

    @contextlib.asynccontextmanager
    async def subscribe(self, batch_id: int) -> AsyncIterator[Subscription]:
        """A subscription to `batch_id`'s events, once every event published from now
        on will reach it: read the batch's state only after entering."""
        subscription = Subscription(batch_id, self._capacity)
        self._subscriptions[batch_id].add(subscription)
        self._wanted.set()
        try:
            await self._live.wait()
            yield subscription
        finally:
            watchers = self._subscriptions[batch_id]
            watchers.discard(subscription)
            if not watchers:
                del self._subscriptions[batch_id]
            if not self._subscriptions:
                self._wanted.clear()

    def publish(self, event: events_pb2.Event) -> None:
        for subscription in self._subscriptions.get(event.batch_id, ()):
            subscription.offer(event)

    async def run(self) -> None:
        """Read the events topic until cancelled; reconnects after broker errors."""
        await retry_forever("event hub", self._read)

    async def _read(self) -> None:
        # Watchers from before a reconnect miss what was published meanwhile: they
        # resynchronise once the new connection is positioned.
        orphans = [s for watchers in self._subscriptions.values() for s in watchers]
        await ensure_topics(self._kafka)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._kafka.fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            topic = self._kafka.events_topic
            await consumer.topics()  # loads the cluster metadata
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise RuntimeError(f"no partitions known for {topic}")
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            self.ready.set()
            while True:
                if not self._live.is_set():
                    await self._go_live(consumer, assigned)
                    for subscription in orphans:
                        subscription.resync()
                    orphans = []
                batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
                for records in batches.values():
                    self.records_read += len(records)
                    for record in records:
                        self._dispatch(record.value)
                if not self._subscriptions:
                    self._live.clear()
        finally:
            self.ready.clear()
            self._live.clear()
            await consumer.stop()

    async def _go_live(self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
        """Read nothing until someone subscribes; then move to the end of every
        partition, resolved now so that whatever is published later is read."""
        consumer.pause(*assigned)
        await self._wanted.wait()
        await consumer.seek_to_end(*assigned)
        for partition in assigned:
            await consumer.position(partition)
        consumer.resume(*assigned)
        self._live.set()

    def _dispatch(self, value: bytes | None) -> None:
        if value is None or not self._subscriptions:
            return
        try:
            event = events_pb2.Event.FromString(value)
        except Exception:  # noqa: BLE001 - a record we cannot read concerns no watcher
            log.warning("undecodable record on the events topic")
            return
        self.publish(event)
