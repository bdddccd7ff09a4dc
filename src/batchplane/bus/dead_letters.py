"""Replay of the dead-letter topic: each record goes back to the topic it came from.

The processor dead-letters the work records it cannot process
(`processor/consumer.py`), adding the topic, partition and offset they came from
as headers. Replay reads the dead-letter topic under a consumer group of its own
and publishes each record again, with its key (so it lands on its batch's
partition, in order) and without the dead-letter headers, to its
`x-source-topic`, or to the work topic when a record carries none.

Offsets are committed only once the broker has acknowledged the records
published again. A replay that dies midway therefore loses nothing: its next run
publishes the uncommitted records again, so an item may be looked at twice. The
processor is idempotent per item, so that costs a second look, never a second
outcome.

A run replays what the topic held when it started (its end offsets then): a
record the processor still cannot process comes back to the dead-letter topic
and waits for the next run, instead of going round in this one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from batchplane.bus.kafka import make_consumer, make_producer
from batchplane.core.settings import KafkaSettings

REPLAY_GROUP = "batchplane-dead-letter-replay"
SOURCE_TOPIC_HEADER = "x-source-topic"
# What the processor adds when it dead-letters a record: they describe the dead
# letter, not the work, and the processor writes them afresh if it fails again.
DEAD_LETTER_HEADERS = frozenset(
    {SOURCE_TOPIC_HEADER, "x-source-partition", "x-source-offset", "x-reason"}
)
# How long a fetch may come back empty while the partition still holds records
# before the run gives up on it (a broker that stopped answering, not a slow one).
FETCH_TIMEOUT_MS = 10_000


class UnknownPartition(ValueError):
    """A partition was asked for that the dead-letter topic does not have."""


class ReplayStalled(RuntimeError):
    """The broker sent nothing while a partition still held records to replay.

    What was replayed before is committed: the next run carries on from there."""


@dataclass(frozen=True)
class Replayed:
    """What one run published again, counted per destination topic."""

    by_topic: dict[str, int]

    @property
    def count(self) -> int:
        return sum(self.by_topic.values())


async def replay_dead_letters(
    kafka: KafkaSettings,
    *,
    limit: int,
    partitions: Sequence[int] = (),
    group_id: str = REPLAY_GROUP,
) -> Replayed:
    """Publish up to `limit` dead letters again (of `partitions` only, when given)."""
    # Assigned, not subscribed: no group join to wait for, and a choice of
    # partitions; the group still keeps the committed offsets.
    consumer = make_consumer(kafka, group_id=group_id)
    try:
        await consumer.start()
        chosen = await _partitions(consumer, kafka.dead_letter_topic, partitions)
        if not chosen:
            return Replayed({})  # nothing was ever dead-lettered
        consumer.assign(chosen)
        producer = make_producer(kafka)
        try:
            await producer.start()
            return await _replay(consumer, producer, chosen, kafka, limit)
        finally:
            await producer.stop()
    finally:
        await consumer.stop()


async def _replay(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    partitions: list[TopicPartition],
    kafka: KafkaSettings,
    limit: int,
) -> Replayed:
    ends = await consumer.end_offsets(partitions)
    replayed: Counter[str] = Counter()
    for partition in partitions:
        await _replay_partition(
            consumer, producer, partition, ends[partition], kafka, limit, replayed
        )
    return Replayed(dict(replayed))


async def _partitions(
    consumer: AIOKafkaConsumer, topic: str, wanted: Sequence[int]
) -> list[TopicPartition]:
    if topic not in await consumer.topics():
        return []
    existing = consumer.partitions_for_topic(topic) or set()
    unknown = sorted(set(wanted) - existing)
    if unknown:
        raise UnknownPartition(f"{topic} has no partition {unknown[0]} (it has {sorted(existing)})")
    return [TopicPartition(topic, p) for p in sorted(set(wanted) or existing)]


async def _replay_partition(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    partition: TopicPartition,
    end: int,
    kafka: KafkaSettings,
    limit: int,
    replayed: Counter[str],
) -> None:
    while (left := limit - replayed.total()) > 0 and await consumer.position(partition) < end:
        fetched = await consumer.getmany(
            partition, timeout_ms=FETCH_TIMEOUT_MS, max_records=min(left, kafka.max_poll_records)
        )
        if not fetched:
            raise ReplayStalled(
                f"no records from {partition.topic}[{partition.partition}] within "
                f"{FETCH_TIMEOUT_MS} ms before its end offset {end}; "
                f"{replayed.total()} replayed and committed"
            )
        records = [r for r in fetched.get(partition, []) if r.offset < end]
        if not records:
            return  # only records dead-lettered after the run started
        topics = await _publish(producer, records, default_topic=kafka.work_topic)
        # Committed only now that the broker holds every record published again.
        await consumer.commit({partition: records[-1].offset + 1})
        replayed.update(topics)


async def _publish(
    producer: AIOKafkaProducer, records: Iterable[ConsumerRecord[Any, Any]], *, default_topic: str
) -> list[str]:
    """Send each record to its source topic; returns once all are acknowledged."""
    sent: list[Any] = []
    topics: list[str] = []
    for record in records:
        headers = list(record.headers or ())
        topic = _source_topic(headers) or default_topic
        kept = [(name, value) for name, value in headers if name not in DEAD_LETTER_HEADERS]
        sent.append(await producer.send(topic, record.value, key=record.key, headers=kept))
        topics.append(topic)
    for delivery in sent:
        await delivery
    return topics


def _source_topic(headers: Iterable[tuple[str, bytes]]) -> str | None:
    for name, value in headers:
        if name == SOURCE_TOPIC_HEADER and value:
            return value.decode()
    return None
