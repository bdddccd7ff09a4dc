"""The processor's Kafka consumer: work records in, outcomes stored, then offsets committed.

Offsets are committed only after the chunk's outcomes are in the database, so
a crash redelivers work rather than losing it; the pipeline is idempotent on
item identity, so redelivery never double-counts. A record that cannot be
decoded is a poison message: it goes to the dead-letter topic, never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from google.protobuf.message import DecodeError

from batchplane.api.work.v1 import work_pb2
from batchplane.bus.kafka import make_consumer
from batchplane.core.errors import Unavailable
from batchplane.core.runtime import retry_forever
from batchplane.core.settings import KafkaSettings
from batchplane.db.batches import ItemKey
from batchplane.processor.pipeline import ItemPipeline

log = logging.getLogger(__name__)


def decode_work(records: Sequence[ConsumerRecord[Any, Any]]) -> tuple[list[ItemKey], list[Any]]:
    """Split records into item keys and poison records."""
    keys: list[ItemKey] = []
    poison: list[Any] = []
    for record in records:
        try:
            item = work_pb2.WorkItem.FromString(record.value or b"")
        except DecodeError:
            poison.append(record)
            continue
        if item.batch_id <= 0 or item.item_index < 0 or not item.family:
            poison.append(record)
            continue
        keys.append((item.batch_id, item.item_index))
    return keys, poison


class WorkConsumer:
    """Consumes the work topic in chunks with a consumer group."""

    def __init__(
        self,
        kafka: KafkaSettings,
        pipeline: ItemPipeline,
        producer: AIOKafkaProducer,
        producer_ready: asyncio.Event,
    ) -> None:
        self._kafka = kafka
        self._pipeline = pipeline
        self._producer = producer
        self._producer_ready = producer_ready
        self._consumer: AIOKafkaConsumer | None = None
        self.dead_lettered = 0

    async def run(self) -> None:
        """Consume until cancelled."""
        await self._producer_ready.wait()
        consumer = make_consumer(
            self._kafka, self._kafka.work_topic, group_id=self._kafka.processor_group
        )
        self._consumer = consumer
        await retry_forever("joining the processor group", consumer.start)
        try:
            while True:
                chunk = await consumer.getmany(timeout_ms=500)
                if chunk:
                    await self._handle(consumer, chunk)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _handle(
        self,
        consumer: AIOKafkaConsumer,
        chunk: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        records = [record for partition in chunk.values() for record in partition]
        keys, poison = decode_work(records)
        if poison:
            await self._dead_letter(poison)
        await self._process_until_done(keys)
        offsets = {tp: batch[-1].offset + 1 for tp, batch in chunk.items()}
        try:
            await consumer.commit(offsets)
        except CommitFailedError:
            # The group rebalanced: another member owns these partitions now
            # and will redeliver; the pipeline ignores items already done.
            log.warning("offset commit failed after a rebalance; work will be redelivered")

    async def _process_until_done(self, keys: list[ItemKey]) -> None:
        backoff = 0.2
        while True:
            try:
                await self._pipeline.process(keys)
                return
            except Unavailable as exc:
                log.warning("processing paused: %s; retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _dead_letter(self, records: list[Any]) -> None:
        sends = [
            await self._producer.send(
                self._kafka.dead_letter_topic,
                record.value,
                key=record.key,
                headers=[
                    ("x-source-topic", record.topic.encode()),
                    ("x-source-partition", str(record.partition).encode()),
                    ("x-source-offset", str(record.offset).encode()),
                    ("x-reason", b"undecodable work item"),
                ],
            )
            for record in records
        ]
        try:
            await asyncio.gather(*sends)
        except KafkaError:
            log.exception("could not dead-letter %d poison records", len(records))
            raise
        self.dead_lettered += len(records)
        log.warning("dead-lettered %d poison records", len(records))
