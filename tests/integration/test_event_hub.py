"""The intake's event hub on the real broker: positioned at the end, then every event
of a watched batch reaches its subscribers, and a full subscription asks to resync."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from batchplane.api.events.v1 import events_pb2
from batchplane.bus.kafka import ensure_topics, make_producer
from batchplane.bus.records import event_record
from batchplane.core.runtime import cancel_and_wait
from batchplane.core.settings import KafkaSettings
from batchplane.intake.event_hub import EventHub


def _kafka(broker: str) -> KafkaSettings:
    suffix = os.urandom(4).hex()
    return KafkaSettings(
        bootstrap_servers=broker,
        work_topic=f"t.work.{suffix}",
        events_topic=f"t.events.{suffix}",
        dead_letter_topic=f"t.dlq.{suffix}",
        events_partitions=3,
    )


async def _publish(kafka: KafkaSettings, batch_id: int, count: int) -> None:
    producer = make_producer(kafka)
    await producer.start()
    try:
        for index in range(count):
            record = event_record(
                kafka.events_topic,
                events_pb2.ItemCompleted(item_index=index),
                org_id="org",
                batch_id=batch_id,
                family="lookup",
                now=datetime.now(UTC),
            )
            await producer.send_and_wait(record.topic, record.value, key=record.key)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def _running_hub(kafka: KafkaSettings, *, capacity: int) -> AsyncIterator[EventHub]:
    """A hub reading `kafka`'s events topic, connected; stopped on the way out."""
    hub = EventHub(kafka, capacity=capacity)
    task = asyncio.create_task(hub.run())
    try:
        await asyncio.wait_for(hub.ready.wait(), 20)
        yield hub
    finally:
        await cancel_and_wait(task)


async def test_subscribers_get_their_batchs_events_in_order(broker: str) -> None:
    kafka = _kafka(broker)
    await ensure_topics(kafka)
    await _publish(kafka, 7, 2)  # before the hub: not replayed
    async with (
        _running_hub(kafka, capacity=100) as hub,
        hub.subscribe(7) as mine,
        hub.subscribe(8) as other,
    ):
        await _publish(kafka, 7, 5)
        got = [await asyncio.wait_for(mine.next(), 10) for _ in range(5)]
        assert [e.item_completed.item_index for e in got if e] == [0, 1, 2, 3, 4]
        assert other._queue.empty()


async def test_a_full_subscription_asks_its_watcher_to_resync(broker: str) -> None:
    kafka = _kafka(broker)
    await ensure_topics(kafka)
    async with _running_hub(kafka, capacity=3) as hub, hub.subscribe(9) as slow:
        await _publish(kafka, 9, 10)
        await asyncio.sleep(1)
        first = await asyncio.wait_for(slow.next(), 10)
        # Overflowed: the queue was emptied and a resync marker put first.
        assert first is None


async def test_with_no_subscriber_nothing_is_read_and_a_subscriber_starts_at_the_end(
    broker: str,
) -> None:
    kafka = _kafka(broker)
    await ensure_topics(kafka)
    async with _running_hub(kafka, capacity=100) as hub:
        await _publish(kafka, 11, 6)  # nobody watches: not even fetched
        await asyncio.sleep(1.5)
        assert hub.records_read == 0

        async with hub.subscribe(11) as watcher:
            await _publish(kafka, 11, 3)
            got = [await asyncio.wait_for(watcher.next(), 10) for _ in range(3)]
            assert [e.item_completed.item_index for e in got if e] == [0, 1, 2]
            assert hub.records_read == 3  # from the end: none of the six before
        await asyncio.sleep(1.5)  # the reader notices nobody is left

        # Paused again: what is published now is skipped, and the next subscriber
        # starts at the new end.
        await _publish(kafka, 11, 4)
        await asyncio.sleep(1.5)
        assert hub.records_read == 3
        async with hub.subscribe(11) as again:
            await _publish(kafka, 11, 1)
            event = await asyncio.wait_for(again.next(), 10)
            assert event is not None and event.item_completed.item_index == 0
        assert hub.records_read == 4
