"""The processor's Kafka consumer: work records in, outcomes stored, then offsets committed.

Offsets are committed only after the chunk's outcomes are in the database, so
a crash redelivers work rather than losing it; the pipeline is idempotent on
item identity, so redelivery never double-counts. A record that cannot be
decoded is a poison message: it goes to the dead-letter topic, never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass
class _Chunk:
    """Records being worked on, and the offsets to commit once they are stored."""

    task: asyncio.Task[None]
    offsets: dict[TopicPartition, int]


def _stored(chunk: _Chunk) -> bool:
    task = chunk.task
    return task.done() and not task.cancelled() and task.exception() is None


class WorkConsumer:
    """Consumes the work topic in chunks with a consumer group.

    Several chunks are worked on at once (one slow site must not stall the
    others), but offsets are committed strictly in the order the chunks were
    fetched, and only once every earlier chunk is stored too.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        pipeline: ItemPipeline,
        producer: AIOKafkaProducer,
        producer_ready: asyncio.Event,
        *,
        max_chunks_in_flight: int = 8,
        drain_timeout_s: float = 10.0,
    ) -> None:
        self._kafka = kafka
        self._pipeline = pipeline
        self._producer = producer
        self._producer_ready = producer_ready
        self._max_in_flight = max_chunks_in_flight
        self._drain_timeout_s = drain_timeout_s
        self.dead_lettered = 0

    async def run(self) -> None:
        """Consume until cancelled; a chunk that fails unexpectedly ends the run."""
        await self._producer_ready.wait()
        kafka = self._kafka
        consumer = make_consumer(kafka, kafka.work_topic, group_id=kafka.processor_group)
        await retry_forever("joining the processor group", consumer.start)
        chunks: deque[_Chunk] = deque()
        try:
            while True:
                await self._commit_finished(consumer, chunks)
                working = [c.task for c in chunks if not c.task.done()]
                # Bound both the work in progress and what waits behind a slow chunk.
                if len(working) >= self._max_in_flight or len(chunks) >= 4 * self._max_in_flight:
                    await asyncio.wait(working or [chunks[0].task], return_when=FIRST_COMPLETED)
                    continue
                fetched = await consumer.getmany(timeout_ms=50 if chunks else 500)
                if fetched:
                    chunks.append(self._start(fetched))
        finally:
            await self._drain(consumer, chunks)

    async def _drain(self, consumer: AIOKafkaConsumer, chunks: deque[_Chunk]) -> None:
        """On the way out: let chunks in hand finish (briefly), commit what is stored."""
        working = [c.task for c in chunks if not c.task.done()]
        if working:
            await asyncio.wait(working, timeout=self._drain_timeout_s)
        stored = deque(itertools.takewhile(_stored, chunks))
        for chunk in chunks:
            chunk.task.cancel()
        await asyncio.gather(*(c.task for c in chunks), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._commit_finished(consumer, stored)
        with contextlib.suppress(Exception):
            await consumer.stop()

    def _start(self, fetched: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> _Chunk:
        records = [record for partition in fetched.values() for record in partition]
        offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items()}
        return _Chunk(asyncio.create_task(self._handle(records)), offsets)

    async def _handle(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        keys, poison = decode_work(records)
        if poison:
            await self._dead_letter(poison)
        await self._process_until_done(keys)

    async def _commit_finished(self, consumer: AIOKafkaConsumer, chunks: deque[_Chunk]) -> None:
        offsets: dict[TopicPartition, int] = {}
        while chunks and chunks[0].task.done():
            chunk = chunks.popleft()
            chunk.task.result()  # an unexpected error ends the run; the work is redelivered
            offsets.update(chunk.offsets)
        if not offsets:
            return
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
