"""aiokafka clients configured from settings, and topic provisioning.

Nothing here relies on the idempotent producer or transactions: the local
broker does not support them, and the outbox plus idempotent consumers give
the guarantees on both it and Apache Kafka.
"""

from __future__ import annotations

import contextlib
import logging

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
