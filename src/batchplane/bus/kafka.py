"""aiokafka clients configured from settings, and topic provisioning.

Nothing here relies on the idempotent producer or transactions: the local
broker does not support them, and the outbox plus idempotent consumers give
the guarantees on both it and Apache Kafka.
"""

from __future__ import annotations

import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from batchplane.core.settings import KafkaSettings

log = logging.getLogger(__name__)


def make_producer(kafka: KafkaSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        acks="all",
        linger_ms=5,
        max_batch_size=1_048_576,
        request_timeout_ms=10_000,
        metadata_max_age_ms=kafka.metadata_max_age_ms,
    )


def make_consumer(kafka: KafkaSettings, *topics: str, group_id: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        max_poll_records=kafka.max_poll_records,
        metadata_max_age_ms=kafka.metadata_max_age_ms,
    )


async def ensure_topics(kafka: KafkaSettings) -> None:
    """Create the work, events and dead-letter topics if they do not exist."""
    wanted = {
        kafka.work_topic: kafka.work_partitions,
        kafka.events_topic: kafka.events_partitions,
        kafka.dead_letter_topic: 1,
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=1)
            for name, partitions in wanted.items()
            if name not in existing
        ]
        if missing:
            # Another service may have created them in the meantime.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()


class TopicKeeper:
    """Creates the topics again when a consumer group member holds no partition.

    A broker that restarted empty (the local broker keeps nothing) has forgotten the
    topics: the group's members rejoin with nothing assigned and would wait for a
    producer to auto-create them, with the broker's default partition count, or for
    ever where auto-creation is off. While its member holds no partition, the
    keeper makes sure the topics exist, at most once per `interval_s`; the next
    metadata refresh (`metadata_max_age_ms`) then brings the partitions back. A
    member left without partitions because the group has more members than
    partitions costs one admin round trip per interval.
    """

    def __init__(self, kafka: KafkaSettings, *, interval_s: float = 5.0) -> None:
        self._kafka = kafka
        self._interval_s = interval_s
        self._last = time.monotonic()

    async def check(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if consumer.assignment():
            self._last = now
            return
        if now - self._last < self._interval_s:
            return
        self._last = now
        try:
            await ensure_topics(self._kafka)
        except Exception as error:  # noqa: BLE001 - the broker may still be away
            log.warning("could not check the topics: %s", error)
